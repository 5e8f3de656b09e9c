"""The model-step interface: one request to a model, streamed as Parley's own step events.

A turn's loop (`parley.turns.loop`) sends the conversation, the tools and the settings of a step to
a `ModelStep` and reads what comes back as `StepEvent`s, without knowing which implementation
runs:

- `parley.llm.pydantic_step.PydanticAIStep`: any Pydantic AI model (each provider's request and
  stream mapping, the SDKs' retries, the fallback model, the offline model in `llm/offline/`);
- `parley.llm.openai_step.OpenAICompatibleStep`: an OpenAI-compatible server other than OpenAI's
  own, streamed straight from its `/chat/completions` JSON.

A step's events, in order: text and reasoning (`TextDelta`, a new part when `start`), tool calls
(`ToolCallStart`, then `ToolCallDelta`s of its arguments), `PartEnd` where the model says a part
ended, `StepUsage` whenever the provider's count changes, and last either `StepFinished` (the
whole response: its parts, usage, model name and finish reason) or `StepFailed`. A step never
raises for the model's or provider's failure; a cancelled step closes its request.

The conversation and the response are Pydantic AI's message types (`ModelMessage`,
`ModelResponse`); this module imports them for type checking only, so that it costs nothing at
start-up.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, Protocol

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelMessage, ModelResponse
    from pydantic_ai.tools import ToolDefinition

    from parley.core.errors import ParleyError


class TextDelta(NamedTuple):
    """Text or reasoning for the part at position `part`; `start` when the part begins with it."""

    part: int
    kind: Literal["text", "reasoning"]
    text: str
    start: bool = False


class ToolCallStart(NamedTuple):
    """A tool call begins as the part at `part`, with the start of its arguments (JSON text,
    maybe empty)."""

    part: int
    tool_call_id: str
    tool_name: str
    arguments: str


class ToolCallDelta(NamedTuple):
    """More of the arguments of the tool call at `part`."""

    part: int
    arguments: str


class PartEnd(NamedTuple):
    """The part at `part` is complete (not every provider says so: the step's end closes its
    parts)."""

    part: int


class StepUsage(NamedTuple):
    """The provider's token counts for this step so far (0 where it reported none)."""

    input_tokens: int
    output_tokens: int


class StepFinished(NamedTuple):
    """The step's whole response, as the conversation's next message."""

    response: ModelResponse


class StepFailed(NamedTuple):
    """The model or its provider failed: `error` is what `/v1` would answer, `cause` what was
    raised (see `parley.llm.failures`)."""

    error: ParleyError
    cause: BaseException


StepEvent = (
    TextDelta | ToolCallStart | ToolCallDelta | PartEnd | StepUsage | StepFinished | StepFailed
)


@dataclass(frozen=True, slots=True)
class StepRequest:
    """What a step sends besides the conversation: the instructions and the tools."""

    instructions: str | None
    tools: Sequence[ToolDefinition]


class ModelStep(Protocol):
    """One model, able to stream one step of a conversation."""

    def stream(
        self, messages: Sequence[ModelMessage], request: StepRequest
    ) -> AsyncIterator[StepEvent]:
        """Stream one step: its events, ending with `StepFinished` or `StepFailed`."""
        ...
