"""Parley's MCP server: the tool registry over the MCP Streamable HTTP transport at `/mcp`."""
