"""Parley as an OAuth 2.1 authorization server for MCP clients (the MCP authorization
specification): metadata documents, dynamic client registration, the sign-in and consent page,
the token endpoint, access tokens bound to `/mcp`, and the user's connections over REST."""
