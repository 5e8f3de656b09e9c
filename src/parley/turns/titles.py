"""Real chat titles: after a chat's first reply, the `chat.title` job asks the chat's model for a
short title and gives it to the chat, unless the user has named the chat meanwhile.

The transaction that saves a chat's first complete reply gives the chat a title made of the first
message's words (`parley.turns.running.title_from`) and, in the same statement, marks it
(`chats.title_reply_id`). The `chat.title_sweep` schedule, every `TITLE_SWEEP_SECONDS`, queues one
`chat.title` job for each marked chat and clears the marks, in one transaction: a turn pays for
no job row of its own (an INSERT per first reply cost measurable CPU under concurrent turns on
SQLite), and the titles come a few seconds after the reply. The job's title replaces the words
title. The job runs the model through the same step interface as a turn, holds and settles
its cost against the user's budget like a turn (a user with no budget left keeps the words
title), and records the usage as the chat's. The offline model answers with a title made of the
first message's words (`parley.llm.titles.words_title`).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update

from parley import engines
from parley.accounts.models import User
from parley.chats import replies
from parley.chats.events import CHAT_UPDATED, add_chat_event
from parley.chats.models import Chat, Message
from parley.core.db import Database
from parley.core.errors import BudgetExceeded, ValidationFailed
from parley.jobs.kinds import JobKind, JobRun
from parley.jobs.queue import enqueue_many
from parley.llm.cache import CatalogCache
from parley.llm.providers import ModelProviders
from parley.llm.schemas import CatalogEntry
from parley.llm.selection import ChosenModel, choose_model
from parley.llm.service import LLMService
from parley.llm.steps import StepFailed, StepFinished, StepRequest, StepUsage
from parley.llm.titles import TITLE_INSTRUCTIONS, clean_title, title_prompt
from parley.settings import Settings
from parley.usage.meter import UsageMeter
from parley.usage.pricing import cost_usd, estimate_cost, tokens_for_chars
from parley.usage.reservations import UsageEntry

if TYPE_CHECKING:
    from pydantic_ai.messages import ModelResponse

logger = logging.getLogger(__name__)

TITLE_JOB = JobKind(
    "chat.title",
    queue="default",
    priority=10,
    max_attempts=3,
    timeout_seconds=120,
    backoff_seconds=10,
)
TITLE_OUTPUT_TOKENS = 32  # what the hold reserves for the answer
# Queues the marked chats' title jobs (one attempt: the next slot picks up what this one left).
TITLE_SWEEP_JOB = JobKind("chat.title_sweep", priority=10, max_attempts=1, timeout_seconds=60)
TITLE_SWEEP_SECONDS = 3.0
TITLE_SWEEP_BATCH = 200


async def queue_titles(database: Database) -> int:
    """Queue a `chat.title` job for each chat marked after its first reply (at most
    `TITLE_SWEEP_BATCH` a call), and clear their marks, in one transaction; how many."""
    async with database.sessionmaker() as session:
        marked = (
            await session.execute(
                select(Chat.id, Chat.user_id, Chat.title_reply_id)
                .where(Chat.title_reply_id.is_not(None))
                .limit(TITLE_SWEEP_BATCH)
            )
        ).all()
        if not marked:
            return 0
        reply_ids = [row.title_reply_id for row in marked]
        found = {
            row.id: row
            for row in await session.execute(
                select(Message.id, Message.parent_id, Message.model_id).where(
                    Message.id.in_(reply_ids)
                )
            )
        }
        jobs = []
        for chat in marked:
            reply = found.get(chat.title_reply_id)
            if reply is None or reply.parent_id is None or not reply.model_id:
                continue  # the branch was deleted meanwhile: the words title stays
            jobs.append(
                title_job_args(chat.id, chat.user_id, reply.parent_id, reply.id, reply.model_id)
            )
        await enqueue_many(session, TITLE_JOB, jobs)
        await session.execute(
            update(Chat)
            .where(Chat.id.in_([chat.id for chat in marked]))
            .values(title_reply_id=None)
            .execution_options(synchronize_session=False)
        )
        await session.commit()
    return len(jobs)


def title_job_args(
    chat_id: uuid.UUID,
    user_id: uuid.UUID,
    user_message_id: uuid.UUID,
    reply_id: uuid.UUID,
    model_id: str,
) -> dict[str, Any]:
    """The `chat.title` job's arguments: the chat, its owner, the exchange and its model."""
    return {
        "chat_id": str(chat_id),
        "user_id": str(user_id),
        "user_message_id": str(user_message_id),
        "reply_id": str(reply_id),
        "model_id": model_id,
    }


