"""The loop of one turn: stream a model step, run the tools it called as the calling user, send
their results back, and again, up to the step limit.

A step goes through the model-step interface (`parley.llm.steps`), whichever model answers; its
events become AI SDK UI message stream chunks (`parley.turns.chunks`) as they arrive. The loop is
Parley's own rather than Pydantic AI's agent graph, which cost more CPU a step for the same work
(see bench/findings.md): the tools are few, their rules live in the tool registry, and what the
model may do is exactly what `TurnLoop.run` does.

The turn's own `start` and its ending (`message-metadata`, then `finish`, `error` or `abort`) are
the running turn's (`parley.turns.running`), which knows the usage and saves the reply.

States: a loop is `running` until `run` returns, then `complete`, `error` (with a `failure`) or
`cancelled` (stopped). `stop` may come at any moment: while the model streams it closes the
model's request at once; between two events or steps it ends the loop at the next check; while a
tool runs it lets the tool finish and ends before the next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.tools import ToolDefinition as ModelToolDefinition
from pydantic_ai.ui.vercel_ai.response_types import (
    BaseChunk,
    FinishReason,
    FinishStepChunk,
    StartStepChunk,
)

from parley.core.errors import ParleyError
from parley.llm.failures import TurnFailure, is_model_failure, turn_failure
from parley.llm.steps import (
    ModelStep,
    StepEvent,
    StepFailed,
    StepFinished,
    StepRequest,
    StepUsage,
)
from parley.tools.registry import BoundTool, ToolDefinition, ToolResult
from parley.turns.chunks import (
    StepChunks,
    source_documents,
    tool_input_available,
    tool_interrupted,
    tool_output,
)
from parley.usage.pricing import tokens_for_chars

logger = logging.getLogger(__name__)

Emit = Callable[[BaseChunk], Awaitable[None]]
T = TypeVar("T")

STEP_LIMIT = TurnFailure("step_limit", "The assistant reached its limit of steps for one reply.")
_FINISH_REASONS: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content-filter",
    "tool_call": "tool-calls",
    "error": "error",
}


class _Stopped(Exception):
    """The turn was stopped between two reads of the model's stream."""


class _StepFailure(Exception):
    """The model step ended with `StepFailed`."""

    def __init__(self, failed: StepFailed) -> None:
        super().__init__(failed.error.code)
        self.failed = failed


