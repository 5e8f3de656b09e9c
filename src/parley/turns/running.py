"""One reply being generated: the agent loop, its stream events, and its persistence.

A `RunningTurn` runs in a task of its own, not tied to any HTTP connection. It runs the reply's
agent loop (`parley.turns.loop`: the model streams, tools run as the calling user, results go
back to the model, up to a step limit), which sends AI SDK UI message stream chunks; it appends
every chunk to the reply's event log for any number of readers, saves the growing message at a
bounded rate, and at the end sends the usage and the ending (`finish`, `error` or `abort`) and
stores the final parts, status, usage and cost in one commit before the stream's last line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from pydantic_ai.ui.vercel_ai.response_types import (
    AbortChunk,
    BaseChunk,
    DoneChunk,
    ErrorChunk,
    FinishChunk,
    MessageMetadataChunk,
    StartChunk,
)

from parley.chats import replies
from parley.chats.events import add_message_completed
from parley.core.db import Database, utcnow
from parley.core.telemetry import get_tracer
from parley.llm.failures import UNKNOWN_FAILURE, TurnFailure
from parley.turns.event_log import EventLogs
from parley.turns.loop import TurnLoop
from parley.turns.parts import PartsAccumulator
from parley.turns.plan import TurnPlan, answered_by_fallback, cost_of
from parley.turns.sse import SDK_VERSION
from parley.usage.meter import UsageMeter
from parley.usage.pricing import output_tokens_of_parts, tokens_for_chars
from parley.usage.reservations import UsageEntry

logger = logging.getLogger(__name__)


class Tokens(NamedTuple):
    """A reply's token counts."""

    input_tokens: int
    output_tokens: int


@dataclass
class TurnOutcome:
    """How a reply ended."""

    status: str
    parts: list[dict[str, Any]]
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    failure: TurnFailure | None
    time_to_first_token_ms: int | None
    duration_ms: int


def title_from(text: str, limit: int = 60) -> str:
    """A short chat title from the first message: its first line, cut at a word boundary."""
    first = next((line for line in text.splitlines() if line.strip()), "")
    line = " ".join(first.split())
    if len(line) <= limit:
        return line or "New chat"
    cut = line[:limit].rsplit(" ", 1)[0] or line[:limit]
    return cut.rstrip(",.;:-") + "…"


