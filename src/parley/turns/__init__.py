"""One turn of the assistant: its use cases, its plan, the runner and the loop that run it, its
stream, its event log and its idempotency (see docs/architecture.md)."""
