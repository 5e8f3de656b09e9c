"""The turn loop's state machine, unit by unit: a scripted model step (the `parley.llm.steps`
interface, the one seam between a turn and its model) drives `TurnLoop` through its states —
complete, tool calls, the step limit, a model failure, a stop while the model streams or while a
tool runs — and each test reads the UI chunks the loop sent and the state it ended in. The HTTP
tests beside this one (test_loop.py, test_streaming.py) drive the same loop through a real server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import BaseModel
from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart, ToolCallPart
from pydantic_ai.usage import RequestUsage

from parley.core.errors import ProviderUnavailable
from parley.llm.steps import (
    StepEvent,
    StepFailed,
    StepFinished,
    StepRequest,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
)
from parley.tools.registry import BoundTool, ToolContext, ToolDefinition
from parley.turns.chunks import CUT_TOOL_TEXT, INTERRUPTED_TOOL_TEXT
from parley.turns.loop import STEP_LIMIT, TurnLoop

Script = list[StepEvent | float]  # a float: wait that many seconds before the next event
# The chunks of a scripted text step (two deltas) and of a scripted call step.
TEXT_STEP = ["start-step", "text-start", "text-delta", "text-delta", "text-end", "finish-step"]
CALL_STEP = [
    *("start-step", "tool-input-start", "tool-input-delta", "tool-input-delta"),
    *("tool-input-available", "tool-output-available", "finish-step"),
]


@dataclass
class ScriptedStep:
    """A model step that streams scripted events, one script a step, and records what it was
    sent and whether its stream was closed."""

    scripts: list[Script]
    requests: list[list[ModelMessage]] = field(default_factory=list)
    closed: int = 0
    waiting: asyncio.Event = field(default_factory=asyncio.Event)  # set at a scripted wait

    async def stream(
        self, messages: Sequence[ModelMessage], request: StepRequest
    ) -> AsyncIterator[StepEvent]:
        self.requests.append(list(messages))
        script = self.scripts[min(len(self.requests), len(self.scripts)) - 1]
        try:
            for item in script:
                if isinstance(item, float):
                    self.waiting.set()
                    await asyncio.sleep(item)
                else:
                    yield item
        finally:
            self.closed += 1


class EchoArguments(BaseModel):
    text: str = ""


class Echoed(BaseModel):
    echoed: str


@dataclass
class EchoTool:
    """The function of a tool that echoes its argument, after `delay` seconds."""

    delay: float = 0.0
    calls: int = 0
    started: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, context: ToolContext, arguments: EchoArguments) -> Echoed:
        self.calls += 1
        self.started.set()
        await asyncio.sleep(self.delay)
        return Echoed(echoed=arguments.text)


def bound(function: EchoTool) -> BoundTool:
    definition = ToolDefinition(
        name="echo",
        description="Echo the text.",
        arguments=EchoArguments,
        function=function,
        result=Echoed,
    )
    context = ToolContext(user=None, sessionmaker=None, cursor_codec=None)  # type: ignore[arg-type]
    return BoundTool(definition, context)


def text_step(text: str, *, usage: RequestUsage | None = None) -> Script:
    return [
        TextDelta(0, "text", text[:2], start=True),
        TextDelta(0, "text", text[2:]),
        StepFinished(
            ModelResponse(
                parts=[TextPart(content=text)],
                usage=usage or RequestUsage(),
                model_name="scripted",
                finish_reason="stop",
            )
        ),
    ]


def call_step(arguments: str = '{"text":"hi"}', call_id: str = "call_1") -> Script:
    return [
        ToolCallStart(0, call_id, "echo", arguments[:3]),
        ToolCallDelta(0, arguments[3:]),
        StepFinished(
            ModelResponse(
                parts=[ToolCallPart(tool_name="echo", args=arguments, tool_call_id=call_id)],
                model_name="scripted",
                finish_reason="tool_call",
            )
        ),
    ]


@dataclass
class Run:
    loop: TurnLoop
    chunks: list[dict[str, Any]]

    @property
    def types(self) -> list[str]:
        return [chunk["type"] for chunk in self.chunks]


def new_loop(step: ScriptedStep, tools: Sequence[BoundTool] = (), max_steps: int = 4) -> Run:
    loop = TurnLoop(
        step=step,
        instructions=None,
        history=[],
        prompt="question",
        tools=list(tools),
        max_steps=max_steps,
        prompt_chars=40,
    )
    return Run(loop, [])


async def run(run: Run) -> Run:
    async def emit(chunk: Any) -> None:
        run.chunks.append(chunk.model_dump(mode="json", by_alias=True, exclude_none=True))

    await run.loop.run(emit)
    return run


async def test_a_text_step_completes_with_its_chunks_and_the_providers_usage() -> None:
    step = ScriptedStep([text_step("Hello", usage=RequestUsage(input_tokens=9, output_tokens=3))])
    done = await run(new_loop(step))
    assert done.types == TEXT_STEP
    assert "".join(c.get("delta", "") for c in done.chunks) == "Hello"
    assert done.loop.status == "complete"
    assert done.loop.failure is None
    assert done.loop.finish_reason == "stop"
    assert done.loop.model_name == "scripted"
    assert (done.loop.input_tokens, done.loop.output_tokens) == (9, 3)
    assert step.closed == 1


async def test_without_the_providers_usage_the_tokens_are_estimated_from_characters() -> None:
    done = await run(new_loop(ScriptedStep([text_step("12345678")])))
    # 40 characters sent (4 per token), 8 streamed.
    assert (done.loop.input_tokens, done.loop.output_tokens) == (10, 2)


async def test_a_tool_call_runs_and_its_result_goes_back_to_the_next_step() -> None:
    tool = EchoTool()
    step = ScriptedStep([call_step(), text_step("Done.")])
    done = await run(new_loop(step, [bound(tool)]))
    assert done.types == [*CALL_STEP, *TEXT_STEP]
    available = done.chunks[4]
    assert available["input"] == {"text": "hi"}
    assert done.chunks[5]["output"] == {"echoed": "hi"}
    assert tool.calls == 1
    assert done.loop.status == "complete"
    # The second step was sent the call and its result after the question.
    second = step.requests[1]
    assert [message.kind for message in second] == ["request", "response", "request"]
    assert second[2].parts[0].tool_call_id == "call_1"  # type: ignore[union-attr]


async def test_a_refused_tool_call_is_an_error_result_the_model_reads() -> None:
    step = ScriptedStep([call_step('{"text": 5}'), text_step("Sorry.")])
    done = await run(new_loop(step, [bound(EchoTool())]))
    error = next(c for c in done.chunks if c["type"] == "tool-output-error")
    assert error["errorText"].startswith("Invalid arguments")
    assert done.loop.status == "complete"


async def test_a_model_that_calls_tools_at_every_step_stops_at_the_step_limit() -> None:
    step = ScriptedStep([call_step()])
    done = await run(new_loop(step, [bound(EchoTool())], max_steps=2))
    assert len(step.requests) == 2
    assert done.loop.status == "error"
    assert done.loop.failure == STEP_LIMIT
    assert done.types.count("start-step") == done.types.count("finish-step") == 2


async def test_a_model_failure_mid_text_ends_the_open_part_and_is_classified() -> None:
    error = ProviderUnavailable()
    step = ScriptedStep([[TextDelta(0, "text", "Hel", start=True), StepFailed(error, error)]])
    done = await run(new_loop(step))
    assert done.types == ["start-step", "text-start", "text-delta", "text-end", "finish-step"]
    assert done.loop.status == "error"
    assert done.loop.failure is not None
    assert done.loop.failure.code == "provider_unavailable"


async def test_a_failure_while_a_call_streams_cuts_the_call() -> None:
    error = ProviderUnavailable()
    step = ScriptedStep([[ToolCallStart(0, "call_9", "echo", '{"te'), StepFailed(error, error)]])
    done = await run(new_loop(step, [bound(EchoTool())]))
    cut = next(c for c in done.chunks if c["type"] == "tool-input-error")
    assert cut["toolCallId"] == "call_9"
    assert cut["errorText"] == CUT_TOOL_TEXT
    assert cut["input"] == '{"te'
    assert done.loop.status == "error"


async def test_a_stop_while_the_model_streams_closes_its_stream_at_once() -> None:
    step = ScriptedStep([[TextDelta(0, "text", "Hel", start=True), 30.0, *text_step("lo")]])
    loop_run = new_loop(step)
    task = asyncio.create_task(run(loop_run))
    await asyncio.wait_for(step.waiting.wait(), 5)
    loop_run.loop.stop()
    done = await asyncio.wait_for(task, 5)
    assert done.loop.status == "cancelled"
    assert done.loop.failure is None
    assert step.closed == 1
    assert done.types == ["start-step", "text-start", "text-delta", "text-end", "finish-step"]


async def test_a_stop_while_a_tool_runs_lets_it_finish_and_ends_before_the_next_step() -> None:
    tool = EchoTool(delay=0.3)
    step = ScriptedStep([call_step(), text_step("never")])
    loop_run = new_loop(step, [bound(tool)])
    task = asyncio.create_task(run(loop_run))
    await asyncio.wait_for(tool.started.wait(), 5)
    loop_run.loop.stop()
    done = await asyncio.wait_for(task, 5)
    assert tool.calls == 1
    assert len(step.requests) == 1
    assert done.loop.status == "cancelled"
    assert "tool-output-available" in done.types


@dataclass
class BrokenTool(EchoTool):
    """A tool with a bug: it raises."""

    async def __call__(self, context: ToolContext, arguments: EchoArguments) -> Echoed:
        self.calls += 1
        raise RuntimeError("a bug")


async def test_a_tool_that_crashes_fails_the_turn_and_its_announced_calls_are_answered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    both = ModelResponse(
        parts=[
            ToolCallPart(tool_name="echo", args='{"text":"a"}', tool_call_id="call_a"),
            ToolCallPart(tool_name="echo", args='{"text":"b"}', tool_call_id="call_b"),
        ],
        model_name="scripted",
    )
    tool = BrokenTool()
    done = await run(new_loop(ScriptedStep([[StepFinished(both)]]), [bound(tool)]))
    assert tool.calls == 1
    assert done.loop.status == "error"
    assert done.loop.failure is not None
    assert (done.loop.failure.code, done.loop.failure.message) == (
        "provider_error",
        "The reply failed.",
    )
    interrupted = [c for c in done.chunks if c.get("errorText") == INTERRUPTED_TOOL_TEXT]
    assert {c["toolCallId"] for c in interrupted} == {"call_a", "call_b"}
    assert done.types[-1] == "finish-step"
    assert "a reply failed" in caplog.text


async def test_a_cancellation_from_outside_is_not_taken_for_a_stop() -> None:
    step = ScriptedStep([[TextDelta(0, "text", "Hel", start=True), 30.0, *text_step("lo")]])
    loop_run = new_loop(step)
    task = asyncio.create_task(run(loop_run))
    await asyncio.wait_for(step.waiting.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert step.closed == 1
