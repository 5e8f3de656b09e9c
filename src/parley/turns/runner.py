"""The replies in progress in this process, and how to stop, follow and sweep them.

Every worker keeps its own turns. Event logs are in memory, or in Redis when `REDIS_URL` is
set, so that a resume reaching any worker can follow a reply; a stop reaching another worker is
published on a Redis channel that every worker listens to. Replies left `streaming` by a process
that died (no heartbeat for `GENERATION_STALE_SECONDS`) are marked `interrupted` at start-up and
periodically after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING

from parley import engines
from parley.chats import replies
from parley.chats.events import add_message_completed
from parley.core.db import Database, utcnow
from parley.llm.service import catalog_prices
from parley.turns.event_log import EventLogs
from parley.usage.meter import UsageMeter
from parley.usage.pricing import ZERO, cost_usd, output_tokens_of_parts
from parley.usage.reservations import UsageEntry

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from parley.turns.plan import TurnPlan
    from parley.turns.running import RunningTurn

logger = logging.getLogger(__name__)
STOP_CHANNEL = "parley:stop"
# How long a request waits for a reply running on another worker to be saved.
FINISH_WAIT_SECONDS = 600.0


class TurnRunner:
    """Starts turns, stops them (here or on another worker), and follows their events."""

    def __init__(
        self,
        database: Database,
        logs: EventLogs,
        redis: Redis | None,
        *,
        save_interval: float,
        heartbeat_interval: float,
        stale_after: float,
        usage_meter: UsageMeter | None = None,
    ) -> None:
        self.database = database
        self.usage_meter = usage_meter
        self.logs = logs
        self.redis = redis
        self.save_interval = save_interval
        self.heartbeat_interval = heartbeat_interval
        self.stale_after = stale_after
        self._by_message: dict[uuid.UUID, RunningTurn] = {}
        self._background: set[asyncio.Task[None]] = set()

    async def start(self, plan: TurnPlan) -> RunningTurn:
        """Run a turn in a task of its own (the turn service has committed its rows).

        Its event log exists before this returns, so the caller can follow it at once.
        """
        await self.logs.open(str(plan.assistant_message_id))
        turn = engines.running_turn()(
            plan=plan,
            database=self.database,
            logs=self.logs,
            save_interval=self.save_interval,
            heartbeat_interval=self.heartbeat_interval,
            usage_meter=self.usage_meter,
        )
        message_id = plan.assistant_message_id
        self._by_message[message_id] = turn
        turn.task = asyncio.get_running_loop().create_task(turn.run(), name=f"turn-{message_id}")
        turn.task.add_done_callback(lambda _: self._by_message.pop(message_id, None))
        return turn

    async def stop(self, message_id: uuid.UUID, *, wait_seconds: float = 10.0) -> None:
        """Stop a reply wherever it runs, and wait (boundedly) until it is saved."""
        turn = self._by_message.get(message_id)
        if turn is not None:
            turn.stop()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(turn.done.wait(), wait_seconds)
            return
        if self.redis is not None:
            await self.redis.publish(STOP_CHANNEL, str(message_id))
            await self._wait_until_saved(message_id, wait_seconds)
            return
        # Not generated here and no Redis to reach the worker that is (or was): end the reply in
        # the database, so the chat is free again; a worker still generating it notices nothing
        # but can no longer hold the chat.
        await self._mark_ended(message_id, "cancelled")

    async def wait_until_finished(self, message_id: uuid.UUID) -> None:
        """Wait until a reply, here or on another worker, is saved in its final state."""
        turn = self._by_message.get(message_id)
        if turn is not None:
            await turn.done.wait()
            return
        async for _ in self.follow(message_id):
            pass
        await self._wait_until_saved(message_id, FINISH_WAIT_SECONDS)

    async def _wait_until_saved(self, message_id: uuid.UUID, wait_seconds: float) -> None:
        deadline = asyncio.get_running_loop().time() + wait_seconds
        while asyncio.get_running_loop().time() < deadline:
            async with self.database.sessionmaker() as session:
                status = await replies.status_of(session, message_id)
            if status != "streaming":
                return
            await asyncio.sleep(0.05)

    def follow(self, message_id: uuid.UUID, after: int = 0) -> AsyncIterator[tuple[int, str]]:
        """The reply's events after id `after`, then new ones until it ends."""
        return self.logs.follow(str(message_id), after)

    def follow_batches(
        self, message_id: uuid.UUID, after: int = 0
    ) -> AsyncIterator[list[tuple[int, str]]]:
        """`follow`, in batches of the events that were there together."""
        return self.logs.follow_batches(str(message_id), after)

    async def can_follow(self, message_id: uuid.UUID) -> bool:
        """Whether this process can serve the reply's events."""
        return await self.logs.exists(str(message_id))

    async def _mark_ended(self, message_id: uuid.UUID, status: str) -> None:
        await self._end_without_running_turn([message_id], status)

    async def _end_without_running_turn(self, message_ids: list[uuid.UUID], status: str) -> int:
        """End replies that no turn here is running, in one transaction: each one still
        `streaming` gets `status` and is billed for what it had produced by its last save (the
        tokens its turn had counted, else estimates from what was saved), its hold is
        released, and its chat is free again. The conditional update makes each reply end (and
        be billed) once, whoever gets there first: this, another worker's sweep, or its own
        final save. Returns how many it ended."""
        async with self.database.sessionmaker() as session:
            ended = await replies.end_streaming_replies(session, message_ids, status)
            if ended:
                prices = await catalog_prices(
                    session, sorted({reply.model_id for reply in ended if reply.model_id})
                )
                entries = []
                for reply in ended:
                    input_price, output_price = prices.get(reply.model_id or "", (ZERO, ZERO))
                    input_tokens = reply.input_tokens or 0
                    output_tokens = max(
                        reply.output_tokens or 0, output_tokens_of_parts(reply.parts)
                    )
                    cost = cost_usd(
                        input_tokens,
                        output_tokens,
                        input_price_per_mtok=input_price,
                        output_price_per_mtok=output_price,
                    )
                    await replies.record_usage(
                        session, reply.id, replies.ReplyUsage(input_tokens, output_tokens, cost)
                    )
                    entries.append(
                        UsageEntry(
                            user_id=reply.user_id,
                            api_key_id=None,
                            source="chat",
                            model_id=reply.model_id or "",
                            input_tokens=input_tokens,
                            output_tokens=output_tokens,
                            cost_usd=cost,
                            latency_ms=None,
                            status=status,
                            chat_id=reply.chat_id,
                            message_id=reply.id,
                        )
                    )
                if self.usage_meter is not None:
                    await self.usage_meter.settle_ended_replies_in(session, entries)
                for reply in ended:
                    await add_message_completed(
                        session,
                        user_id=reply.user_id,
                        chat_id=reply.chat_id,
                        message_id=reply.id,
                        parent_id=None,
                        status=status,
                        model_id=reply.model_id,
                    )
            await replies.free_slots(session, message_ids)
            await session.commit()
        return len(ended)

    async def sweep_interrupted(self) -> int:
        """Mark replies with no heartbeat for `stale_after` seconds as `interrupted`, bill them
        and free their chats. Returns how many were marked."""
        cutoff = utcnow() - timedelta(seconds=self.stale_after)
        async with self.database.sessionmaker() as session:
            stale = await replies.stale_replies(session, cutoff)
        stale = [message_id for message_id in stale if message_id not in self._by_message]
        if not stale:
            return 0
        marked = await self._end_without_running_turn(stale, "interrupted")
        if marked:
            logger.warning("marked %d interrupted replies", marked)
        return marked

    async def run_background(self) -> None:
        """Sweep once (replies a dead process left) and, with Redis, listen for stops; the
        periodic sweep is the `turns.sweep` job (parley.background)."""
        await self.sweep_interrupted()
        if self.redis is not None:
            self._spawn(self._listen_for_stops())

    def _spawn(self, coroutine: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)  # type: ignore[arg-type]
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _listen_for_stops(self) -> None:
        assert self.redis is not None  # noqa: S101 - only started with Redis
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(STOP_CHANNEL)
                    async for message in pubsub.listen():
                        if message.get("type") != "message":
                            continue
                        data = message.get("data")
                        text = data.decode() if isinstance(data, bytes) else str(data)
                        with contextlib.suppress(ValueError):
                            turn = self._by_message.get(uuid.UUID(text))
                            if turn is not None:
                                turn.stop()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("the stop listener lost Redis; retrying", exc_info=True)
                await asyncio.sleep(1.0)

    async def shutdown(self, wait_seconds: float = 10.0) -> None:
        """Stop background work and every local reply (saved as `interrupted`)."""
        background = list(self._background)
        for task in background:
            task.cancel()
        # Wait for them: a sweep cancelled mid-query must release its connection before the
        # database is disposed.
        await asyncio.gather(*background, return_exceptions=True)
        turns = list(self._by_message.values())
        for turn in turns:
            turn.stop(interrupted=True)
        if turns:
            await asyncio.wait(
                [asyncio.ensure_future(t.done.wait()) for t in turns], timeout=wait_seconds
            )
