"""The tool registry: one definition per tool, used by the in-chat assistant and the MCP server
alike, so no tool is written twice.

A `ToolDefinition` names a tool, describes it, gives a Pydantic model for its arguments (whose JSON
schema is what models and MCP clients see) and an async function that acts as the calling user.
`ToolRegistry.call` validates the arguments and runs the tool. Failures that are the caller's
(invalid arguments, an unknown or foreign task, any 4xx-class Parley error) come back as an error
`ToolResult` the caller can read and correct; failures of ours propagate as exceptions.

A call made in a context with an `audit` (the assistant's, MCP's) is told right after it as a
`parley.tool.called.v1` event (`parley.tools.events`), whatever its outcome.
"""

from __future__ import annotations

import copy
import functools
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic.json_schema import JsonSchemaMode
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from parley.accounts.authentication import Owner
from parley.core.errors import ParleyError
from parley.core.pagination import CursorCodec
from parley.core.responses import validation_details
from parley.core.telemetry import get_tracer
from parley.tools.events import ToolAudit, record_tool_call

if TYPE_CHECKING:
    from parley.llm.embeddings import Embeddings

ArgsT = TypeVar("ArgsT", bound=BaseModel)
ResultT = TypeVar("ResultT", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class KnowledgeScope:
    """The files a chat's knowledge search covers: its knowledge bases and attached files."""

    knowledge_ids: tuple[uuid.UUID, ...] = ()
    file_ids: tuple[uuid.UUID, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.knowledge_ids or self.file_ids)


@dataclass(frozen=True, slots=True)
class ToolContext:
    """Who a tool acts for, and what it acts with.

    Tools open their own short-lived database sessions (`session()`): a tool call has no request
    session to borrow, and a long-running caller (a streaming turn, an MCP session) must not hold
    one between calls.

    Attributes:
        user: the calling user; every tool acts as them and only on their data.
        sessionmaker: opens database sessions.
        cursor_codec: signs and checks list cursors.
        embeddings: the embedding models (for knowledge search; None where there are none).
        knowledge: what knowledge search covers (a chat's bases and attached files); None: every
            file of the user's (an MCP client).
        audit: who calls from where, for the `parley.tool.called.v1` event of each call; None:
            calls are not recorded (tools called by Parley itself, tests).
    """

    user: Owner
    sessionmaker: async_sessionmaker[AsyncSession]
    cursor_codec: CursorCodec
    embeddings: Embeddings | None = None
    knowledge: KnowledgeScope | None = None
    audit: ToolAudit | None = None

    def session(self) -> AsyncSession:
        """A new database session (use as `async with context.session() as session:`)."""
        return self.sessionmaker()


class ToolError(Exception):
    """A tool refused the call for the caller's reasons; the message is shown to the caller.

    Attributes:
        code: a stable snake_case code, like the REST error codes.
        message: a sentence for the caller (a person or a model).
    """

    def __init__(self, message: str, *, code: str = "tool_error") -> None:
        self.code = code
        self.message = message
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class ToolResult:
    """What a tool call answers: a JSON object, or an error the caller can act on.

    Attributes:
        content: the result (a JSON-able dict); for an error, `{"error": {"code", "message"}}`.
        is_error: whether the call failed.
        sources: the passages of the user's files the result quotes, as the stream's
            `source-document` chunks name them (`source_id`, `media_type`, `title`, `filename`,
            `file_id`, `page`).
    """

    content: dict[str, Any]
    is_error: bool = False
    sources: tuple[dict[str, Any], ...] = ()

    @classmethod
    def failure(cls, code: str, message: str) -> ToolResult:
        """An error result."""
        return cls({"error": {"code": code, "message": message}}, is_error=True)

    @property
    def error_message(self) -> str | None:
        """The error's message, or None for a success."""
        if not self.is_error:
            return None
        return str(self.content["error"]["message"])

    def as_text(self) -> str:
        """The result as text: the JSON of a success, the message of an error."""
        message = self.error_message
        if message is not None:
            return message
        return json.dumps(self.content, ensure_ascii=False, separators=(",", ":"))


ToolFunction = Callable[[ToolContext, ArgsT], Awaitable[BaseModel]]


@functools.cache
def _json_schema(model: type[BaseModel], mode: JsonSchemaMode) -> dict[str, Any]:
    """A model's JSON schema, generated once: every turn offers every tool, and generating a
    schema costs far more than copying it."""
    return model.model_json_schema(mode=mode)


@dataclass(frozen=True, slots=True)
class ToolDefinition(Generic[ArgsT]):
    """One tool.

    Attributes:
        name: the name models and MCP clients call it by (`add_task`).
        description: what it does, for a model deciding whether to call it.
        arguments: the Pydantic model its arguments must satisfy.
        function: acts as `context.user` and returns a Pydantic model.
        result: the model of a successful result, published as the output schema.
        read_only: it changes nothing.
        destructive: it may delete or overwrite what the user has.
        idempotent: calling it again with the same arguments changes nothing more.
        available: whether a context offers it (None: always), e.g. knowledge search only in a
            chat that has knowledge.
    """

    name: str
    description: str
    arguments: type[ArgsT]
    function: ToolFunction[ArgsT]
    result: type[BaseModel]
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False
    available: Callable[[ToolContext], bool] | None = None

    def input_schema(self) -> dict[str, Any]:
        """The JSON schema of the arguments (a copy the caller may change)."""
        return copy.deepcopy(_json_schema(self.arguments, "validation"))

    def output_schema(self) -> dict[str, Any]:
        """The JSON schema of a successful result (a copy the caller may change)."""
        return copy.deepcopy(_json_schema(self.result, "serialization"))

    async def run(
        self, context: ToolContext, raw_arguments: Mapping[str, Any] | None
    ) -> ToolResult:
        """Validate `raw_arguments` and run the tool as `context.user`; with `context.audit`,
        then record the call (a failure to record is logged, not raised).

        Raises:
            Exception: only failures that are not the caller's (a database outage, a bug).
        """
        started = time.perf_counter()
        try:
            arguments = self.arguments.model_validate(dict(raw_arguments or {}))
        except ValidationError as exc:
            problems = "; ".join(
                f"{item['field'] or 'arguments'}: {item['message']}"
                for item in validation_details(exc.errors(include_input=False))
            )
            result = ToolResult.failure("invalid_arguments", f"Invalid arguments: {problems}")
            await self._record(context, dict(raw_arguments or {}), result, started)
            return result
        try:
            result = await self._execute(context, arguments)
        except Exception:
            await self._record(context, arguments, None, started)
            raise
        await self._record(context, arguments, result, started)
        return result

    async def _execute(self, context: ToolContext, arguments: ArgsT) -> ToolResult:
        try:
            output = await self.function(context, arguments)
        except ToolError as exc:
            return ToolResult.failure(exc.code, exc.message)
        except ParleyError as exc:
            if exc.status_code >= 500:
                raise
            return ToolResult.failure(exc.code, exc.message)
        cited = getattr(output, "cited_sources", None)
        sources = tuple(cited()) if callable(cited) else ()
        return ToolResult(output.model_dump(mode="json"), sources=sources)

    async def _record(
        self,
        context: ToolContext,
        arguments: BaseModel | dict[str, Any],
        result: ToolResult | None,
        started: float,
    ) -> None:
        """The call's event, when the context is audited (`result` None: it raised)."""
        if context.audit is None:
            return
        duration_ms = (time.perf_counter() - started) * 1000
        if result is None:
            error: tuple[str, str] | None = ("internal_error", "The tool failed on our side.")
        elif result.is_error:
            failure = result.content["error"]
            error = (str(failure["code"]), str(failure["message"]))
        else:
            error = None
        try:
            recorded = (
                arguments.model_dump(mode="json") if isinstance(arguments, BaseModel) else arguments
            )
        except Exception:  # never expected of validated arguments; the call is recorded anyway
            recorded = {"unreadable": True}
        await record_tool_call(
            context.sessionmaker,
            context.audit,
            user_id=context.user.id,
            tool=self.name,
            arguments=recorded,
            error=error,
            duration_ms=duration_ms,
        )


@dataclass(slots=True)
class ToolRegistry:
    """The tools one surface offers, by name."""

    _tools: dict[str, ToolDefinition[Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, tools: Iterable[ToolDefinition[Any]]) -> ToolRegistry:
        """A registry holding `tools`."""
        registry = cls()
        for tool in tools:
            registry.register(tool)
        return registry

    def register(self, tool: ToolDefinition[Any]) -> None:
        """Add a tool.

        Raises:
            ValueError: a tool of that name is already registered.
        """
        if tool.name in self._tools:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        self._tools[tool.name] = tool

    def get(self, name: str) -> ToolDefinition[Any] | None:
        """The tool called `name`, if any."""
        return self._tools.get(name)

    def __iter__(self) -> Iterator[ToolDefinition[Any]]:
        return iter(self._tools.values())

    def __len__(self) -> int:
        return len(self._tools)

    async def call(
        self, name: str, raw_arguments: Mapping[str, Any] | None, context: ToolContext
    ) -> ToolResult:
        """Run the tool called `name` as `context.user`; an unknown name is an error result."""
        tool = self.get(name)
        if tool is None:
            return ToolResult.failure("unknown_tool", f"There is no tool named {name!r}.")
        with get_tracer().start_as_current_span(f"tools.{name}") as span:
            span.set_attribute("parley.tool.name", name)
            result = await tool.run(context, raw_arguments)
            span.set_attribute("parley.tool.is_error", result.is_error)
            if result.is_error:
                span.set_attribute("parley.error.code", str(result.content["error"]["code"]))
            return result


@dataclass(frozen=True, slots=True)
class BoundTool:
    """A registry tool acting as one user, for one turn."""

    definition: ToolDefinition[Any]
    context: ToolContext

    @property
    def name(self) -> str:
        """The name the model calls it by."""
        return self.definition.name

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        """Validate the arguments and run the tool (a refusal is a result, not an exception)."""
        return await self.definition.run(self.context, arguments)


def bind_tools(registry: ToolRegistry, context: ToolContext) -> list[BoundTool]:
    """Every registry tool acting as `context.user`.

    Arguments are validated by the registry (the one place a tool's rules live); a refusal comes
    back to the model as a failed tool result it can read and adapt to.
    """
    return [
        BoundTool(definition, context)
        for definition in registry
        if definition.available is None or definition.available(context)
    ]
