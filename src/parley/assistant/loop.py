"""The agent loop of one reply: stream a model step, run the tools it called as the calling user,
send their results back, and again, up to the step limit; and the AI SDK UI message stream chunks
of it all, built as the model's events arrive.

The models are Pydantic AI's (each provider's request and stream mapping, the SDKs' retries, the
fallback model, the offline model), called through its direct API one step at a time; an
OpenAI-compatible server other than OpenAI's own is streamed without it (`openai_step`). The loop
around them is Parley's own: Pydantic AI's agent graph and its Vercel AI transformer did this
before, and spent about ten CPU-milliseconds a step above the model's own stream on locks, cancel
scopes, a task and a memory stream per run, and events rebuilt for a general-purpose UI adapter
(bench/findings.md). The tools are few, their rules live in the tool registry, and what the model
may do is exactly what `ReplyLoop.run` does, so the loop is short.

A step streams as `start-step`, its text (`text-start`, `text-delta`..., `text-end`), reasoning
(`reasoning-*`) and tool calls (`tool-input-start`, `tool-input-delta`...) as they arrive, then each
call's `tool-input-available` and, once it ran, its `tool-output-available` or `tool-output-error`,
then `finish-step`. The reply's own `start` and its ending (`message-metadata`, then `finish`,
`error` or `abort`) are the generation's, which knows the usage and saves the reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic_ai.direct import model_request_stream
from pydantic_ai.exceptions import ModelAPIError
from pydantic_ai.messages import (
    InstructionPart,
    ModelMessage,
    ModelRequest,
    ModelResponse,
    PartDeltaEvent,
    PartEndEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ThinkingPartDelta,
    ToolCallPart,
    ToolCallPartDelta,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_ai.tools import ToolDefinition as ModelToolDefinition
from pydantic_ai.ui.vercel_ai.response_types import (
    BaseChunk,
    FinishReason,
    FinishStepChunk,
    ReasoningDeltaChunk,
    ReasoningEndChunk,
    ReasoningStartChunk,
    StartStepChunk,
    TextDeltaChunk,
    TextEndChunk,
    TextStartChunk,
    ToolInputAvailableChunk,
    ToolInputDeltaChunk,
    ToolInputErrorChunk,
    ToolInputStartChunk,
    ToolOutputAvailableChunk,
    ToolOutputErrorChunk,
)
from pydantic_ai.usage import RequestUsage
from pydantic_core import to_json

from parley.assistant.openai_step import OpenAICompatibleModel, openai_chat_stream
from parley.assistant.stream import ReplyFailure, classify_failure
from parley.core.errors import ParleyError
from parley.tools.registry import ToolContext, ToolDefinition, ToolResult
from parley.usage.pricing import tokens_for_chars

logger = logging.getLogger(__name__)

Emit = Callable[[BaseChunk], Awaitable[None]]
T = TypeVar("T")

STEP_LIMIT = ReplyFailure("step_limit", "The assistant reached its limit of steps for one reply.")
# What a tool call that was announced but never answered gets, when the reply ends early.
INTERRUPTED_TOOL_TEXT = "Tool execution was interrupted."
# What a tool call gets whose input was still streaming when the reply ended.
CUT_TOOL_TEXT = "The tool call was cut off before its input was complete."
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_call": "tool-calls",
    "error": "error",
}


@dataclass(frozen=True, slots=True)
class BoundTool:
    """A registry tool acting as one user, for one turn."""

    definition: ToolDefinition[Any]
    context: ToolContext

    @property
    def name(self) -> str:
        """The name the model calls it by."""
        return self.definition.name

    def for_model(self) -> ModelToolDefinition:
        """Pydantic AI's definition of the tool (its name, description and argument schema)."""
        return ModelToolDefinition(
            name=self.definition.name,
            description=self.definition.description,
            parameters_json_schema=self.definition.input_schema(),
        )

    async def call(self, arguments: dict[str, Any]) -> ToolResult:
        """Validate the arguments and run the tool (a refusal is a result, not an exception)."""
        return await self.definition.run(self.context, arguments)


class _Stopped(Exception):
    """The reply was stopped between two reads of the model's stream."""


@dataclass
class _Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class _StreamedCall:
    """A tool call of the step being streamed: its input so far."""

    tool_call_id: str
    tool_name: str
    arguments: list[str]


