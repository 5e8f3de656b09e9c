"""Each user's todo list: REST routes, the service under them, and the assistant/MCP tools."""
