"""From OpenAI's chat completion request to a Pydantic AI model request (`to_model_call`); the
way back, from the model's response to OpenAI's answers, is `parley.gateway.model_responses`.

Messages become `ModelRequest`s (system, developer, user and tool messages, consecutive ones merged)
and `ModelResponse`s (assistant messages, with their tool calls); tools become `ToolDefinition`s,
`tool_choice` and the sampling arguments become `ModelSettings`, and a `json_schema` response
format becomes native structured output. What a translated model cannot do (several choices,
log probabilities, audio, content other than text) is a 400 naming the argument.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast

from pydantic_ai.messages import (
    ModelMessage,
    ModelRequest,
    ModelRequestPart,
    ModelResponse,
    ModelResponsePart,
    SystemPromptPart,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
    UserPromptPart,
)
from pydantic_ai.models import ModelRequestParameters
from pydantic_ai.output import OutputObjectDefinition
from pydantic_ai.settings import ModelSettings
from pydantic_ai.tools import ToolDefinition

from parley.core.errors import InvalidRequest
from parley.gateway.schemas import ChatCompletionRequest, ChatMessage, NamedToolChoice
from parley.llm.schemas import OFFLINE_PROVIDER, CatalogEntry

EMPTY_OBJECT_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


@dataclass(frozen=True, slots=True)
class ModelCall:
    """What a translated model is asked: the messages, the settings and the tools."""

    messages: list[ModelMessage]
    settings: ModelSettings
    parameters: ModelRequestParameters


def _text(message: ChatMessage, index: int) -> str:
    """A message's content as text; only text parts can be translated."""
    if message.content is None:
        return ""
    if isinstance(message.content, str):
        return message.content
    texts: list[str] = []
    for number, part in enumerate(message.content):
        if part.type not in ("text", "refusal") or part.text is None:
            raise InvalidRequest(
                f"Content of type '{part.type}' is not supported by this model; send text.",
                param=f"messages[{index}].content[{number}].type",
            )
        texts.append(part.text)
    return "\n".join(texts)


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _check_supported(request: ChatCompletionRequest) -> None:
    """Refuse what no translated model can answer."""
    unsupported = {
        "logprobs": bool(request.logprobs),
        "top_logprobs": bool(request.top_logprobs),
        "audio": request.audio is not None,
        "modalities": bool(request.modalities and set(request.modalities) - {"text"}),
        "prediction": request.prediction is not None,
        "functions": bool(request.functions),
        "function_call": request.function_call is not None,
        "web_search_options": request.web_search_options is not None,
    }
    for name, present in unsupported.items():
        if present:
            raise InvalidRequest(
                f"'{name}' is not supported by this model (only OpenAI-compatible models take it).",
                param=name,
            )


def to_messages(messages: list[ChatMessage]) -> list[ModelMessage]:
    """OpenAI messages as Pydantic AI messages (consecutive request parts merged).

    Raises:
        InvalidRequest: a message cannot be translated (a tool result answering no tool call,
            content that is not text).
    """
    history: list[ModelMessage] = []
    pending: list[ModelRequestPart] = []
    tool_names: dict[str, str] = {}
    for index, message in enumerate(messages):
        if message.role == "assistant":
            if pending:
                history.append(ModelRequest(parts=pending))
                pending = []
            parts: list[ModelResponsePart] = []
            text = _text(message, index)
            if text:
                parts.append(TextPart(content=text))
            for number, call in enumerate(message.tool_calls or ()):
                tool_names[call.id] = call.function.name
                arguments = call.function.arguments or "{}"
                if not _is_json_object(arguments):
                    raise InvalidRequest(
                        "Tool call arguments must be a JSON object.",
                        param=f"messages[{index}].tool_calls[{number}].function.arguments",
                    )
                parts.append(ToolCallPart(call.function.name, arguments, tool_call_id=call.id))
            history.append(ModelResponse(parts=parts or [TextPart(content="")]))
        elif message.role in ("system", "developer"):
            pending.append(SystemPromptPart(content=_text(message, index)))
        elif message.role == "user":
            pending.append(UserPromptPart(content=_text(message, index)))
        elif message.role == "tool":
            call_id = message.tool_call_id or ""
            if call_id not in tool_names:
                raise InvalidRequest(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceding message with 'tool_calls'.",
                    param=f"messages[{index}].tool_call_id",
                )
            pending.append(
                ToolReturnPart(
                    tool_name=tool_names[call_id],
                    content=_text(message, index),
                    tool_call_id=call_id,
                )
            )
        else:
            raise InvalidRequest(
                "Messages with role 'function' are not supported by this model; use 'tool'.",
                param=f"messages[{index}].role",
            )
    if pending:
        history.append(ModelRequest(parts=pending))
    return history


