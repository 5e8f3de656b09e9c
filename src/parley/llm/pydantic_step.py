"""The Pydantic AI model step: one step of any Pydantic AI model (each provider's request and
stream mapping, the SDKs' retries, the fallback model, the offline model), streamed through its
direct API and read as the step events of `parley.llm.steps`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from pydantic_ai.direct import model_request_stream
from pydantic_ai.messages import (
    InstructionPart,
    ModelMessage,
    PartDeltaEvent,
    PartEndEvent,
    PartStartEvent,
    TextPart,
    TextPartDelta,
    ThinkingPart,
    ThinkingPartDelta,
    ToolCallPart,
    ToolCallPartDelta,
)
from pydantic_ai.models import Model, ModelRequestParameters
from pydantic_core import to_json

from parley.llm import steps
from parley.llm.failures import provider_failure
from parley.llm.steps import StepEvent, StepRequest


@dataclass
class PydanticAIStep:
    """The model step of a Pydantic AI model."""

    model: Model
    # The request's parameters, built once: a turn's steps all send the same tools.
    _parameters: dict[int, ModelRequestParameters] = field(default_factory=dict)

    def _parameters_of(self, request: StepRequest) -> ModelRequestParameters:
        parameters = self._parameters.get(id(request))
        if parameters is None:
            self._parameters.clear()
            parameters = self._parameters[id(request)] = ModelRequestParameters(
                function_tools=list(request.tools),
                instruction_parts=(
                    [InstructionPart(content=request.instructions)]
                    if request.instructions
                    else None
                ),
            )
        return parameters

    async def stream(
        self, messages: Sequence[ModelMessage], request: StepRequest
    ) -> AsyncIterator[StepEvent]:
        """Stream one step; a failure of the model ends it with `StepFailed`."""
        reported = (0, 0)
        closing = False  # the turn closed this step (a stop): a failure now is only raised
        try:
            async with model_request_stream(
                self.model,
                list(messages),
                model_request_parameters=self._parameters_of(request),
                instrument=False,
            ) as stream:
                async for event in stream:
                    usage = stream.usage
                    counts = (usage.input_tokens or 0, usage.output_tokens or 0)
                    events = [step_event] if (step_event := _event(event)) is not None else []
                    if counts != reported:
                        reported = counts
                        events.append(steps.StepUsage(*counts))
                    try:
                        for item in events:
                            yield item
                    except GeneratorExit:
                        closing = True
                        raise
                response = stream.get()
        except Exception as exc:
            if closing:
                raise  # an async generator being closed must not yield
            yield steps.StepFailed(provider_failure(exc, log_unknown=False), exc)
            return
        yield steps.StepFinished(response)


def _event(event: object) -> StepEvent | None:
    """The step event of one of Pydantic AI's stream events (None: nothing for the turn)."""
    if isinstance(event, PartDeltaEvent):
        delta = event.delta
        if isinstance(delta, TextPartDelta) and delta.content_delta:
            return steps.TextDelta(event.index, "text", delta.content_delta)
        if isinstance(delta, ThinkingPartDelta) and delta.content_delta:
            return steps.TextDelta(event.index, "reasoning", delta.content_delta)
        if isinstance(delta, ToolCallPartDelta) and delta.args_delta:
            args = delta.args_delta
            return steps.ToolCallDelta(
                event.index, args if isinstance(args, str) else to_json(args).decode()
            )
        return None
    if isinstance(event, PartStartEvent):
        part = event.part
        if isinstance(part, TextPart):
            return steps.TextDelta(event.index, "text", part.content, start=True)
        if isinstance(part, ThinkingPart):
            return steps.TextDelta(event.index, "reasoning", part.content, start=True)
        if isinstance(part, ToolCallPart):
            # The raw text as streamed (`args_as_json_str` would wrap a partial one).
            args = part.args if isinstance(part.args, str) else part.args_as_json_str()
            return steps.ToolCallStart(
                event.index, part.tool_call_id, part.tool_name, args if part.args else ""
            )
        return None
    if isinstance(event, PartEndEvent):
        return steps.PartEnd(event.index)
    return None  # FinalResultEvent and the like
