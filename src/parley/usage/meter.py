"""Metering and budgets: `UsageMeter` holds an estimate before each chat reply or `/v1` call,
and settles it when the call ends.

Every chat reply and `/v1` call is metered the same way: before it starts, `reserve` holds an
estimate of its cost against the user's monthly budget — refused with 402 `budget_exceeded` once
what is spent and held reaches the budget; when it ends, `settle` releases the hold, adds the real
cost and writes the usage record, in one transaction (for `/v1` calls, after the response, shared
by the calls that end within `USAGE_WRITE_DELAY_MS`).
So concurrent requests can overspend a budget by at most what was in flight when it ran out. A
hold whose request never settles (its worker died) is released by `release_expired`, run
periodically, after `BUDGET_RESERVATION_TTL_SECONDS`.

Users with no budget (none of their own, and no `DEFAULT_MONTHLY_BUDGET_USD`) hold nothing; their
spending is still added to the month's total, so a budget set mid-month counts it.

`/v1` calls hold from a worker's lease on the user's budget when one serves them
(`parley.usage.leases`); holds and settles of calls that arrive together are written in one
transaction (`parley.core.batching`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.core.batching import GroupCommit
from parley.core.db import Database, new_id, utcnow
from parley.core.errors import BudgetExceeded
from parley.core.telemetry import traced
from parley.settings import Settings
from parley.usage import repository
from parley.usage.leases import LeaseBook
from parley.usage.periods import BudgetHolder, monthly_budget, next_month_start, period_of
from parley.usage.pricing import bounded_tokens, bounded_usd
from parley.usage.reservations import Hold, Reservation, Settle, UsageEntry

logger = logging.getLogger(__name__)
# The most holds or settles one transaction writes (a batch's reservation ids go in one IN list).
BATCH_MAX = 200
# A lease's release that could not be written is tried again this many times, after 5 s, 10 s...
LEASE_RELEASE_ATTEMPTS = 3
LEASE_RELEASE_RETRY_SECONDS = 5.0


async def _release_and_spend(
    session: AsyncSession,
    released: Sequence[tuple[uuid.UUID, str, Decimal]],
    spent: Sequence[tuple[uuid.UUID, str, Decimal]],
) -> None:
    """Take released holds off their months and add spending to its months: one upsert per user
    and month, in a fixed order, so that settles and sweeps running at once on several workers
    lock the same rows in the same order and cannot deadlock on PostgreSQL."""
    deltas: dict[tuple[uuid.UUID, str], tuple[Decimal, Decimal]] = {}
    for user_id, month, amount in released:
        old_spent, old_reserved = deltas.get((user_id, month), (Decimal(0), Decimal(0)))
        deltas[(user_id, month)] = (old_spent, old_reserved - amount)
    for user_id, month, cost in spent:
        old_spent, old_reserved = deltas.get((user_id, month), (Decimal(0), Decimal(0)))
        deltas[(user_id, month)] = (old_spent + cost, old_reserved)
    for (user_id, month), (spent_delta, reserved_delta) in sorted(
        deltas.items(), key=lambda item: (item[0][0].bytes, item[0][1])
    ):
        await repository.adjust_period(
            session, user_id, month, spent=spent_delta, reserved=reserved_delta
        )


def _storable(entry: UsageEntry) -> UsageEntry:
    """The entry with its tokens and cost as their columns can hold them."""
    input_tokens, output_tokens = (
        bounded_tokens(entry.input_tokens),
        bounded_tokens(entry.output_tokens),
    )
    cost = bounded_usd(entry.cost_usd)
    if (input_tokens, output_tokens, cost) == (
        entry.input_tokens,
        entry.output_tokens,
        entry.cost_usd,
    ):
        return entry
    return dataclasses.replace(
        entry, input_tokens=input_tokens, output_tokens=output_tokens, cost_usd=cost
    )


def _budget_exceeded(budget: Decimal, now: datetime) -> BudgetExceeded:
    return BudgetExceeded(
        f"Your monthly budget of ${budget:.2f} is spent; it renews on "
        f"{next_month_start(now):%Y-%m-%d}."
    )


class UsageMeter:
    """Holds and settles budget reservations and records usage (app-wide; stateless).

    Args:
        database: where short transactions of its own run (`reserve`, `settle`).
        settings: the default budget and the reservations' lifetime.
    """

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        # Holds and settles of /v1 calls that arrive together share a transaction.
        self._holds: GroupCommit[Hold, Reservation] = GroupCommit(
            self._write_holds, max_batch=BATCH_MAX, name="usage-holds"
        )
        # Settles are written after the calls' responses, batched over a short delay.
        self._settles: GroupCommit[Settle, None] = GroupCommit(
            self._write_settles,
            max_batch=BATCH_MAX,
            name="usage-settles",
            delay=settings.usage_write_delay_ms / 1000,
        )
        # Each user's open lease in this worker (`parley.usage.leases`).
        self._leases = LeaseBook(self._holds, self._settles, settings)

    def budget_of(self, user: BudgetHolder) -> Decimal | None:
        """The user's monthly budget (see `monthly_budget`)."""
        return monthly_budget(user, self.settings)

    async def reserve_in(
        self,
        session: AsyncSession,
        user: BudgetHolder,
        estimate_usd: Decimal,
        *,
        message_id: uuid.UUID | None = None,
    ) -> Reservation:
        """Hold `estimate_usd` against the user's budget, inside the caller's transaction (the
        hold commits or rolls back with it). `message_id` names the chat reply it is for, so
        that the sweep can settle it if the reply's worker dies (`settle_ended_replies_in`).

        Raises:
            BudgetExceeded: this month's budget is spent (or held by requests in flight).
        """
        budget = self.budget_of(user)
        if budget is None:
            return Reservation(user.id, Decimal(0))
        [outcome] = await self._hold_in(
            session, [Hold(user.id, budget, bounded_usd(estimate_usd), message_id=message_id)]
        )
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    @traced(name="usage.reserve")
    async def reserve(self, user: BudgetHolder, estimate_usd: Decimal) -> Reservation:
        """`reserve_in`, committed before it returns: drawn from this worker's lease on the
        user's budget when one serves it (see `parley.usage.leases`), else held on its own in a
        transaction shared with the holds of other calls that arrive meanwhile (each hold is
        still its own conditional upsert, in order, so the budget check is the same).

        Raises:
            BudgetExceeded: this month's budget is spent.
        """
        budget = self.budget_of(user)
        if budget is None:
            return Reservation(user.id, Decimal(0))
        amount = bounded_usd(estimate_usd)
        if self.settings.budget_lease_calls and not self._leases.closing:
            drawn = await self._leases.draw(user.id, budget, amount)
            if drawn is not None:
                return drawn
        return await self._holds.submit(Hold(user.id, budget, amount))

    async def _write_holds(self, holds: Sequence[Hold]) -> Sequence[Reservation | Exception]:
        try:
            return await self._hold_batch(holds)
        except IntegrityError:
            if len(holds) == 1:
                raise
            # One refused hold (its user deleted meanwhile, say) must not fail the others. Only
            # then: a database that is down or locked would make each retry wait its timeout.
            logger.warning(
                "a batch of %d holds failed; holding one by one", len(holds), exc_info=True
            )
            outcomes: list[Reservation | Exception] = []
            for hold in holds:
                try:
                    outcomes.extend(await self._hold_batch([hold]))
                except Exception as exc:
                    outcomes.append(exc)
            return outcomes

    async def _hold_batch(self, holds: Sequence[Hold]) -> list[Reservation | Exception]:
        async with self.database.sessionmaker() as session:
            outcomes = await self._hold_in(session, holds)
            await session.commit()
        return outcomes

    async def _hold_in(
        self, session: AsyncSession, holds: Sequence[Hold]
    ) -> list[Reservation | Exception]:
        """Take each hold that its budget allows, in the caller's transaction; each hold's
        reservation, or the `BudgetExceeded` it gets. Holds are taken in user order (a user's own
        in arrival order), so that batches of several workers lock the month rows in the same
        order as each other and as the settles, and cannot deadlock on PostgreSQL."""
        now = utcnow()
        period = period_of(now)
        expires_at = now + timedelta(seconds=self.settings.budget_reservation_ttl_seconds)
        outcomes: list[Reservation | Exception] = [_budget_exceeded(h.budget, now) for h in holds]
        rows: list[dict[str, object]] = []
        for index in sorted(range(len(holds)), key=lambda i: holds[i].user_id.bytes):
            hold = holds[index]
            if await repository.hold(
                session, hold.user_id, period, hold.amount, hold.budget, fit=hold.fit
            ):
                reservation_id = new_id()
                rows.append(
                    {
                        "id": reservation_id,
                        "user_id": hold.user_id,
                        "period": period,
                        "amount_usd": hold.amount,
                        "expires_at": expires_at,
                        "message_id": hold.message_id,
                    }
                )
                outcomes[index] = Reservation(
                    hold.user_id, hold.amount, reservation_id, period=period
                )
        await repository.add_reservations(session, rows)
        return outcomes

    async def settle_in(
        self, session: AsyncSession, reservation: Reservation | None, entry: UsageEntry
    ) -> None:
        """Release the hold, add the real cost to this month and record the usage, inside the
        caller's transaction."""
        await self.settle_many_in(session, [(reservation, entry)])

    async def settle_many_in(
        self,
        session: AsyncSession,
        items: Sequence[tuple[Reservation | None, UsageEntry]],
        *,
        returned: Sequence[uuid.UUID] = (),
        shrinks: Sequence[tuple[uuid.UUID, Decimal]] = (),
    ) -> None:
        """`settle_in` for many calls at once: one update per lease takes its calls' costs off
        it (each at most the call's estimate, the rest being spent beyond the lease as beyond a
        hold of its own: so a lease's row never goes below zero and spent plus reserved never
        understates what is committed) and the room `shrinks` gives back from leases closed
        with calls in flight, one delete takes their own reservations and the leases
        `returned`, one upsert per user and month adjusts spent and reserved (in a fixed order,
        so that concurrent batches of several workers cannot deadlock on PostgreSQL), one
        insert writes the records."""
        # Whatever a caller computed, what is written is storable (see `parley.usage.pricing`).
        items = [(reservation, _storable(entry)) for reservation, entry in items]
        consumed: dict[uuid.UUID, Decimal] = {}
        for reservation, entry in items:
            if reservation is not None and reservation.lease is not None:
                lease_id = reservation.lease.reservation_id
                share = min(entry.cost_usd, reservation.amount_usd)
                consumed[lease_id] = consumed.get(lease_id, Decimal(0)) + share
        for lease_id, unused in shrinks:
            consumed[lease_id] = consumed.get(lease_id, Decimal(0)) + unused
        held = [r.id for r, _ in items if r is not None and r.id is not None]
        released = await repository.consume_reservations(session, consumed)
        released += await repository.take_reservations(session, [*held, *returned])
        await _release_and_spend(
            session,
            released,
            [(entry.user_id, period_of(entry.at), entry.cost_usd) for _, entry in items],
        )
        await repository.add_records(
            session,
            [
                {
                    "user_id": entry.user_id,
                    "api_key_id": entry.api_key_id,
                    "source": entry.source,
                    "model_id": entry.model_id,
                    "status": entry.status,
                    "input_tokens": entry.input_tokens,
                    "output_tokens": entry.output_tokens,
                    "cost_usd": entry.cost_usd,
                    "latency_ms": entry.latency_ms,
                    "chat_id": entry.chat_id,
                    "message_id": entry.message_id,
                    "created_at": entry.at,
                }
                for _, entry in items
            ],
        )

    async def settle_ended_replies_in(
        self, session: AsyncSession, entries: Sequence[UsageEntry]
    ) -> None:
        """Settle chat replies that ended without their running turn (its worker died, or a stop
        reached no worker running it), inside the caller's transaction: each reply's own hold
        (found by its message id) is released and its usage recorded. The caller makes sure each
        reply is settled once (it ends the reply in the same transaction, conditionally)."""
        by_message = {
            message_id: Reservation(user_id, amount, reservation_id)
            for reservation_id, message_id, user_id, amount in (
                await repository.reservations_of_messages(
                    session, [e.message_id for e in entries if e.message_id is not None]
                )
            )
        }
        await self.settle_many_in(
            session,
            [
                (by_message.get(entry.message_id) if entry.message_id else None, entry)
                for entry in entries
            ],
        )

    def settle(self, reservation: Reservation | None, entry: UsageEntry) -> None:
        """Settle in a transaction of its own, without waiting: the settle is queued and written
        with those of the calls that end within `USAGE_WRITE_DELAY_MS` (group commit: under
        load, or one call after another, one transaction settles many calls). The lease's
        accounting in memory is settled at once. A failed write is logged (the hold then lapses:
        `release_expired`); `flush` waits for what is queued.
        """
        returned = None
        if reservation is not None and reservation.lease is not None:
            returned = self._leases.settled(
                reservation.lease, reservation.amount_usd, entry.cost_usd
            )
        self._settles.post(Settle(reservation, entry, returned))

    async def settle_now(self, reservation: Reservation | None, entry: UsageEntry) -> None:
        """`settle`, written now (with whatever else is queued, without waiting out the delay)
        and committed when this returns: a chat turn's, whose next turn's hold must see it.
        Never raises (a failed write is logged, as for `settle`)."""
        self.settle(reservation, entry)
        await self._settles.flush()  # which hurries the batch

    async def flush(self) -> None:
        """Wait until the settles queued so far are written (a usage read's first step)."""
        await self._settles.flush()

    async def _write_settles(self, settles: Sequence[Settle]) -> list[None]:
        try:
            await self._settle_batch(settles)
        except IntegrityError:
            if len(settles) == 1:
                self._lost(settles[0])
                return [None]
            # One refused entry (its user deleted meanwhile, say) must not lose the rest. Only
            # then: a database that is down or locked would make each retry wait its timeout.
            logger.warning(
                "a batch of %d settles failed; writing one by one", len(settles), exc_info=True
            )
            for settle in settles:
                try:
                    await self._settle_batch([settle])
                except Exception:
                    self._lost(settle)
        except Exception:
            for settle in settles:
                self._lost(settle)
        return [None] * len(settles)

    def _lost(self, settle: Settle) -> None:
        """A settle could not be written: log it, and try its lease's release again later (the
        lease's room, up to an eighth of the budget, would otherwise wait for `release_expired`,
        `BUDGET_RESERVATION_TTL_SECONDS`). A release is safe to repeat: a row already gone is
        skipped. (A failed `shrink` is not repeated, as it could have been written after all:
        that room comes back with the lease's last call.)"""
        if settle.entry is not None:
            logger.exception("could not record usage", extra={"user_id": str(settle.entry.user_id)})
        else:
            logger.exception("could not release a budget lease")
        if settle.returned is None or settle.attempt >= LEASE_RELEASE_ATTEMPTS:
            return
        again = Settle(None, None, returned=settle.returned, attempt=settle.attempt + 1)
        asyncio.get_running_loop().call_later(
            LEASE_RELEASE_RETRY_SECONDS * again.attempt, self._settles.post, again
        )

    async def _settle_batch(self, settles: Sequence[Settle]) -> None:
        async with self.database.sessionmaker() as session:
            await self.settle_many_in(
                session,
                [(s.reservation, s.entry) for s in settles if s.entry is not None],
                returned=[s.returned for s in settles if s.returned is not None],
                shrinks=[s.shrink for s in settles if s.shrink is not None],
            )
            await session.commit()

    async def aclose(self) -> None:
        """Release the leases no call is using, and wait for the holds and settles in progress
        to be written (at shutdown; a lease still in use is released by its last call's
        settle)."""
        await self._leases.aclose()
        await self._holds.aclose()
        await self._settles.aclose()

    async def release_expired(self) -> int:
        """Release the holds whose requests never settled; the number released."""
        async with self.database.sessionmaker() as session:
            expired = await repository.expired_reservations(session, utcnow())
            taken = await repository.take_reservations(session, expired)
            await _release_and_spend(session, taken, [])
            await session.commit()
        return len(taken)
