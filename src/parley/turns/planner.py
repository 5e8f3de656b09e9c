"""Planning a turn: the branch it answers, read and trimmed to the model's window as its context;
the model step that answers (`parley.llm.selection`); the tools, bound to the calling user; the
prices. Reads only: the turn service writes the turn's rows once the plan is made.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from parley import engines
from parley.accounts.authentication import Owner
from parley.chats.models import Chat, Message
from parley.chats.service import ChatService
from parley.core.pagination import CursorCodec
from parley.llm.embeddings import Embeddings
from parley.llm.schemas import CatalogEntry
from parley.llm.selection import choose_model
from parley.llm.service import LLMService
from parley.settings import Settings
from parley.tools.events import ToolAudit
from parley.tools.registry import KnowledgeScope, ToolContext, ToolRegistry, bind_tools
from parley.turns.plan import TurnPlan

# The most messages of a branch read to build a turn's context (trimmed further to the window), so
# that a turn in a very long chat costs no more than one in a long one.
MAX_CONTEXT_MESSAGES = 1000


def knowledge_scope(chat: Chat, path: list[Message]) -> KnowledgeScope:
    """What the turn's knowledge search covers: the chat's knowledge bases and the files attached
    to the user messages of the branch."""
    files = dict.fromkeys(
        uuid.UUID(part["file_id"])
        for message in path
        if message.role == "user"
        for part in message.parts
        if part.get("type") == "file" and part.get("file_id")
    )
    bases = dict.fromkeys(uuid.UUID(str(knowledge_id)) for knowledge_id in chat.knowledge_ids or [])
    return KnowledgeScope(knowledge_ids=tuple(bases), file_ids=tuple(files))


@dataclass(frozen=True, slots=True)
class TurnPlanner:
    """Makes the plans of turns, over the turn service's chats and model catalog.

    Attributes:
        sessionmaker: opens the tools' own sessions.
    """

    chats: ChatService
    llm: LLMService
    registry: ToolRegistry
    settings: Settings
    sessionmaker: async_sessionmaker[AsyncSession]
    codec: CursorCodec
    embeddings: Embeddings | None = None

    async def plan(
        self,
        user: Owner,
        chat: Chat,
        *,
        user_message: Message,
        new_user_message: bool,
        assistant_id: uuid.UUID,
        entry: CatalogEntry,
        first_exchange: bool,
        api_key_id: uuid.UUID | None,
    ) -> TurnPlan:
        """The plan of the reply `assistant_id` to `user_message` (not written yet if
        `new_user_message`), in `chat`, by `entry`'s model."""
        if new_user_message:  # not written yet: the branch up to its parent, then it
            earlier: list[Message] = []
            if user_message.parent_id is not None:
                earlier = await self.chats.branch_to(
                    user.id,
                    chat.id,
                    user_message.parent_id,
                    limit=MAX_CONTEXT_MESSAGES - 1,
                )
            path = [*earlier, user_message]
        else:
            path = await self.chats.branch_to(
                user.id, chat.id, user_message.id, limit=MAX_CONTEXT_MESSAGES
            )
        context = engines.turn_context()(
            path, context_window=entry.context_window, system_prompt=chat.system_prompt
        )
        chosen = await choose_model(self.llm, entry, fallback_id=self.settings.fallback_model)
        tool_context = ToolContext(
            user=user,
            sessionmaker=self.sessionmaker,
            cursor_codec=self.codec,
            embeddings=self.embeddings,
            knowledge=knowledge_scope(chat, path),
            audit=ToolAudit(surface="assistant", chat_id=chat.id, message_id=assistant_id),
        )
        return TurnPlan(
            chat_id=chat.id,
            user_id=user.id,
            user_message_id=user_message.id,
            assistant_message_id=assistant_id,
            model_id=entry.id,
            step=chosen.step,
            input_price_per_mtok=entry.input_price_per_mtok,
            output_price_per_mtok=entry.output_price_per_mtok,
            fallback=chosen.fallback,
            instructions=chat.system_prompt,
            history=context.history,
            prompt=context.prompt,
            tools=bind_tools(self.registry, tool_context) if entry.supports_tools else [],
            max_steps=self.settings.agent_max_steps,
            title_from=context.prompt if first_exchange and chat.title is None else None,
            prompt_chars=context.chars,
            api_key_id=api_key_id,
        )