@dataclass
class ReplyLoop:
    """The steps of one reply. `run` streams them through `emit`; `stop` ends them early, closing
    the model's stream at once when it is waiting on it.

    Attributes (after `run`):
        status: `complete`, `error` or `cancelled`.
        failure: why it failed (`error` only).
        finish_reason: the last step's, as the stream's `finish` chunk carries it.
        model_name: the name of the model that answered last (the fallback's when it answered).
        input_tokens, output_tokens: the provider's counts over every step so far; for a step
            it did not count (cut short, or a server that reports no usage), an estimate from the
            characters sent and streamed (`CHARS_PER_TOKEN`). 0 when nothing was streamed.
    """

    model: Model
    instructions: str | None
    history: Sequence[ModelMessage]
    prompt: str
    tools: Sequence[BoundTool]
    max_steps: int
    # The size of the history, instructions and question, for estimates of the input tokens.
    prompt_chars: int = 0
    # The same model, reached without Pydantic AI's model (see `parley.assistant.openai_step`).
    openai: OpenAICompatibleModel | None = None
    status: Literal["complete", "error", "cancelled"] = "complete"
    failure: ReplyFailure | None = None
    finish_reason: FinishReason = None
    model_name: str | None = None
    _usage: _Usage = field(default_factory=_Usage)  # of the steps done
    # The step in progress: what the provider reported so far.
    _stream_usage: RequestUsage | None = None
    _in_step: bool = False
    _step_chars: int = 0  # streamed by the step in progress
    _context_chars: int = 0  # sent to the model at the step in progress
    _stopped: bool = False
    _reading: bool = False
    _cancelling: bool = False
    _task: asyncio.Task[Any] | None = None
    # The step's text or reasoning part streaming now (index: kind, UI id), and its tool calls.
    _open: dict[int, tuple[str, str]] = field(default_factory=dict)
    _calls: dict[int, _StreamedCall] = field(default_factory=dict)  # by part index
    _pending: dict[str, str] = field(default_factory=dict)  # tool call id: name, unanswered

    @property
    def input_tokens(self) -> int:
        live = 0
        if self._in_step and self._step_chars:
            live = _tokens(self._stream_usage, "input_tokens") or tokens_for_chars(
                self._context_chars
            )
        return self._usage.input_tokens + live

    @property
    def output_tokens(self) -> int:
        live = 0
        if self._in_step:
            live = _tokens(self._stream_usage, "output_tokens") or tokens_for_chars(
                self._step_chars
            )
        return self._usage.output_tokens + live

    def stop(self) -> None:
        """End the reply: at once if it waits on the model, else at its next step or chunk."""
        self._stopped = True
        if self._reading and self._task is not None and not self._cancelling:
            self._cancelling = True
            self._task.cancel()

    async def run(self, emit: Emit) -> None:
        """Run every step, sending each chunk through `emit`; never raises for a model's or a
        tool's failure (see `status` and `failure`)."""
        self._task = asyncio.current_task()
        self._context_chars = self.prompt_chars
        messages: list[ModelMessage] = _merged(
            [
                *self.history,
                ModelRequest(
                    parts=[UserPromptPart(content=self.prompt)], instructions=self.instructions
                ),
            ]
        )
        tools = {tool.name: tool for tool in self.tools}
        parameters = ModelRequestParameters(
            function_tools=[tool.for_model() for tool in self.tools],
            instruction_parts=(
                [InstructionPart(content=self.instructions)] if self.instructions else None
            ),
        )
        step_started = False
        try:
            for _ in range(self.max_steps):
                self._check_stopped()
                await emit(StartStepChunk())
                step_started = True
                response = await self._step(messages, parameters, emit)
                messages.append(response)
                calls = [part for part in response.parts if isinstance(part, ToolCallPart)]
                if not calls:
                    self.finish_reason = _FINISH_REASONS.get(response.finish_reason or "")
                    break
                messages.append(ModelRequest(parts=await self._run_tools(calls, tools, emit)))
                step_started = False
                await emit(FinishStepChunk())
            else:
                # Every step called tools: the model was not done within the limit.
                self.status, self.failure = "error", STEP_LIMIT
        except _Stopped:
            self.status = "cancelled"
        except asyncio.CancelledError:
            if not self._cancelling or self._task is None or self._task.cancelling() > 1:
                raise  # cancelled from outside (as well)
            self.status = "cancelled"
        except Exception as exc:
            self.status, self.failure = "error", classify_failure(exc)
            if isinstance(exc, ParleyError):  # the relay's: the provider failed or refused
                logger.warning("a reply's model step failed: %s", exc.code)
            elif not isinstance(exc, ModelAPIError | TimeoutError) and not self._cancelling:
                logger.error("a reply failed", exc_info=exc)
        if self._cancelling:
            # The stop's cancellation is spent (a library may have turned it into an error of
            # its own): the task goes on to save the reply as stopped.
            self._cancelling = False
            if self._task is not None:
                self._task.uncancel()
            self.status, self.failure = "cancelled", None
        if self.status != "complete":
            await self._close(emit)
        if step_started:
            await emit(FinishStepChunk())

    def _check_stopped(self) -> None:
        if self._stopped:
            raise _Stopped()

    async def _read(self, awaitable: Awaitable[T]) -> T:
        """Wait on the model; `stop` cancels this wait, and only this one (the caller checks
        `_check_stopped` first)."""
        self._reading = True
        try:
            return await awaitable
        finally:
            self._reading = False

    async def _step(
        self, messages: list[ModelMessage], parameters: ModelRequestParameters, emit: Emit
    ) -> ModelResponse:
        """One model request, streamed: its chunks sent as its events arrive."""
        self._in_step, self._step_chars, self._stream_usage = True, 0, None
        async with contextlib.AsyncExitStack() as stack:
            self._check_stopped()
            opening: AbstractAsyncContextManager[Any] = (
                openai_chat_stream(
                    self.openai, messages, self.instructions, parameters.function_tools
                )
                if self.openai is not None
                else model_request_stream(
                    self.model, messages, model_request_parameters=parameters, instrument=False
                )
            )
            stream = await self._read(stack.enter_async_context(opening))
            self._stream_usage = stream.usage
            events: AsyncIterator[Any] = aiter(stream)
            while True:
                self._check_stopped()
                try:
                    event = await self._read(anext(events))
                except StopAsyncIteration:
                    break
                for chunk in self._chunks_of(event):
                    await emit(chunk)
                self._stream_usage = stream.usage
            response: ModelResponse = stream.get()
        for chunk in self._end_texts():
            await emit(chunk)
        self._calls.clear()
        self._usage.input_tokens += response.usage.input_tokens or tokens_for_chars(
            self._context_chars
        )
        self._usage.output_tokens += response.usage.output_tokens or tokens_for_chars(
            self._step_chars
        )
        self._in_step, self._stream_usage = False, None
        self._context_chars += self._step_chars
        self.model_name = response.model_name
        return response

    def _chunks_of(self, event: Any) -> list[BaseChunk]:
        """The UI chunks of one model stream event."""
        if isinstance(event, PartDeltaEvent):
            delta = event.delta
            if isinstance(delta, TextPartDelta) and delta.content_delta:
                return self._text(event.index, "text", delta.content_delta)
            if isinstance(delta, ThinkingPartDelta) and delta.content_delta:
                return self._text(event.index, "reasoning", delta.content_delta)
            if isinstance(delta, ToolCallPartDelta) and delta.args_delta:
                call = self._calls.get(event.index)
                if call is None:
                    return []
                args = (
                    delta.args_delta
                    if isinstance(delta.args_delta, str)
                    else _json(delta.args_delta)
                )
                call.arguments.append(args)
                self._step_chars += len(args)
                return [ToolInputDeltaChunk(tool_call_id=call.tool_call_id, input_text_delta=args)]
            return []
        if isinstance(event, PartStartEvent):
            part = event.part
            if isinstance(part, TextPart):
                return self._text(event.index, "text", part.content, start=True)
            if isinstance(part, ThinkingPart):
                return self._text(event.index, "reasoning", part.content, start=True)
            if isinstance(part, ToolCallPart):
                chunks = self._end_texts()
                # The raw text as streamed (`args_as_json_str` would wrap a partial one).
                args = part.args if isinstance(part.args, str) else part.args_as_json_str()
                args = args if part.args else ""
                self._calls[event.index] = _StreamedCall(part.tool_call_id, part.tool_name, [args])
                self._step_chars += len(args)
                chunks.append(
                    ToolInputStartChunk(tool_call_id=part.tool_call_id, tool_name=part.tool_name)
                )
                if args:
                    chunks.append(
                        ToolInputDeltaChunk(tool_call_id=part.tool_call_id, input_text_delta=args)
                    )
                return chunks
            return []
        if isinstance(event, PartEndEvent):
            return self._end_text(event.index)
        return []  # FinalResultEvent and the like: nothing for the client

    def _text(self, index: int, kind: str, text: str, *, start: bool = False) -> list[BaseChunk]:
        """Text or reasoning for the part at `index`; a part that starts, or streams again after
        another part, is a new UI part (only one streams at a time)."""
        opened = self._open.get(index)
        chunks: list[BaseChunk] = []
        if start or opened is None or opened[0] != kind:
            chunks.extend(self._end_texts())
            ui_id = str(uuid.uuid4())
            self._open[index] = (kind, ui_id)
            chunks.append(
                TextStartChunk(id=ui_id) if kind == "text" else ReasoningStartChunk(id=ui_id)
            )
        else:
            ui_id = opened[1]
        if text:
            self._step_chars += len(text)
            chunks.append(
                TextDeltaChunk(id=ui_id, delta=text)
                if kind == "text"
                else ReasoningDeltaChunk(id=ui_id, delta=text)
            )
        return chunks

    def _end_text(self, index: int) -> list[BaseChunk]:
        opened = self._open.pop(index, None)
        if opened is None:
            return []
        kind, ui_id = opened
        return [TextEndChunk(id=ui_id) if kind == "text" else ReasoningEndChunk(id=ui_id)]

    def _end_texts(self) -> list[BaseChunk]:
        chunks: list[BaseChunk] = []
        for index in list(self._open):
            chunks.extend(self._end_text(index))
        return chunks

    async def _run_tools(
        self, calls: list[ToolCallPart], tools: dict[str, BoundTool], emit: Emit
    ) -> list[ToolReturnPart]:
        """Announce each call's input, run the calls one after another, and send each result;
        the results are the next request to the model."""
        for call in calls:
            await emit(
                ToolInputAvailableChunk(
                    tool_call_id=call.tool_call_id,
                    tool_name=call.tool_name,
                    input=_arguments_shown(call),
                )
            )
            self._pending[call.tool_call_id] = call.tool_name
        returns: list[ToolReturnPart] = []
        for call in calls:
            result = await _call(call, tools)
            del self._pending[call.tool_call_id]
            self._context_chars += len(result.as_text())
            if result.is_error:
                text = result.as_text()
                await emit(ToolOutputErrorChunk(tool_call_id=call.tool_call_id, error_text=text))
                returns.append(
                    ToolReturnPart(
                        tool_name=call.tool_name,
                        content=text,
                        tool_call_id=call.tool_call_id,
                        outcome="failed",
                    )
                )
            else:
                await emit(
                    ToolOutputAvailableChunk(tool_call_id=call.tool_call_id, output=result.content)
                )
                returns.append(
                    ToolReturnPart(
                        tool_name=call.tool_name,
                        content=result.content,
                        tool_call_id=call.tool_call_id,
                    )
                )
        return returns

    async def _close(self, emit: Emit) -> None:
        """After a failure or a stop: end the open text or reasoning, and answer the calls that
        were announced but not run, so no client shows them as still running."""
        for chunk in self._end_texts():
            await emit(chunk)
        for call in self._calls.values():  # cut off while its input streamed
            await emit(
                ToolInputErrorChunk(
                    tool_call_id=call.tool_call_id,
                    tool_name=call.tool_name,
                    input="".join(call.arguments),
                    error_text=CUT_TOOL_TEXT,
                )
            )
        self._calls.clear()
        for tool_call_id in list(self._pending):
            await emit(
                ToolOutputErrorChunk(tool_call_id=tool_call_id, error_text=INTERRUPTED_TOOL_TEXT)
            )
        self._pending.clear()


