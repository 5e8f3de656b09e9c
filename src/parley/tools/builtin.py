"""Parley's own tools in one registry: what the in-chat assistant and the MCP server offer."""

from __future__ import annotations

from parley.knowledge.tools import KNOWLEDGE_TOOLS
from parley.tasks.tools import TASK_TOOLS
from parley.tools.registry import ToolRegistry


def builtin_registry() -> ToolRegistry:
    """A registry of every built-in tool (a new one each call, so callers may add their own)."""
    return ToolRegistry.of((*TASK_TOOLS, *KNOWLEDGE_TOOLS))
