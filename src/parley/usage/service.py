"""Metering and budgets (`UsageMeter`), and the usage reports (`UsageService`).

Every chat reply and `/v1` call is metered the same way: before it starts, `reserve` holds an
estimate of its cost against the user's monthly budget — refused with 402 `budget_exceeded` once
what is spent and held reaches the budget; when it ends, `settle` releases the hold, adds the real
cost and writes the usage record, in one transaction (`/v1` calls that end together share one).
So concurrent requests can overspend a budget by at most what was in flight when it ran out. A
hold whose request never settles (its worker died) is released by the sweep after
`BUDGET_RESERVATION_TTL_SECONDS`.

Users with no budget (none of their own, and no `DEFAULT_MONTHLY_BUDGET_USD`) hold nothing; their
spending is still added to the month's total, so a budget set mid-month counts it.

`/v1` calls hold from a *lease*: instead of a transaction before each call's first token, a worker
holds `BUDGET_LEASE_CALLS` times a call's estimate for a user at once (the same conditional upsert,
which must fit whole under the budget and takes at most an eighth of it), and serves that user's
next calls' holds from it in memory for `BUDGET_LEASE_SECONDS`. A call's settle takes its cost off
the lease's reservation, at most its own estimate (so spent plus reserved stays what it was, and a
costlier call's excess is spent beyond the lease as beyond a hold of its own). When its time is up
the lease's unused room is released at once, and the rest as its calls in flight settle. Near
the end of a budget a lease does not fit, and each call holds on its own as above; a changed
budget or a new month closes the lease at once. A lease is an ordinary reservation row: the
sweep releases it if its worker dies.
"""

from __future__ import annotations

import asyncio
import calendar
import contextvars
import dataclasses
import logging
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from parley.accounts.models import User
from parley.core.batching import GroupCommit
from parley.core.db import Database, new_id, utcnow
from parley.core.errors import BudgetExceeded
from parley.core.pagination import CursorCodec
from parley.core.telemetry import traced
from parley.settings import Settings
from parley.usage import repository
from parley.usage.pricing import bounded_tokens, bounded_usd, usd_for_display
from parley.usage.repository import GroupBy
from parley.usage.schemas import (
    BudgetStatus,
    UsageGroup,
    UsageRecordPublic,
    UsageReport,
    UsageTotals,
    UserUsage,
)

logger = logging.getLogger(__name__)
# The most holds or settles one transaction writes (a batch's reservation ids go in one IN list).
BATCH_MAX = 200
# The most of a budget one worker's lease takes.
LEASE_BUDGET_SHARE = Decimal("0.125")
# How many users whose last lease did not fit are remembered (so that their calls do not try a
# lease each before their own hold).
UNLEASABLE_MAX = 10_000
# A lease's release that could not be written is tried again this many times, after 5 s, 10 s...
LEASE_RELEASE_ATTEMPTS = 3
LEASE_RELEASE_RETRY_SECONDS = 5.0


def period_of(moment: datetime) -> str:
    """The budget period (calendar month, UTC) a moment falls in: `2026-11`."""
    return moment.astimezone(UTC).strftime("%Y-%m")


def month_start(moment: datetime) -> datetime:
    """Midnight UTC on the first day of the moment's month."""
    moment = moment.astimezone(UTC)
    return datetime(moment.year, moment.month, 1, tzinfo=UTC)


def next_month_start(moment: datetime) -> datetime:
    """Midnight UTC on the first day of the following month."""
    start = month_start(moment)
    return start + timedelta(days=calendar.monthrange(start.year, start.month)[1])


class BudgetHolder(Protocol):
    """What the meter reads of a user: an ORM `User`, or the plain `UserStanding` of a `/v1`
    caller."""

    @property
    def id(self) -> uuid.UUID: ...

    @property
    def monthly_budget_usd(self) -> Decimal | None: ...


def monthly_budget(user: BudgetHolder, settings: Settings) -> Decimal | None:
    """The user's monthly budget: their own, else `DEFAULT_MONTHLY_BUDGET_USD`; None is
    unlimited."""
    if user.monthly_budget_usd is not None:
        return user.monthly_budget_usd
    return settings.default_monthly_budget_usd


