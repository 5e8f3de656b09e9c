"""The offline model (`offline:parley`): a Pydantic AI model that needs no provider, so a new user
can chat (about their tasks) before anyone configures a key.

It is a real `pydantic_ai.models.Model`: the agent loop streams it, runs the tool calls it makes and
feeds the results back exactly as with OpenAI or Anthropic. What it says is decided by
`offline_planner` (deterministic: the same conversation on the same day gives the same reply); it
streams text word by word, `OFFLINE_MODEL_DELAY_MS` apart, and reports token usage estimated from
the characters in and out (about four per token).
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import anyio
from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelResponse,
    ModelResponsePart,
    ModelResponseStreamEvent,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import Model, ModelRequestParameters, StreamedResponse
from pydantic_ai.profiles import ModelProfile
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import RunContext, ToolDefinition
from pydantic_ai.usage import RequestUsage

from parley.llm.catalog_config import OFFLINE_CONTEXT_WINDOW
from parley.llm.offline.planner import Step, TextStep, ToolCallStep, plan_step, read_turn
from parley.llm.titles import TITLE_INSTRUCTIONS, words_title
from parley.usage.pricing import estimate_tokens

MODEL_NAME = "parley"
SYSTEM = "offline"
MESSAGE_OVERHEAD_TOKENS = 4
_WORD = re.compile(r"\s*\S+")


def _part_text(part: Any) -> str:
    if isinstance(part, SystemPromptPart):
        return part.content
    if isinstance(part, UserPromptPart):
        return part.content if isinstance(part.content, str) else str(part.content)
    if isinstance(part, ToolReturnPart):
        return part.model_response_str()
    if isinstance(part, TextPart):
        return part.content
    if isinstance(part, ToolCallPart):
        return part.tool_name + part.args_as_json_str()
    return ""


def estimate_input_tokens(messages: Sequence[ModelMessage]) -> int:
    """The tokens a request of these messages would take."""
    total = 0
    for message in messages:
        total += MESSAGE_OVERHEAD_TOKENS
        if isinstance(message, ModelRequest) and message.instructions:
            total += estimate_tokens(message.instructions)
        total += sum(estimate_tokens(_part_text(part)) for part in message.parts)
    return total


def _tool_arguments(tool: ToolDefinition) -> frozenset[str] | None:
    properties = tool.parameters_json_schema.get("properties")
    return frozenset(properties) if isinstance(properties, dict) else None


def _next_call_id(messages: Sequence[ModelMessage]) -> str:
    """Numbered by the calls already in the conversation: unique in it, and deterministic."""
    made = sum(
        1
        for message in messages
        if isinstance(message, ModelResponse)
        for part in message.parts
        if isinstance(part, ToolCallPart)
    )
    return f"offline_call_{made + 1}"


class OfflineModel(Model):
    """Parley's own model: understands plain requests about tasks and calls the task tools.

    Args:
        delay_seconds: the pause between streamed words.
        today: today's date (for "tomorrow" and the like); the current UTC date by default.
    """

    def __init__(
        self, *, delay_seconds: float = 0.02, today: Callable[[], date] | None = None
    ) -> None:
        super().__init__(
            profile=ModelProfile(context_window=OFFLINE_CONTEXT_WINDOW, supports_tools=True)
        )
        self.delay_seconds = delay_seconds
        self._today = today or (lambda: datetime.now(UTC).date())

    @property
    def model_name(self) -> str:
        """The model's name: `parley`."""
        return MODEL_NAME

    @property
    def system(self) -> str:
        """The provider's name: `offline`."""
        return SYSTEM

    def _plan(self, messages: Sequence[ModelMessage], parameters: ModelRequestParameters) -> Step:
        instructions = [part.content for part in parameters.instruction_parts or ()]
        if TITLE_INSTRUCTIONS in instructions:  # the `chat.title` job: a title of the words
            return TextStep(words_title(read_turn(messages).prompt))
        tools = {tool.name: _tool_arguments(tool) for tool in parameters.declared_function_tools}
        return plan_step(read_turn(messages), tools, self._today())

    async def request(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
    ) -> ModelResponse:
        """Answer in one piece."""
        _, parameters = self.prepare_request(model_settings, model_request_parameters)
        step = self._plan(messages, parameters)
        parts: list[ModelResponsePart]
        if isinstance(step, TextStep):
            parts = [TextPart(content=step.text)]
            output = step.text
        else:
            call = ToolCallPart(step.tool_name, step.args, tool_call_id=_next_call_id(messages))
            parts = [call]
            output = call.tool_name + call.args_as_json_str()
        return ModelResponse(
            parts=parts,
            usage=RequestUsage(
                input_tokens=estimate_input_tokens(messages), output_tokens=estimate_tokens(output)
            ),
            model_name=self.model_name,
            provider_name=self.system,
            finish_reason="stop" if isinstance(step, TextStep) else "tool_call",
        )

    @asynccontextmanager
    async def request_stream(
        self,
        messages: list[ModelMessage],
        model_settings: ModelSettings | None,
        model_request_parameters: ModelRequestParameters,
        run_context: RunContext[Any] | None = None,
    ) -> AsyncGenerator[StreamedResponse]:
        """Answer word by word (a tool call arrives as its name, then its arguments)."""
        _, parameters = self.prepare_request(model_settings, model_request_parameters)
        yield OfflineStreamedResponse(
            model_request_parameters=parameters,
            step=self._plan(messages, parameters),
            tool_call_id=_next_call_id(messages),
            delay_seconds=self.delay_seconds,
            input_tokens=estimate_input_tokens(messages),
        )


