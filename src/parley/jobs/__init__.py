"""Durable background jobs (CONTRACT.md section 10): a queue in the app's own database, the
workers that run it, and the schedules that put periodic work on it."""