@dataclass(eq=False, slots=True)
class Lease:
    """A slice of a user's budget that this worker holds (one reservation row) and serves its
    `/v1` calls' holds from, in memory.

    Attributes:
        granted: what was leased, less what its settled calls cost: what it can still serve.
        held: what its reservation row holds now: what was leased, less what its settled calls
            took off it (each at most its estimate) and the room given back when it closed.
        drawn: the estimates of its calls in flight.
        closes_at: the monotonic time after which it serves no new call.
        open: whether it still serves new calls.
        returned: whether its release has been sent.
    """

    user_id: uuid.UUID
    period: str
    budget: Decimal
    reservation_id: uuid.UUID
    granted: Decimal
    held: Decimal
    closes_at: float
    drawn: Decimal = Decimal(0)
    in_flight: int = 0
    open: bool = True
    returned: bool = False
    released: asyncio.Future[None] | None = None
    timer: asyncio.TimerHandle | None = None

    def serves(self, period: str, budget: Decimal, amount: Decimal, now: float) -> bool:
        """Whether a call of this user can hold `amount` from it now."""
        return (
            self.open
            and now < self.closes_at
            and self.period == period
            and self.budget == budget
            and self.granted - self.drawn >= amount
        )


@dataclass(frozen=True, slots=True)
class Reservation:
    """An estimate held against a user's budget; `id` is None when nothing was held of its own
    (the user has no budget, or the hold was drawn from `lease`)."""

    user_id: uuid.UUID
    amount_usd: Decimal
    id: uuid.UUID | None = None
    lease: Lease | None = None
    period: str | None = None


@dataclass(frozen=True, slots=True)
class UsageEntry:
    """What one chat reply or `/v1` call used, to be recorded when it settles."""

    user_id: uuid.UUID
    api_key_id: uuid.UUID | None
    source: str  # "chat" or "v1"
    model_id: str
    input_tokens: int
    output_tokens: int
    cost_usd: Decimal
    latency_ms: int | None
    status: str  # "complete", "error", "cancelled", "interrupted"
    chat_id: uuid.UUID | None = None
    message_id: uuid.UUID | None = None
    # When the call ended: its record's time and the month its cost counts in, however long its
    # settle waited for a batch.
    at: datetime = field(default_factory=utcnow)


@dataclass(frozen=True, slots=True)
class Hold:
    """A hold to take: `amount` against `budget` (`fit`: only if it fits whole, for a lease)."""

    user_id: uuid.UUID
    budget: Decimal
    amount: Decimal
    fit: bool = False
    message_id: uuid.UUID | None = None  # the chat reply it is for