@dataclass(frozen=True, slots=True)
class _Answer:
    text: str
    input_tokens: int
    output_tokens: int
    model_name: str | None
    failure: StepFailed | None


def _response_text(response: ModelResponse) -> str:
    return "".join(
        getattr(part, "content", "") for part in response.parts if part.part_kind == "text"
    )


@dataclass(frozen=True, slots=True)
class ChatTitler:
    """The `chat.title` job's handler, over the app's services."""

    database: Database
    providers: ModelProviders
    catalog: CatalogCache
    settings: Settings
    meter: UsageMeter

    async def __call__(self, job: JobRun) -> None:
        """Name the chat `job.args` names after its first exchange."""
        args = job.args
        chat_id, user_id = uuid.UUID(args["chat_id"]), uuid.UUID(args["user_id"])
        async with self.database.sessionmaker() as session:
            exchange = await replies.exchange_text(
                session,
                user_id,
                chat_id,
                uuid.UUID(args["user_message_id"]),
                uuid.UUID(args["reply_id"]),
            )
            user = await session.get(User, user_id)
            if exchange is None or user is None or not user.is_active:
                return  # nothing left to name, or nobody to bill
            llm = LLMService(session, self.providers, self.catalog)
            entry = await self._entry(llm, str(args.get("model_id") or ""))
            chosen = await choose_model(llm, entry, fallback_id=self.settings.fallback_model)
            session.expunge(user)
        prompt = title_prompt(*exchange)
        estimate = estimate_cost(
            entry,
            input_tokens=tokens_for_chars(len(prompt) + len(TITLE_INSTRUCTIONS)),
            output_tokens=TITLE_OUTPUT_TOKENS,
        )
        try:
            reservation = await self.meter.reserve(user, estimate)
        except BudgetExceeded:
            logger.info("chat %s keeps its title: its owner's budget is spent", chat_id)
            return
        answer = await self._ask(chosen, prompt)
        cost = self._cost(entry, chosen, answer)
        await self.meter.settle_now(
            reservation,
            UsageEntry(
                user_id=user_id,
                api_key_id=None,
                source="chat",
                model_id=entry.id,
                input_tokens=answer.input_tokens,
                output_tokens=answer.output_tokens,
                cost_usd=cost,
                latency_ms=None,
                status="error" if answer.failure else "complete",
                chat_id=chat_id,
            ),
        )
        if answer.failure is not None:
            raise answer.failure.cause  # the job is retried with backoff
        title = clean_title(answer.text)
        if title is None:
            logger.info("the model gave chat %s no usable title", chat_id)
            return
        async with self.database.sessionmaker() as session:
            if await replies.set_generated_title(session, user_id, chat_id, title):
                chat = await session.get(Chat, chat_id)
                if chat is not None:
                    await add_chat_event(session, CHAT_UPDATED, chat)
            await session.commit()

    async def _entry(self, llm: LLMService, model_id: str) -> CatalogEntry:
        """The reply's model, or the default if it has left the catalog."""
        try:
            return await llm.resolve(model_id or None)
        except ValidationFailed:
            return await llm.default_entry()

    async def _ask(self, chosen: ChosenModel, prompt: str) -> _Answer:
        engines.ensure_imported("pydantic_ai.messages")
        from pydantic_ai.messages import ModelRequest, UserPromptPart

        messages = [ModelRequest(parts=[UserPromptPart(content=prompt)])]
        usage = (0, 0)
        async for event in chosen.step.stream(messages, StepRequest(TITLE_INSTRUCTIONS, ())):
            if isinstance(event, StepUsage):
                usage = (event.input_tokens, event.output_tokens)
            elif isinstance(event, StepFinished):
                response = event.response
                input_tokens = response.usage.input_tokens or usage[0]
                output_tokens = response.usage.output_tokens or usage[1]
                return _Answer(
                    _response_text(response),
                    input_tokens,
                    output_tokens,
                    response.model_name,
                    None,
                )
            elif isinstance(event, StepFailed):
                return _Answer("", usage[0], usage[1], None, event)
        raise RuntimeError("the model step ended without a result")

    @staticmethod
    def _cost(entry: CatalogEntry, chosen: ChosenModel, answer: _Answer) -> Decimal:
        prices: Any = entry
        fallback = chosen.fallback
        if fallback is not None and answer.model_name == fallback.model_name:
            prices = fallback
        return cost_usd(
            answer.input_tokens,
            answer.output_tokens,
            input_price_per_mtok=prices.input_price_per_mtok,
            output_price_per_mtok=prices.output_price_per_mtok,
        )
