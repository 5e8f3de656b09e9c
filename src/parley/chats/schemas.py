"""Request and response models of chats and messages (CONTRACT.md section 5)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from parley.core.validation import RequestModel, StorableText

MAX_MESSAGE_CHARS = 1_000_000
MAX_SYSTEM_PROMPT_CHARS = 20_000

Title = Annotated[
    StorableText, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]
ModelId = Annotated[StorableText, StringConstraints(min_length=1, max_length=200)]
SystemPrompt = Annotated[StorableText, StringConstraints(max_length=MAX_SYSTEM_PROMPT_CHARS)]
MessageText = Annotated[StorableText, StringConstraints(min_length=1, max_length=MAX_MESSAGE_CHARS)]


MAX_CHAT_KNOWLEDGE = 20
KnowledgeIds = Annotated[
    list[uuid.UUID],
    Field(
        max_length=MAX_CHAT_KNOWLEDGE,
        description="Knowledge bases of the caller's that the assistant searches in this chat.",
    ),
]


class ChatCreate(RequestModel):
    title: Title | None = None
    knowledge_ids: KnowledgeIds | None = None
    model_id: ModelId | None = Field(
        default=None, description="A catalog id such as `offline:parley`; default: the default."
    )
    system_prompt: SystemPrompt | None = None


class ChatUpdate(RequestModel):
    title: Title | None = None
    knowledge_ids: KnowledgeIds | None = None
    model_id: ModelId | None = None
    system_prompt: SystemPrompt | None = None
    archived: bool | None = None
    current_leaf_id: uuid.UUID | None = Field(
        default=None,
        description=(
            "Switch branches: any message of the chat; the current leaf becomes the newest leaf "
            "under it (an extension to the contract's fields)."
        ),
    )


class ChatPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str | None
    model_id: str | None
    system_prompt: str | None
    archived: bool
    knowledge_ids: list[uuid.UUID]
    current_leaf_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ReasoningPart(BaseModel):
    type: Literal["reasoning"] = "reasoning"
    text: str


class ToolCallPart(BaseModel):
    type: Literal["tool_call"] = "tool_call"
    tool_call_id: str
    tool_name: str
    input: Any


class ToolResultPart(BaseModel):
    type: Literal["tool_result"] = "tool_result"
    tool_call_id: str
    tool_name: str
    output: Any
    is_error: bool = False


class FilePart(BaseModel):
    type: Literal["file"] = "file"
    file_id: str
    media_type: str
    filename: str | None = None


class SourcePart(BaseModel):
    """A passage of the user's files that the reply drew on (a `source-document` chunk)."""

    type: Literal["source"] = "source"
    source_id: str = Field(description="The chunk's id.")
    media_type: str
    title: str
    filename: str | None = None
    file_id: str | None = None
    page: int | None = None


MessagePart = Annotated[
    TextPart | ReasoningPart | ToolCallPart | ToolResultPart | FilePart | SourcePart,
    Field(discriminator="type"),
]


class UserTextPart(RequestModel):
    """Text the user sends."""

    type: Literal["text"]
    text: MessageText


class UserFilePart(RequestModel):
    """One of the user's own ready files, attached to the message: the assistant can search it."""

    type: Literal["file"]
    file_id: uuid.UUID


UserPart = Annotated[UserTextPart | UserFilePart, Field(discriminator="type")]
MAX_ATTACHED_FILES = 20


class MessageCreate(RequestModel):
    """A user message: `content` or `parts`, and where it goes in the tree."""

    content: MessageText | None = None
    parts: list[UserPart] | None = Field(default=None, min_length=1, max_length=100)
    parent_id: uuid.UUID | None = Field(
        default=None,
        description="Default: the chat's current leaf. An earlier message's id starts a branch.",
    )
    model_id: ModelId | None = None

    @model_validator(mode="after")
    def _content_or_parts(self) -> MessageCreate:
        if (self.content is None) == (self.parts is None):
            raise ValueError("give exactly one of `content` and `parts`")
        parts = self.parts or []
        if sum(isinstance(part, UserFilePart) for part in parts) > MAX_ATTACHED_FILES:
            raise ValueError(f"at most {MAX_ATTACHED_FILES} files per message")
        return self

    def text_parts(self) -> list[dict[str, Any]]:
        """The message's parts in stored form (a file part holds only its id here: the turn
        service checks the file and fills in its name and type)."""
        if self.content is not None:
            return [{"type": "text", "text": self.content}]
        return [
            {"type": "text", "text": part.text}
            if isinstance(part, UserTextPart)
            else {"type": "file", "file_id": str(part.file_id)}
            for part in self.parts or []
        ]


class RegenerateRequest(RequestModel):
    model_id: ModelId | None = None


class Usage(BaseModel):
    input_tokens: int
    output_tokens: int
    cost_usd: float
    time_to_first_token_ms: int | None = None
    duration_ms: int | None = None


class MessageError(BaseModel):
    code: str
    message: str


class MessagePublic(BaseModel):
    id: uuid.UUID
    chat_id: uuid.UUID
    parent_id: uuid.UUID | None
    role: Literal["user", "assistant", "system"]
    parts: list[MessagePart]
    status: Literal["complete", "streaming", "error", "cancelled", "interrupted"]
    model_id: str | None
    usage: Usage | None
    error: MessageError | None
    sibling_ids: list[uuid.UUID] = Field(
        description="Every message with the same parent, this one included, oldest first."
    )
    created_at: datetime


class TurnResult(BaseModel):
    """The answer of a send or regenerate with `?stream=false`."""

    user_message: MessagePublic
    assistant_message: MessagePublic
