"""A turn's use cases, orchestrated across domains: chats (the tree), llm (the model), tools
(tasks), usage (the budget), and the runner that runs the turn and streams its reply.

Sending checks the chat, the rate limit and the idempotency key (`turns/idempotency.py`) and plans
the turn (the branch as the model's context), then in one short transaction records the key,
commits the user message and the `streaming` assistant message, holds the turn's estimated cost
against the user's budget and claims the chat's single reply slot, then starts the turn running,
which holds no request session (and settles the hold with its final save). Every read comes
before the first write: on SQLite that write takes the database's one write lock until the commit.
Regenerating does the same without a new user message. Each answers with the reply's stream, or
(not streamed) both messages once the reply is saved. Stopping and resuming act on the chat's
reply in progress.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from parley import engines
from parley.accounts.authentication import Owner
from parley.chats.models import Chat, Message
from parley.chats.schemas import TurnResult
from parley.chats.service import MESSAGE_NOT_FOUND, ChatService
from parley.core.db import new_id
from parley.core.errors import Conflict, NotFound, ValidationFailed
from parley.core.pagination import CursorCodec
from parley.core.ratelimit import RateLimiter
from parley.core.telemetry import traced
from parley.files import repository as files_repository
from parley.files.models import READY
from parley.llm.embeddings import Embeddings
from parley.llm.schemas import CatalogEntry
from parley.llm.service import LLMService
from parley.settings import Settings
from parley.tools.registry import ToolRegistry
from parley.turns.idempotency import (
    ReplyInProgress,
    StartedTurn,
    TurnKeys,
    request_fingerprint,
)
from parley.turns.planner import TurnPlanner
from parley.turns.runner import TurnRunner
from parley.turns.sse import numbered
from parley.usage.meter import UsageMeter
from parley.usage.periods import BudgetHolder
from parley.usage.pricing import estimate_cost, tokens_for_chars

# A reply's events as they come, in batches of (event id, JSON chunk).
ReplyEvents = AsyncIterator[list[tuple[int, str]]]
# What a send or a regenerate answers: the reply's events, or (not streamed) both messages.
Answer = ReplyEvents | TurnResult


class NoActiveStream(Conflict):
    """Stop was asked of a chat with no reply in progress."""

    code = "no_active_stream"
    default_message = "This chat has no reply in progress."


class TurnService:
    """Sends, regenerates, stops and resumes replies, over one request session."""

    def __init__(
        self,
        session: AsyncSession,
        *,
        settings: Settings,
        runner: TurnRunner,
        llm: LLMService,
        registry: ToolRegistry,
        limiter: RateLimiter,
        codec: CursorCodec,
        meter: UsageMeter,
        embeddings: Embeddings | None = None,
    ) -> None:
        self.session = session
        self.meter = meter
        self.settings = settings
        self.runner = runner
        self.llm = llm
        self.registry = registry
        self.limiter = limiter
        self.codec = codec
        self.chats = ChatService(session, codec)
        self.keys = TurnKeys(session)
        self.planner = TurnPlanner(
            self.chats,
            llm,
            registry,
            settings,
            sessionmaker=runner.database.sessionmaker,
            codec=codec,
            embeddings=embeddings,
        )

    # -- starting a turn --------------------------------------------------------------------

    async def _attach_files(
        self, user_id: uuid.UUID, parts: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The parts with each file part completed from the user's file (name and type).

        Raises:
            NotFound: a file is not one of the user's.
            Conflict: a file is not ready (still being ingested, or failed).
        """
        wanted = [uuid.UUID(part["file_id"]) for part in parts if part.get("type") == "file"]
        if not wanted:
            return parts
        found = {
            stored.id: stored
            for stored in await files_repository.get_files(self.session, user_id, wanted)
        }
        completed = []
        for part in parts:
            if part.get("type") != "file":
                completed.append(part)
                continue
            stored = found.get(uuid.UUID(part["file_id"]))
            if stored is None:
                raise NotFound("No such file.")
            if stored.status != READY:
                raise Conflict(
                    f'The file "{stored.filename}" is {stored.status}: attach it once it is ready.'
                )
            completed.append(
                {
                    "type": "file",
                    "file_id": str(stored.id),
                    "media_type": stored.media_type,
                    "filename": stored.filename,
                }
            )
        return completed

    async def _check_rate(self, user_id: uuid.UUID) -> None:
        await self.limiter.hit(
            f"chat:user:{user_id}",
            self.settings.rate_limit_chat_per_minute,
            message="Too many messages; wait a moment.",
        )

    async def _start_reply(
        self,
        user: BudgetHolder,
        chat: Chat,
        user_message: Message,
        entry: CatalogEntry,
        *,
        new_user_message: bool,
        assistant_id: uuid.UUID,
        first_exchange: bool,
        api_key_id: uuid.UUID | None,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> StartedTurn:
        """Plan the reply to `user_message`, then in one transaction record the idempotency key,
        add the user message (if `new_user_message`) and the `streaming` assistant message, hold
        the turn's estimated cost against the user's budget and claim the chat; commit, and start
        the running turn.

        Returns:
            The turn started, or that of a concurrent request that took the same key first.

        Raises:
            BudgetExceeded: the user's monthly budget is spent (nothing is kept).
            ReplyInProgress: the chat already has a reply in progress (nothing is kept).
        """
        user_id = user.id
        plan = await self.planner.plan(
            user,
            chat,
            user_message=user_message,
            new_user_message=new_user_message,
            assistant_id=assistant_id,
            entry=entry,
            first_exchange=first_exchange,
            api_key_id=api_key_id,
        )
        prompt_tokens = tokens_for_chars(plan.prompt_chars, round_up=False)
        estimate = estimate_cost(
            entry,
            input_tokens=prompt_tokens,
            output_tokens=self.settings.budget_reserve_output_tokens,
        )
        # The writes, back to back from here to the commit.
        turn = StartedTurn(user_id, chat.id, user_message.id, assistant_id)
        if not await self.keys.reserve(user_id, idempotency_key, fingerprint, turn):
            # A concurrent request took the key first: nothing of this one is kept, and the
            # answer is the winner's turn.
            await self.session.rollback()
            replayed = await self.keys.replay_after_race(user_id, idempotency_key, fingerprint)
            await self.session.commit()  # end the read transaction before the caller waits
            return replayed
        await self.chats.add_turn_messages(
            user_message,
            assistant_id,
            new_user_message=new_user_message,
            model_id=entry.id,
            prompt_tokens=prompt_tokens,
        )
        plan.reservation = await self.meter.reserve_in(
            self.session, user, estimate, message_id=assistant_id
        )
        if not await self.chats.claim_reply_slot(chat.id, assistant_id):
            await self.session.rollback()  # nothing of this turn is kept
            raise ReplyInProgress()
        await self.session.commit()
        await self.runner.start(plan)
        return turn

    @traced(name="turns.send")
    async def send(
        self,
        user: BudgetHolder,
        chat_id: uuid.UUID,
        *,
        parts: list[dict[str, Any]],
        parent_id: uuid.UUID | None,
        new_root: bool = False,
        model_id: str | None,
        idempotency_key: str | None,
        stream: bool = True,
        fingerprint_body: dict[str, Any],
        api_key_id: uuid.UUID | None = None,
    ) -> Answer:
        """Add a user message and start the reply; answer with its events, or (`stream` false)
        both messages once it is saved.

        Args:
            parent_id: the message it follows (default: the chat's current leaf).
            new_root: start a new root instead (an edit of the first message).
        """
        user_id = user.id
        chat = await self.chats.get(user, chat_id)
        fingerprint = request_fingerprint("send", chat_id, fingerprint_body)
        replayed = await self._replayed(user_id, idempotency_key, fingerprint, stream=stream)
        if replayed is not None:
            return replayed
        await self._check_rate(user_id)
        parent = None if new_root else (parent_id or chat.current_leaf_id)
        if parent is not None:
            parent_message = await self.chats.get_message(user.id, chat.id, parent)
            if parent_message is None:
                raise NotFound(MESSAGE_NOT_FOUND)
            if parent_message.role == "user":
                raise ValidationFailed.for_field(
                    "body.parent_id",
                    "A message follows an assistant message; to edit a message, send with its "
                    "parent's id.",
                )
        entry = await self.llm.resolve(model_id or chat.model_id)
        parts = await self._attach_files(user_id, parts)
        user_message = self.chats.new_user_message(user_id, chat.id, parent_id=parent, parts=parts)
        started = await self._start_reply(
            user,
            chat,
            user_message,
            entry,
            new_user_message=True,
            assistant_id=new_id(),
            first_exchange=parent is None,
            api_key_id=api_key_id,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )
        return await self.answer(started, stream=stream)

    @traced(name="turns.regenerate")
    async def regenerate(
        self,
        user: BudgetHolder,
        chat_id: uuid.UUID,
        message_id: uuid.UUID,
        *,
        model_id: str | None,
        idempotency_key: str | None,
        stream: bool = True,
        fingerprint_body: dict[str, Any],
        api_key_id: uuid.UUID | None = None,
    ) -> Answer:
        """A new reply: a sibling of an assistant message, or a new child of a user message;
        answered like `send`."""
        user_id = user.id
        chat = await self.chats.get(user, chat_id)
        fingerprint = request_fingerprint(f"regenerate:{message_id}", chat_id, fingerprint_body)
        replayed = await self._replayed(user_id, idempotency_key, fingerprint, stream=stream)
        if replayed is not None:
            return replayed
        await self._check_rate(user_id)
        target = await self.chats.get_message(user.id, chat.id, message_id)
        if target is None:
            raise NotFound(MESSAGE_NOT_FOUND)
        if target.role == "user":
            user_message = target
        elif target.role == "assistant" and target.parent_id is not None:
            parent = await self.chats.get_message(user.id, chat.id, target.parent_id)
            if parent is None or parent.role != "user":
                raise ValidationFailed.for_field(
                    "path.message_id", "This message does not answer a user message."
                )
            user_message = parent
        else:
            raise ValidationFailed.for_field(
                "path.message_id", "Only user and assistant messages can be regenerated."
            )
        default_model = target.model_id if target.role == "assistant" else None
        entry = await self.llm.resolve(model_id or default_model or chat.model_id)
        started = await self._start_reply(
            user,
            chat,
            user_message,
            entry,
            new_user_message=False,
            assistant_id=new_id(),
            first_exchange=False,
            api_key_id=api_key_id,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )
        return await self.answer(started, stream=stream)

    async def _replayed(
        self, user_id: uuid.UUID, key: str | None, fingerprint: str, *, stream: bool
    ) -> Answer | None:
        """The answer to a retry of a turn its `Idempotency-Key` already started, if it is one."""
        replay = await self.keys.replay(user_id, key, fingerprint)
        if replay is None:
            return None
        await self.session.commit()  # end the read transaction: the caller may now wait
        return await self.answer(replay, stream=stream)

    async def answer(self, started: StartedTurn, *, stream: bool) -> Answer:
        """The answer to a turn started (or replayed): the reply's events from its event log, or
        from the stored reply once the log is gone; or (not streamed) both messages, once the
        reply is saved."""
        if not stream:
            await self.runner.wait_until_finished(started.assistant_message_id)
            return await self.result(started)
        if await self.runner.can_follow(started.assistant_message_id):
            return self.runner.follow_batches(started.assistant_message_id)
        # A retried request whose reply is no longer in any event log: send the stored reply.
        result = await self.result(started)
        chunks = engines.stored_reply_chunks()(
            result.assistant_message, str(started.user_message_id)
        )
        return numbered(chunks)

    # -- a turn in progress -----------------------------------------------------------------

    async def follow(
        self, user: BudgetHolder, chat_id: uuid.UUID, after: int = 0
    ) -> ReplyEvents | None:
        """The events of the chat's reply in progress after `after`, to its end; None if no reply
        is in progress (or its event log is gone)."""
        message_id = await self.active_reply(user, chat_id)
        if message_id is None or not await self.runner.can_follow(message_id):
            return None
        return self.runner.follow_batches(message_id, after)

    async def active_reply(self, user: Owner, chat_id: uuid.UUID) -> uuid.UUID | None:
        """The chat's reply in progress, if any (404 for another user's chat)."""
        chat = await self.chats.get(user, chat_id)
        return chat.active_message_id

    @traced(name="turns.stop")
    async def stop(self, user: Owner, chat_id: uuid.UUID) -> None:
        """Stop the chat's reply in progress; the partial reply is kept as `cancelled`."""
        message_id = await self.active_reply(user, chat_id)
        if message_id is None:
            raise NoActiveStream()
        await self.session.commit()  # end the read transaction before waiting
        await self.runner.stop(message_id)

    async def result(self, started: StartedTurn) -> TurnResult:
        """The turn's user and assistant messages as they are stored now."""
        user_message, assistant_message = await self.chats.turn_messages(
            started.user_id,
            started.chat_id,
            (started.user_message_id, started.assistant_message_id),
        )
        return TurnResult(user_message=user_message, assistant_message=assistant_message)
