"""Files: uploads, their stored bytes and their ingestion status (CONTRACT.md section 9)."""
