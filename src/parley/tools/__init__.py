"""Tools the assistant and MCP clients call: the generic registry and Parley's own tools."""
