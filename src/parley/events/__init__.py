"""Events: every change worth telling, written as a CloudEvent to the outbox in the same
transaction as the change (`outbox`), numbered and delivered by the relay (`relay`), described
by a versioned schema per type (`catalog`), and followed by the caller over SSE (`router`)."""