class _OfflineStreamCancelled(Exception):
    """Raised inside the stream once it is cancelled, as a closed connection would be."""


@dataclass
class OfflineStreamedResponse(StreamedResponse):
    """The offline model's reply, streamed."""

    step: Step = field(kw_only=True)
    tool_call_id: str = field(kw_only=True)
    delay_seconds: float = field(kw_only=True)
    input_tokens: int = field(kw_only=True)
    _timestamp: datetime = field(default_factory=lambda: datetime.now(UTC), init=False)

    def _count(self, output: str) -> None:
        self._usage = RequestUsage(
            input_tokens=self.input_tokens, output_tokens=estimate_tokens(output)
        )

    async def _pause(self) -> None:
        if self.delay_seconds > 0:
            await anyio.sleep(self.delay_seconds)
        if self._cancelled:
            raise _OfflineStreamCancelled()

    async def _get_event_iterator(self) -> AsyncIterator[ModelResponseStreamEvent]:
        self._count("")
        if isinstance(self.step, ToolCallStep):
            async for event in self._stream_tool_call(self.step):
                yield event
            self.finish_reason = "tool_call"
            return
        emitted = ""
        for index, word in enumerate(_WORD.findall(self.step.text)):
            if index:
                await self._pause()
            emitted += word
            self._count(emitted)
            for event in self._parts_manager.handle_text_delta(vendor_part_id="text", content=word):
                yield event
        self.finish_reason = "stop"

    async def _stream_tool_call(
        self, step: ToolCallStep
    ) -> AsyncIterator[ModelResponseStreamEvent]:
        for event in self._parts_manager.handle_tool_call_delta_events(
            vendor_part_id="call", tool_name=step.tool_name, tool_call_id=self.tool_call_id
        ):
            yield event
        await self._pause()
        arguments = json.dumps(step.args, ensure_ascii=False)
        self._count(step.tool_name + arguments)
        for event in self._parts_manager.handle_tool_call_delta_events(
            vendor_part_id="call", args=arguments
        ):
            yield event

    async def close_stream(self) -> None:
        """Nothing to close: there is no connection."""

    def get_stream_cancel_errors(self) -> tuple[type[BaseException], ...]:
        """The error the stream raises once cancelled."""
        return (_OfflineStreamCancelled,)

    @property
    def model_name(self) -> str:
        """`parley`."""
        return MODEL_NAME

    @property
    def provider_name(self) -> str:
        """`offline`."""
        return SYSTEM

    @property
    def provider_url(self) -> None:
        """There is none."""
        return None

    @property
    def timestamp(self) -> datetime:
        """When the reply started."""
        return self._timestamp