@dataclass
class _Usage:
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass
class TurnLoop:
    """The steps of one turn. `run` streams them through `emit`; `stop` ends them early, closing
    the model's stream at once when it is waiting on it.

    Attributes (after `run`):
        status: `complete`, `error` or `cancelled`.
        failure: why it failed (`error` only).
        finish_reason: the last step's, as the stream's `finish` chunk carries it.
        model_name: the name of the model that answered last (the fallback's when it answered).
        input_tokens, output_tokens: the provider's counts over every step so far; for a step
            it did not count (cut short, or a server that reports no usage), an estimate from the
            characters sent and streamed (`tokens_for_chars`). 0 when nothing was streamed.
    """

    step: ModelStep
    instructions: str | None
    history: Sequence[ModelMessage]
    prompt: str
    tools: Sequence[BoundTool]
    max_steps: int
    # The size of the history, instructions and question, for estimates of the input tokens.
    prompt_chars: int = 0
    status: Literal["complete", "error", "cancelled"] = "complete"
    failure: TurnFailure | None = None
    finish_reason: FinishReason = None
    model_name: str | None = None
    _usage: _Usage = field(default_factory=_Usage)  # of the steps done
    # The step in progress: what the provider reported so far.
    _stream_usage: StepUsage | None = None
    _in_step: bool = False
    _context_chars: int = 0  # sent to the model at the step in progress
    _stopped: bool = False
    _reading: bool = False
    _cancelling: bool = False
    _task: asyncio.Task[Any] | None = None
    _chunks: StepChunks = field(default_factory=StepChunks)
    _pending: dict[str, str] = field(default_factory=dict)  # tool call id: name, unanswered

    @property
    def input_tokens(self) -> int:
        live = 0
        if self._in_step and self._chunks.chars:
            reported = self._stream_usage.input_tokens if self._stream_usage else 0
            live = reported or tokens_for_chars(self._context_chars)
        return self._usage.input_tokens + live

    @property
    def output_tokens(self) -> int:
        live = 0
        if self._in_step:
            reported = self._stream_usage.output_tokens if self._stream_usage else 0
            live = reported or tokens_for_chars(self._chunks.chars)
        return self._usage.output_tokens + live

    def stop(self) -> None:
        """End the turn: at once if it waits on the model, else at its next step or chunk."""
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
        request = StepRequest(
            instructions=self.instructions, tools=[_for_model(tool) for tool in self.tools]
        )
        step_started = False
        try:
            for _ in range(self.max_steps):
                self._check_stopped()
                await emit(StartStepChunk())
                step_started = True
                response = await self._step(messages, request, emit)
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
        except _StepFailure as failure:
            self._fail(failure.failed.cause)
        except Exception as exc:
            self._fail(exc)
        if self._cancelling:
            # The stop's cancellation is spent (a library may have turned it into an error of
            # its own): the task goes on to save the turn as stopped.
            self._cancelling = False
            if self._task is not None:
                self._task.uncancel()
            self.status, self.failure = "cancelled", None
        if self.status != "complete":
            await self._close(emit)
        if step_started:
            await emit(FinishStepChunk())

    def _fail(self, error: BaseException) -> None:
        self.status, self.failure = "error", turn_failure(error)
        if isinstance(error, ParleyError):  # the relay's: the provider failed or refused
            logger.warning("a reply's model step failed: %s", error.code)
        elif not is_model_failure(error) and not self._cancelling:
            logger.error("a reply failed", exc_info=error)

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
        self, messages: list[ModelMessage], request: StepRequest, emit: Emit
    ) -> ModelResponse:
        """One model step, streamed: its chunks sent as its events arrive."""
        self._in_step, self._stream_usage = True, None
        self._chunks.new_step()
        response: ModelResponse | None = None
        self._check_stopped()
        events: AsyncIterator[StepEvent] = self.step.stream(messages, request)
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            while response is None:
                self._check_stopped()
                try:
                    event = await self._read(anext(events))
                except StopAsyncIteration:
                    raise RuntimeError("a model step ended without its response") from None
                if isinstance(event, StepUsage):
                    self._stream_usage = event
                elif isinstance(event, StepFinished):
                    response = event.response
                elif isinstance(event, StepFailed):
                    raise _StepFailure(event)
                else:
                    for chunk in self._chunks.of(event):
                        await emit(chunk)
        for chunk in self._chunks.end_step():
            await emit(chunk)
        self._usage.input_tokens += response.usage.input_tokens or tokens_for_chars(
            self._context_chars
        )
        self._usage.output_tokens += response.usage.output_tokens or tokens_for_chars(
            self._chunks.chars
        )
        self._in_step, self._stream_usage = False, None
        self._context_chars += self._chunks.chars
        self.model_name = response.model_name
        return response

    async def _run_tools(
        self, calls: list[ToolCallPart], tools: dict[str, BoundTool], emit: Emit
    ) -> list[ToolReturnPart]:
        """Announce each call's input, run the calls one after another, and send each result;
        the results are the next request to the model."""
        for call in calls:
            await emit(tool_input_available(call))
            self._pending[call.tool_call_id] = call.tool_name
        returns: list[ToolReturnPart] = []
        for call in calls:
            result = await _call(call, tools)
            del self._pending[call.tool_call_id]
            self._context_chars += len(result.as_text())
            await emit(tool_output(call.tool_call_id, result))
            for source in source_documents(result):
                await emit(source)
            returns.append(
                ToolReturnPart(
                    tool_name=call.tool_name,
                    content=result.as_text() if result.is_error else result.content,
                    tool_call_id=call.tool_call_id,
                    outcome="failed" if result.is_error else "success",
                )
            )
        return returns

    async def _close(self, emit: Emit) -> None:
        """After a failure or a stop: end the open text or reasoning, and answer the calls that
        were announced but not run, so no client shows them as still running."""
        for chunk in [*self._chunks.end_texts(), *self._chunks.cut_calls()]:
            await emit(chunk)
        for tool_call_id in list(self._pending):
            await emit(tool_interrupted(tool_call_id))
        self._pending.clear()


def _for_model(tool: BoundTool) -> ModelToolDefinition:
    """Pydantic AI's definition of a tool (its name, description and argument schema)."""
    return _model_definition(tool.definition)


# Each tool's definition for the model, by the tool definition's identity (kept alive with it).
_MODEL_DEFINITIONS: dict[int, tuple[object, ModelToolDefinition]] = {}
MAX_MODEL_DEFINITIONS = 1024


def _model_definition(definition: ToolDefinition[Any]) -> ModelToolDefinition:
    """Built once per tool: its schema is a deep copy of the arguments' schema (1.8% of a chat
    turn's CPU when built per turn), and nothing that reads it changes it (Pydantic AI's
    schema transformers work on copies of their own)."""
    known = _MODEL_DEFINITIONS.get(id(definition))
    if known is not None and known[0] is definition:
        return known[1]
    built = ModelToolDefinition(
        name=definition.name,
        description=definition.description,
        parameters_json_schema=definition.input_schema(),
    )
    if len(_MODEL_DEFINITIONS) >= MAX_MODEL_DEFINITIONS:
        _MODEL_DEFINITIONS.clear()
    _MODEL_DEFINITIONS[id(definition)] = (definition, built)
    return built


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
