"""The MCP server over the tool registry, built with the official `mcp` SDK's low-level `Server`.

`tools/list` publishes each registered tool (its arguments' JSON schema as the input schema, its
result model's as the output schema, and hints on whether it reads, changes or deletes).
`tools/call` runs the tool as the user the HTTP request authenticated (see `parley.mcp.endpoint`):
a failure of the caller's making is an `isError` result they can read, an unknown tool name is a
JSON-RPC "invalid params" error, as the MCP specification asks.
"""

from __future__ import annotations

import logging
from typing import Any

import mcp.types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError
from starlette.requests import Request

from parley import __version__
from parley.accounts.models import User
from parley.core.dependencies import cursor_codec_of, database_of
from parley.llm.dependencies import embeddings_of
from parley.tools.events import ToolAudit
from parley.tools.registry import ToolContext, ToolDefinition, ToolRegistry

logger = logging.getLogger(__name__)
SERVER_NAME = "parley"
INSTRUCTIONS = (
    "Parley's tools act on the signed-in user's own data only. Tasks are the user's todo list: "
    "add, list (with filters and paging), get, update, complete and delete them. Times are RFC "
    "3339 with a zone; task ids come from add_task or list_tasks."
)

MCP_AUDIT = ToolAudit(surface="mcp")

McpServer = Server[dict[str, Any]]
McpContext = ServerRequestContext[dict[str, Any], Any]


def describe_tool(tool: ToolDefinition[Any]) -> types.Tool:
    """A registered tool as MCP publishes it."""
    return types.Tool(
        name=tool.name,
        description=tool.description,
        input_schema=tool.input_schema(),
        output_schema=tool.output_schema(),
        annotations=types.ToolAnnotations(
            read_only_hint=tool.read_only,
            destructive_hint=tool.destructive,
            idempotent_hint=tool.idempotent,
            open_world_hint=False,
        ),
    )


def _tool_context(ctx: McpContext) -> ToolContext:
    """The calling user and the app's database, from the HTTP request carrying this message."""
    request = ctx.request
    user = getattr(request.state, "user", None) if isinstance(request, Request) else None
    if not isinstance(request, Request) or not isinstance(user, User):
        # The endpoint authenticates every request before the SDK sees it; reaching here
        # without a user is a wiring error, never something a client can cause.
        raise MCPError(code=types.INTERNAL_ERROR, message="The request is not authenticated.")
    return ToolContext(
        user=user,
        sessionmaker=database_of(request).sessionmaker,
        cursor_codec=cursor_codec_of(request),
        embeddings=embeddings_of(request),  # knowledge search over every file of the user's
        audit=MCP_AUDIT,  # each call is told as a `parley.tool.called.v1` event
    )


def build_mcp_server(registry: ToolRegistry) -> McpServer:
    """An MCP server offering the registry's tools."""
    tools = [describe_tool(tool) for tool in registry]
    input_schemas = {tool.name: tool.input_schema for tool in tools}

    async def list_tools(
        _ctx: McpContext, _params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call_tool(
        ctx: McpContext, params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        if registry.get(params.name) is None:
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}")
        try:
            result = await registry.call(params.name, params.arguments, _tool_context(ctx))
        except Exception as exc:
            # A failure of ours: logged in full, never sent (it may hold SQL or data).
            logger.exception("tool %s failed", params.name)
            raise MCPError(code=types.INTERNAL_ERROR, message="Internal error.") from exc
        return types.CallToolResult(
            content=[types.TextContent(text=result.as_text())],
            structured_content=result.content,
            is_error=result.is_error,
        )

    return Server(
        SERVER_NAME,
        version=__version__,
        title="Parley",
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
        # Lets the 2026-07-28 transport check `Mcp-Param-*` headers without a tools/list call.
        get_tool_input_schema=input_schemas.get,
    )