@dataclass(frozen=True, slots=True)
class Settle:
    """A call to settle: its hold (if any) and what it used; or (`entry` None) only a lease to
    release, `returned` (which a call's settle can carry too), or room to give back from a
    lease, `shrink`."""

    reservation: Reservation | None
    entry: UsageEntry | None
    returned: uuid.UUID | None = None
    shrink: tuple[uuid.UUID, Decimal] | None = None
    attempt: int = 0  # of a lease's release that failed before


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
        self._settles: GroupCommit[Settle, None] = GroupCommit(
            self._write_settles, max_batch=BATCH_MAX, name="usage-settles"
        )
        # Each user's open lease in this worker, the leases being taken, and the users whose
        # last lease did not fit (until when no lease is tried for them).
        self._leases: dict[uuid.UUID, Lease] = {}
        self._leasing: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._unleasable: dict[uuid.UUID, float] = {}
        self._closing = False

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
        user's budget when one serves it (see the module), else held on its own in a
        transaction shared with the holds of other calls that arrive meanwhile (each hold is
        still its own conditional upsert, in order, so the budget check is the same).

        Raises:
            BudgetExceeded: this month's budget is spent.
        """
        budget = self.budget_of(user)
        if budget is None:
            return Reservation(user.id, Decimal(0))
        amount = bounded_usd(estimate_usd)
        if self.settings.budget_lease_calls and not self._closing:
            drawn = await self._draw(user.id, budget, amount)
            if drawn is not None:
                return drawn
        return await self._holds.submit(Hold(user.id, budget, amount))

    # -- leases -------------------------------------------------------------------------------

    async def _draw(
        self, user_id: uuid.UUID, budget: Decimal, amount: Decimal
    ) -> Reservation | None:
        """Hold `amount` from the user's lease, taking a new one if needed (calls that come
        while it is taken wait for it); None when no lease can serve the call."""
        for attempt in range(3):
            now = time.monotonic()
            lease = self._leases.get(user_id)
            if lease is not None:
                if lease.serves(period_of(utcnow()), budget, amount, now):
                    lease.drawn += amount
                    lease.in_flight += 1
                    return Reservation(user_id, amount, lease=lease, period=lease.period)
                self._close(lease)
                if lease.released is not None and not lease.released.done():
                    # Its remainder is released before a new lease is taken, which would
                    # otherwise hold the same room twice.
                    await asyncio.shield(lease.released)
                    continue
            if self._unleasable.get(user_id, 0.0) > now:
                return None
            taking = self._leasing.get(user_id)
            if taking is None:
                size = min(amount * self.settings.budget_lease_calls, budget * LEASE_BUDGET_SHARE)
                if attempt == 2 or size < amount or self._closing:
                    return None
                # A task of its own (and a context of its own): the lease is recorded even if
                # the call that started it is cancelled meanwhile.
                taking = asyncio.create_task(
                    self._take_lease(user_id, budget, size),
                    name="usage-lease",
                    context=contextvars.Context(),
                )
                self._leasing[user_id] = taking
                taking.add_done_callback(lambda task: self._lease_taken(user_id, task))
            await asyncio.shield(taking)
        return None

    async def _take_lease(self, user_id: uuid.UUID, budget: Decimal, size: Decimal) -> None:
        try:
            reservation = await self._holds.submit(Hold(user_id, budget, size, fit=True))
        except BudgetExceeded:
            if len(self._unleasable) >= UNLEASABLE_MAX:
                now = time.monotonic()
                self._unleasable = {u: t for u, t in self._unleasable.items() if t > now}
            self._unleasable[user_id] = time.monotonic() + self.settings.budget_lease_seconds
            return
        if reservation.id is None or reservation.period is None:  # a taken hold has both
            raise RuntimeError("a lease's hold came back without its reservation")
        lease = Lease(
            user_id=user_id,
            period=reservation.period,
            budget=budget,
            reservation_id=reservation.id,
            granted=size,
            held=size,
            closes_at=time.monotonic() + self.settings.budget_lease_seconds,
        )
        previous = self._leases.get(user_id)
        if previous is not None:
            self._close(previous)
        self._leases[user_id] = lease
        lease.timer = asyncio.get_running_loop().call_later(
            self.settings.budget_lease_seconds, self._close, lease
        )
        if self._closing:
            self._close(lease)

    def _lease_taken(self, user_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        if self._leasing.get(user_id) is task:
            del self._leasing[user_id]
        if not task.cancelled():
            task.exception()  # seen: the calls that waited for it got it

    def _close(self, lease: Lease) -> None:
        """Serve no new call from `lease`; release it now if none is in flight (else the last
        one's settle does). It stays the user's lease until that release is written, so that
        no new lease holds the same room meanwhile."""
        lease.open = False
        if lease.timer is not None:
            lease.timer.cancel()
            lease.timer = None
        if lease.in_flight == 0 and not lease.returned:
            lease.returned = True
            lease.released = self._settles.post(Settle(None, None, returned=lease.reservation_id))
            lease.released.add_done_callback(lambda _: self._forget(lease))
        elif not lease.returned and lease.held > lease.drawn:
            # Calls in flight: its unused room is given back now, so that its row holds only
            # what they hold, as their own holds would (a long call would otherwise keep a
            # closed lease's room, and leases taken meanwhile would add up).
            unused = lease.held - lease.drawn
            lease.held = lease.drawn
            lease.released = self._settles.post(
                Settle(None, None, shrink=(lease.reservation_id, unused))
            )
            lease.released.add_done_callback(lambda _: self._forget(lease))
        elif lease.released is None or lease.released.done():
            self._forget(lease)

    def _forget(self, lease: Lease) -> None:
        if self._leases.get(lease.user_id) is lease:
            del self._leases[lease.user_id]

    def _settled_from_lease(
        self, lease: Lease, estimate: Decimal, cost: Decimal
    ) -> uuid.UUID | None:
        """A lease's call ended: its estimate is free again and its cost is spent from the
        lease (its row gives up at most the call's estimate: see `settle_many_in`). The lease's
        reservation id when this settle must also release it."""
        lease.drawn -= estimate
        lease.granted -= cost
        lease.held -= min(cost, estimate)
        lease.in_flight -= 1
        if not lease.open and lease.in_flight == 0 and not lease.returned:
            lease.returned = True
            return lease.reservation_id
        return None

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
        """Settle chat replies that ended without their generation (its worker died, or a stop
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

    @traced(name="usage.settle")
    async def settle(self, reservation: Reservation | None, entry: UsageEntry) -> None:
        """Settle in a transaction of its own, and return once it is committed. Never raises: a
        failure is logged (the hold then lapses with the sweep).

        Calls that end while a batch is being written are written together in the next one
        (group commit): under load, one transaction settles many calls, and the writes go on
        even if the caller is cancelled.
        """
        returned = None
        if reservation is not None and reservation.lease is not None:
            returned = self._settled_from_lease(
                reservation.lease, reservation.amount_usd, entry.cost_usd
            )
        await self._settles.submit(Settle(reservation, entry, returned))

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
        lease's room, up to an eighth of the budget, would otherwise wait for the sweep,
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
        self._closing = True
        if self._leasing:
            await asyncio.wait(list(self._leasing.values()))
        for lease in list(self._leases.values()):
            self._close(lease)
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


class UsageService:
    """Usage reports over one request session."""

    def __init__(self, session: AsyncSession, settings: Settings, codec: CursorCodec) -> None:
        self.session = session
        self.settings = settings
        self.codec = codec

    async def budget_status(self, user: User) -> BudgetStatus:
        """This month's spending against the user's budget."""
        now = utcnow()
        period = period_of(now)
        row = await repository.get_period(self.session, user.id, period)
        spent = row.spent_usd if row is not None else Decimal(0)
        reserved = row.reserved_usd if row is not None else Decimal(0)
        budget = monthly_budget(user, self.settings)
        return BudgetStatus(
            period=period,
            monthly_budget_usd=None if budget is None else usd_for_display(budget),
            spent_usd=usd_for_display(spent),
            reserved_usd=usd_for_display(reserved),
            remaining_usd=None if budget is None else usd_for_display(budget - spent),
            resets_at=next_month_start(now),
        )

    @traced(name="usage.report")
    async def report(
        self, user: User, *, start: datetime, end: datetime, group_by: GroupBy | None
    ) -> UsageReport:
        """The caller's totals in `[start, end)`, grouped if asked, and this month's budget."""
        sums = await repository.totals(self.session, user.id, start, end)
        groups = (
            [
                UsageGroup(key=key, **UsageTotals.of(group).model_dump())
                for key, group in await repository.grouped(
                    self.session, user.id, start, end, group_by
                )
            ]
            if group_by is not None
            else []
        )
        return UsageReport(
            from_=start,
            to=end,
            group_by=group_by,
            totals=UsageTotals.of(sums),
            groups=groups,
            budget=await self.budget_status(user),
        )

    @traced(name="usage.admin_report")
    async def per_user(
        self, *, start: datetime, end: datetime, cursor: str | None, limit: int
    ) -> tuple[list[UserUsage], str | None]:
        """Every user's totals in `[start, end)`, a page at a time."""
        rows, next_cursor = await repository.per_user(
            self.session, start, end, codec=self.codec, cursor=cursor, limit=limit
        )
        items = [
            UserUsage(
                user_id=user.id,
                email=user.email,
                display_name=user.display_name,
                monthly_budget_usd=(
                    None if user.monthly_budget_usd is None else float(user.monthly_budget_usd)
                ),
                **UsageTotals.of(sums).model_dump(),
            )
            for user, sums in rows
        ]
        return items, next_cursor

    async def records(
        self,
        user: User,
        *,
        source: str | None,
        api_key_id: uuid.UUID | None,
        cursor: str | None,
        limit: int,
    ) -> tuple[list[UsageRecordPublic], str | None]:
        """A page of the caller's usage records, newest first."""
        rows, next_cursor = await repository.list_records(
            self.session,
            user.id,
            source=source,
            api_key_id=api_key_id,
            codec=self.codec,
            cursor=cursor,
            limit=limit,
        )
        return [UsageRecordPublic.of(row) for row in rows], next_cursor