def _tool_definitions(request: ChatCompletionRequest) -> list[ToolDefinition]:
    definitions: list[ToolDefinition] = []
    for index, tool in enumerate(request.tools or ()):
        if tool.type != "function" or tool.function is None:
            raise InvalidRequest(
                f"Tools of type '{tool.type}' are not supported by this model.",
                param=f"tools[{index}].type",
            )
        function = tool.function
        definitions.append(
            ToolDefinition(
                name=function.name,
                description=function.description,
                parameters_json_schema=function.parameters or EMPTY_OBJECT_SCHEMA,
                strict=function.strict,
            )
        )
    return definitions


def _tool_choice(request: ChatCompletionRequest, tool_names: set[str]) -> Any:
    choice = request.tool_choice
    if choice is None:
        return None
    if not tool_names:
        raise InvalidRequest(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
            "specified.",
            param="tool_choice",
        )
    if isinstance(choice, NamedToolChoice):
        if choice.function.name not in tool_names:
            raise InvalidRequest(
                f"Invalid value for 'tool_choice': no tool named '{choice.function.name}'.",
                param="tool_choice",
            )
        return [choice.function.name]
    return choice


def _settings(request: ChatCompletionRequest, tool_choice: Any) -> ModelSettings:
    """The model settings the request names (those it leaves out stay the model's defaults)."""
    named: dict[str, Any] = {
        "max_tokens": request.output_token_limit,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop_sequences": request.stop_sequences or None,
        "seed": request.seed,
        "presence_penalty": request.presence_penalty,
        "frequency_penalty": request.frequency_penalty,
        "logit_bias": request.logit_bias or None,
        "parallel_tool_calls": request.parallel_tool_calls,
        "tool_choice": tool_choice,
    }
    return cast(ModelSettings, {key: value for key, value in named.items() if value is not None})


def _output(request: ChatCompletionRequest) -> dict[str, Any]:
    """Request parameters for the response format: native structured output for a schema."""
    response_format = request.response_format
    if response_format is None or response_format.type == "text":
        return {}
    if response_format.type == "json_schema" and response_format.json_schema is not None:
        spec = response_format.json_schema
        definition = OutputObjectDefinition(
            json_schema=spec.schema_ or EMPTY_OBJECT_SCHEMA,
            name=spec.name,
            description=spec.description,
            strict=spec.strict,
        )
    else:
        definition = OutputObjectDefinition(
            json_schema={"type": "object", "additionalProperties": True}, name="json_object"
        )
    return {"output_mode": "native", "output_object": definition}


def to_model_call(request: ChatCompletionRequest, entry: CatalogEntry) -> ModelCall:
    """The Pydantic AI request for a translated model.

    Raises:
        InvalidRequest: the request asks what a translated model cannot do.
    """
    _check_supported(request)
    if request.n is not None and request.n > 1:
        raise InvalidRequest("Only n=1 is supported.", param="n")
    tools = _tool_definitions(request)
    if tools and not entry.supports_tools:
        raise InvalidRequest(f"The model '{entry.id}' does not support tools.", param="tools")
    tool_choice = _tool_choice(request, {tool.name for tool in tools})
    if tool_choice == "none" and entry.provider == OFFLINE_PROVIDER:
        tools = []  # the offline model plans from the tools it is offered
    parameters = ModelRequestParameters(function_tools=tools, **_output(request))
    return ModelCall(to_messages(request.messages), _settings(request, tool_choice), parameters)
