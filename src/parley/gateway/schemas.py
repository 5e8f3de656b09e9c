"""OpenAI's wire formats for `/v1`: the chat completion request (every argument OpenAI documents;
anything else is refused, so nothing a caller sends can point Parley at another server), the
embeddings request, and the model list, completion, stream chunk, embedding list and error objects
as OpenAI sends them.

Request models forbid unknown fields at the top level and in messages, as OpenAI does; the objects
OpenAI keeps open (content parts, tool definitions' parameters, `metadata`) are kept as sent, so
that a pass-through request reaches the provider unchanged.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

MAX_STOP_SEQUENCES = 4
# The most output tokens a call may ask for: above every model's output limit, and small enough
# that no estimate made from it can overflow the budget's columns.
MAX_OUTPUT_TOKENS = 1_000_000
# OpenAI's documented range of a logit bias; a seed is a 64-bit integer.
LOGIT_BIAS_LIMIT = 100
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


class OpenModel(BaseModel):
    """An object OpenAI may grow: fields not named here are kept and passed on."""

    model_config = ConfigDict(extra="allow")


class ClosedModel(BaseModel):
    """An object whose fields OpenAI fixes: anything else is an unrecognized argument."""

    model_config = ConfigDict(extra="forbid")


class ContentPart(OpenModel):
    """One part of a message's content: `{"type": "text", "text"}`, or another kind (images,
    audio, files) that only pass-through providers take."""

    type: str = Field(examples=["text"])
    text: str | None = None


class FunctionCall(OpenModel):
    """The function a tool call invokes: its name and its arguments as a JSON string."""

    name: str
    arguments: str = ""


class ToolCall(OpenModel):
    """A tool call an assistant message made."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(ClosedModel):
    """One message of the conversation: `system`, `developer`, `user`, `assistant` or `tool`."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    refusal: str | None = None
    audio: dict[str, Any] | None = None
    function_call: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check_role_fields(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a message with role 'tool' needs a 'tool_call_id'")
        if self.role in ("system", "developer", "user", "tool") and self.content is None:
            raise ValueError(f"a message with role '{self.role}' needs 'content'")
        return self


class FunctionDefinition(OpenModel):
    """A function the model may call: its name, description and JSON schema parameters."""

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDefinitionParam(OpenModel):
    """A tool offered to the model (`type: "function"`)."""

    type: str = "function"
    function: FunctionDefinition | None = None


class NamedFunction(ClosedModel):
    """The function a named tool choice forces."""

    name: str


class NamedToolChoice(ClosedModel):
    """`{"type": "function", "function": {"name"}}`: the model must call this tool."""

    type: Literal["function"] = "function"
    function: NamedFunction


class StreamOptions(OpenModel):
    """Streaming options: `include_usage` adds a last chunk with the token usage."""

    include_usage: bool | None = None


class JsonSchemaFormat(OpenModel):
    """The schema of a `json_schema` response format."""

    name: str = Field(min_length=1, max_length=64)
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class ResponseFormat(ClosedModel):
    """`text`, `json_object`, or `json_schema` with its schema."""

    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_when_needed(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("'json_schema' is required when type is 'json_schema'")
        return self


class ChatCompletionRequest(ClosedModel):
    """`POST /v1/chat/completions`: OpenAI's request body.

    `model` is a Parley catalog id (`GET /v1/models`). Every other argument means what it means at
    OpenAI; an argument OpenAI does not define is refused (400).
    """

    model: str = Field(min_length=1, max_length=200, examples=["offline:parley"])
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    tools: list[ToolDefinitionParam] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=MAX_OUTPUT_TOKENS)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    user: str | None = None
    response_format: ResponseFormat | None = None
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: (
        dict[str, Annotated[int, Field(ge=-LOGIT_BIAS_LIMIT, le=LOGIT_BIAS_LIMIT)]] | None
    ) = None
    metadata: dict[str, str] | None = None
    n: int | None = Field(default=None, ge=1, le=128)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    store: bool | None = None
    service_tier: str | None = None
    reasoning_effort: str | None = None
    verbosity: str | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    modalities: list[str] | None = None
    audio: dict[str, Any] | None = None
    prediction: dict[str, Any] | None = None
    web_search_options: dict[str, Any] | None = None
    functions: list[dict[str, Any]] | None = None
    function_call: str | dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check_stop(self) -> ChatCompletionRequest:
        if isinstance(self.stop, list) and len(self.stop) > MAX_STOP_SEQUENCES:
            raise ValueError(f"'stop' takes at most {MAX_STOP_SEQUENCES} sequences")
        return self

    @property
    def output_token_limit(self) -> int | None:
        """`max_completion_tokens`, else `max_tokens`."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def wants_usage_chunk(self) -> bool:
        """Whether a stream should end with a usage chunk (`stream_options.include_usage`)."""
        return bool(self.stream_options and self.stream_options.include_usage)

    @property
    def stop_sequences(self) -> list[str]:
        """`stop` as a list."""
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)