@dataclass
class RunningTurn:
    """A reply in progress. `stop()` cancels it; `done` is set once it is saved and closed."""

    plan: TurnPlan
    database: Database
    logs: EventLogs
    save_interval: float
    heartbeat_interval: float
    usage_meter: UsageMeter | None = None
    task: asyncio.Task[None] | None = None
    done: asyncio.Event = field(default_factory=asyncio.Event)
    _loop: TurnLoop | None = None
    _stop_requested: bool = False
    _interrupted: bool = False
    _accumulator: PartsAccumulator = field(default_factory=PartsAccumulator)
    _version: int = 0
    _started: float = 0.0
    _first_token_ms: int | None = None
    _ended: bool = False  # saved, and its ending chunks are being sent

    @property
    def key(self) -> str:
        """The event log's key: the assistant message id."""
        return str(self.plan.assistant_message_id)

    def stop(self, *, interrupted: bool = False) -> None:
        """Stop the reply: the upstream request is closed and the partial reply kept."""
        self._stop_requested = True
        self._interrupted = self._interrupted or interrupted
        if self._loop is not None:
            self._loop.stop()

    async def run(self) -> None:
        """Run the turn: stream and save the reply; never raises (failures end up on the reply)."""
        with get_tracer().start_as_current_span(
            "turns.run",
            attributes={
                "parley.chat_id": str(self.plan.chat_id),
                "parley.message_id": self.key,
                "parley.model_id": self.plan.model_id,
            },
        ):
            try:
                await self._run()
            except Exception:
                logger.exception("a turn failed", extra={"message_id": self.key})
                await self._finish_after_crash()
            finally:
                self.done.set()

    async def _emit(self, chunk: BaseChunk) -> None:
        await self.logs.append(self.key, chunk.encode(SDK_VERSION))

    def _usage_metadata(self, tokens: Tokens) -> MessageMetadataChunk:
        return MessageMetadataChunk(
            message_metadata={
                "model_id": self.plan.model_id,
                "usage": {
                    "input_tokens": tokens.input_tokens,
                    "output_tokens": tokens.output_tokens,
                    "cost_usd": float(
                        cost_of(self.plan, tokens.input_tokens, tokens.output_tokens)
                    ),
                },
            }
        )

    def _estimated(self, input_tokens: int = 0, output_tokens: int = 0) -> Tokens:
        """The provider's counts, or estimates from what was sent and streamed where it reported
        none (a stopped or failed reply ends before the provider's final usage report)."""
        if input_tokens == 0:
            input_tokens = max(1, tokens_for_chars(self.plan.prompt_chars, round_up=False))
        if output_tokens == 0:
            output_tokens = output_tokens_of_parts(self._accumulator.parts)
        return Tokens(input_tokens, output_tokens)

    async def _send(self, chunk: BaseChunk) -> None:
        """Fold a chunk into the reply's parts, then append it to the event log."""
        self._accumulator.add(chunk)
        self._version += 1
        if self._first_token_ms is None and self._accumulator.first_token:
            self._first_token_ms = int((time.monotonic() - self._started) * 1000)
        await self._emit(chunk)

    async def _run(self) -> None:
        plan = self.plan
        self._started = time.monotonic()
        loop = TurnLoop(
            step=plan.step,
            instructions=plan.instructions,
            history=plan.history,
            prompt=plan.prompt,
            tools=plan.tools,
            max_steps=plan.max_steps,
            prompt_chars=plan.prompt_chars,
        )
        self._loop = loop
        if self._stop_requested:
            loop.stop()
        saver = asyncio.create_task(self._save_periodically())
        try:
            await self._send(
                StartChunk(
                    message_id=self.key,
                    message_metadata={
                        "chat_id": str(plan.chat_id),
                        "user_message_id": str(plan.user_message_id),
                        "model_id": plan.model_id,
                    },
                )
            )
            await loop.run(self._send)
        finally:
            saver.cancel()
            # A save in flight must end before the final save, or it could land after it.
            with contextlib.suppress(asyncio.CancelledError):
                await saver
        # Priced as the model that answered: the fallback's prices when it did.
        self.plan = plan = answered_by_fallback(plan, loop.model_name)
        if loop.status == "error" and not (loop.input_tokens or loop.output_tokens):
            # The provider refused or failed before producing anything: nothing is billed.
            tokens = Tokens(0, 0)
        else:
            tokens = self._estimated(loop.input_tokens, loop.output_tokens)
        await self._emit(self._usage_metadata(tokens))
        status: str = loop.status
        failure: TurnFailure | None = None
        ending: list[BaseChunk]
        if loop.status == "complete":
            ending = [FinishChunk(finish_reason=loop.finish_reason)]
        elif loop.status == "error":
            failure = loop.failure or UNKNOWN_FAILURE
            ending = [ErrorChunk(error_text=failure.message), FinishChunk(finish_reason="error")]
        else:
            status = "interrupted" if self._interrupted else "cancelled"
            ending = [AbortChunk(reason="The reply was stopped.")]
        for chunk in ending:
            self._accumulator.add(chunk)
        outcome = TurnOutcome(
            status=status,
            parts=self._accumulator.snapshot(),
            input_tokens=tokens.input_tokens,
            output_tokens=tokens.output_tokens,
            cost_usd=cost_of(plan, tokens.input_tokens, tokens.output_tokens),
            failure=failure,
            time_to_first_token_ms=self._first_token_ms,
            duration_ms=int((time.monotonic() - self._started) * 1000),
        )
        # Saved before the ending is sent: a reader told `finish` can read the reply as saved,
        # and a save that fails ends the stream with an error instead (`_finish_after_crash`).
        await self._save_final(outcome)
        self._ended = True
        for chunk in ending:
            await self._emit(chunk)
        await self._emit(DoneChunk())
        await self.logs.close(self.key)

    async def _save_periodically(self) -> None:
        """Save the growing reply when it changed (at most every `save_interval`), and touch the
        row every `heartbeat_interval` so that a live reply is never taken for a dead one."""
        saved_version = 0
        last_write = time.monotonic()
        while True:
            await asyncio.sleep(self.save_interval)
            stale = time.monotonic() - last_write >= self.heartbeat_interval
            if self._version == saved_version and not stale:
                continue
            version = self._version
            parts = self._accumulator.snapshot()
            # The tokens so far, for the bill of a reply whose worker dies (the sweep's).
            tokens = (
                self._estimated(self._loop.input_tokens, self._loop.output_tokens)
                if self._loop is not None
                else self._estimated()
            )
            try:
                async with self.database.sessionmaker() as session:
                    await replies.save_progress(
                        session,
                        self.plan.assistant_message_id,
                        replies.ReplyProgress(parts, self._accumulator.text(), *tokens),
                    )
                    await session.commit()
            except Exception:
                logger.warning("could not save a reply in progress", exc_info=True)
                continue
            saved_version = version
            last_write = time.monotonic()

    async def _save_final(self, outcome: TurnOutcome) -> None:
        """The final parts, status, usage and cost, and the chat freed for its next reply, in one
        commit; then, only if this save ended the reply (so that a reply a sweep or a stop
        elsewhere ended first is billed once), the usage is settled (the hold released, the
        cost recorded) in the meter's batch, shared with the turns and `/v1` calls that end
        meanwhile, and committed before the turn ends (`UsageMeter.settle_now`)."""
        plan = self.plan
        now = utcnow()
        ending = replies.ReplyEnding(
            parts=outcome.parts,
            search_text=self._accumulator.text(),
            status=outcome.status,
            model_id=plan.model_id,
            error_code=outcome.failure.code if outcome.failure else None,
            error_message=outcome.failure.message if outcome.failure else None,
            time_to_first_token_ms=outcome.time_to_first_token_ms,
            duration_ms=outcome.duration_ms,
            updated_at=now,
        )
        usage = replies.ReplyUsage(outcome.input_tokens, outcome.output_tokens, outcome.cost_usd)
        async with self.database.sessionmaker() as session:
            # First the reply's row, then the chat's: the order in which a sweep ends replies,
            # so that neither deadlocks the other on PostgreSQL (the budget's rows are the
            # meter's batch's, after this commit).
            ended = await replies.end_reply(session, plan.assistant_message_id, ending, usage)
            await replies.free_slot(
                session,
                plan.chat_id,
                plan.assistant_message_id,
                at=now,
                title=title_from(plan.title_from) if plan.title_from else None,
                # The chat's first reply, complete: a real title from its model comes next,
                # marked in the same statement (`parley.turns.titles`).
                title_reply=(
                    plan.assistant_message_id if ended and outcome.status == "complete" else None
                ),
            )
            if ended:
                await add_message_completed(
                    session,
                    user_id=plan.user_id,
                    chat_id=plan.chat_id,
                    message_id=plan.assistant_message_id,
                    parent_id=plan.user_message_id,
                    status=outcome.status,
                    model_id=plan.model_id,
                    error_code=outcome.failure.code if outcome.failure else None,
                )
            await session.commit()
        # Billed only if this save ended it: one ended elsewhere first was billed there.
        if ended and self.usage_meter is not None:
            await self.usage_meter.settle_now(plan.reservation, self._usage_entry(outcome))

    def _usage_entry(self, outcome: TurnOutcome) -> UsageEntry:
        plan = self.plan
        return UsageEntry(
            user_id=plan.user_id,
            api_key_id=plan.api_key_id,
            source="chat",
            model_id=plan.model_id,
            input_tokens=outcome.input_tokens,
            output_tokens=outcome.output_tokens,
            cost_usd=outcome.cost_usd,
            latency_ms=outcome.duration_ms,
            status=outcome.status,
            chat_id=plan.chat_id,
            message_id=plan.assistant_message_id,
        )

    async def _finish_after_crash(self) -> None:
        """Last resort after an unexpected failure of our own: keep what was streamed, as an
        error, and end the stream so readers are not left waiting."""
        failure = TurnFailure("internal_error", "The reply failed unexpectedly.")
        try:
            if self._ended:  # saved, and the ending was being sent: an error now would be false
                return
            await self._emit(ErrorChunk(error_text=failure.message))
            usage = self._estimated()
            await self._save_final(
                TurnOutcome(
                    status="error",
                    parts=self._accumulator.snapshot(),
                    input_tokens=usage.input_tokens,
                    output_tokens=usage.output_tokens,
                    cost_usd=cost_of(self.plan, usage.input_tokens, usage.output_tokens),
                    failure=failure,
                    time_to_first_token_ms=None,
                    duration_ms=0,
                )
            )
        except Exception:
            logger.exception("could not save a failed reply", extra={"message_id": self.key})
        finally:
            try:
                await self._emit(DoneChunk())
                await self.logs.close(self.key)
            except Exception:
                logger.exception("could not close a reply's event log")
