"""Knowledge bases: extraction, chunking, indexing and hybrid search over the user's files."""