# -- responses (documented in OpenAPI; the translated path builds them) ----------------------


class ModelObject(BaseModel):
    """A model, as OpenAI lists it."""

    id: str = Field(examples=["openai:gpt-4o-mini"])
    object: Literal["model"] = "model"
    created: int = Field(description="Unix time the entry was added to the catalog.")
    owned_by: str = Field(examples=["openai", "anthropic", "gemini", "offline"])


class ModelList(BaseModel):
    """`GET /v1/models`."""

    object: Literal["list"] = "list"
    data: list[ModelObject]


class CompletionUsage(BaseModel):
    """Tokens in and out."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CompletionMessage(BaseModel):
    """The assistant's message."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    refusal: str | None = None
    tool_calls: list[ToolCall] | None = None


class CompletionChoice(BaseModel):
    """One choice (Parley answers one)."""

    index: int = 0
    message: CompletionMessage
    logprobs: None = None
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"]


class ChatCompletion(BaseModel):
    """`POST /v1/chat/completions` without `stream`."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


class ChunkDelta(BaseModel):
    """What a stream chunk adds to the message."""

    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(BaseModel):
    """One choice of a stream chunk."""

    index: int = 0
    delta: ChunkDelta
    logprobs: None = None
    finish_reason: Literal["stop", "length", "tool_calls", "content_filter"] | None = None


class ChatCompletionChunk(BaseModel):
    """One `data:` event of a streamed completion (the stream ends with `data: [DONE]`)."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


class OpenAIErrorInfo(BaseModel):
    """What went wrong, as OpenAI says it."""

    message: str
    type: str = Field(examples=["invalid_request_error"])
    param: str | None = None
    code: str | None = Field(default=None, examples=["model_not_found"])


class OpenAIErrorBody(BaseModel):
    """Every `/v1` error: `{"error": {"message", "type", "param", "code"}}`."""

    error: OpenAIErrorInfo


# -- embeddings ------------------------------------------------------------------------------

# OpenAI's own bounds on one request's inputs, and a character bound on each (about 8,000
# tokens, an embedding model's usual input limit).
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_INPUT_CHARS = 32_000
# All the inputs together: OpenAI's 300,000 tokens a request, at about four characters a token.
MAX_EMBEDDING_TOTAL_CHARS = 1_200_000
# Above every embedding model's vector length.
MAX_EMBEDDING_DIMENSIONS = 16_384


class EmbeddingRequest(ClosedModel):
    """`POST /v1/embeddings`: OpenAI's request body.

    `model` is the catalog id of an embedding model (`offline:embed`, or a provider's). `input`
    is a string or an array of strings; token arrays are refused (400). `input_type` (as NVIDIA's
    OpenAI-compatible API names it) says whether the texts are search queries or the passages
    searched, for models that embed the two differently; without it they are embedded as
    queries, which such models (e5) advise for general use.
    """

    input: str | list[str] | list[int] | list[list[int]] = Field(
        description="A string or an array of strings (at most 2048, each at most 32,000 "
        "characters, 1,200,000 in all).",
        examples=["The food was delicious and the waiter was friendly."],
    )
    model: str = Field(min_length=1, max_length=200, examples=["offline:embed"])
    encoding_format: Literal["float", "base64"] = Field(
        default="float",
        description="`float`: arrays of numbers; `base64`: each vector's little-endian float32 "
        "bytes in base64 (what the `openai` SDKs ask for and decode).",
    )
    dimensions: int | None = Field(
        default=None,
        ge=1,
        le=MAX_EMBEDDING_DIMENSIONS,
        description="Shorten the vectors to this many dimensions (renormalised); at most the "
        "model's own.",
    )
    user: str | None = Field(default=None, description="Accepted and ignored.")
    input_type: Literal["query", "passage"] | None = Field(
        default=None, description="`query` (the default) or `passage`."
    )

    @field_validator("input", mode="wrap")
    @classmethod
    def _one_message_for_input(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # The union's own errors name each of its members ("Input should be a valid string"
        # for an array): one sentence says what `input` may be.
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError(
                "input_type", "Expected a string or an array of strings."
            ) from None


class EmbeddingObject(BaseModel):
    """One input's vector."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str = Field(description="Numbers, or base64 with `base64`.")


class EmbeddingUsage(BaseModel):
    """Tokens read (embeddings have no output)."""

    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    """`POST /v1/embeddings`'s answer: a vector per input, in the inputs' order."""

    object: Literal["list"] = "list"
    data: list[EmbeddingObject]
    model: str
    usage: EmbeddingUsage