async def _call(call: ToolCallPart, tools: dict[str, BoundTool]) -> ToolResult:
    tool = tools.get(call.tool_name)
    if tool is None:
        return ToolResult.failure("unknown_tool", f"There is no tool named {call.tool_name!r}.")
    try:
        arguments = call.args_as_dict()
    except ValueError:
        return ToolResult.failure("invalid_arguments", "The arguments are not valid JSON.")
    if not isinstance(arguments, dict):
        return ToolResult.failure("invalid_arguments", "The arguments must be a JSON object.")
    return await tool.call(arguments)


def _arguments_shown(call: ToolCallPart) -> Any:
    """The call's input as the client sees it: the object, or the raw text if it is not one."""
    try:
        return call.args_as_dict()
    except ValueError:
        return call.args


def _json(value: Any) -> str:
    return to_json(value).decode()


def _tokens(usage: RequestUsage | None, name: str) -> int:
    return int(getattr(usage, name) or 0) if usage is not None else 0


def _merged(messages: list[ModelMessage]) -> list[ModelMessage]:
    """Consecutive requests as one (the tool results of a reply cut short, then the next
    question), as the agent sent them."""
    merged: list[ModelMessage] = []
    for message in messages:
        previous = merged[-1] if merged else None
        if isinstance(message, ModelRequest) and isinstance(previous, ModelRequest):
            merged[-1] = ModelRequest(
                parts=[*previous.parts, *message.parts],
                instructions=message.instructions or previous.instructions,
            )
        else:
            merged.append(message)
    return merged
