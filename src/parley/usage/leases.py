"""Budget leases: how one worker serves its `/v1` calls' holds from memory.

Instead of a transaction before each call's first token, a worker holds `BUDGET_LEASE_CALLS`
times a call's estimate for a user at once — twice as many calls as were in flight when the
user's last lease ran short, if that is more (the same conditional upsert as a call's own hold,
which must fit whole under the budget and takes at most an eighth of it) — and serves that user's
next calls' holds from it in memory for `BUDGET_LEASE_SECONDS`. A call's settle takes its cost off
the lease's reservation, at most its own estimate (so spent plus reserved stays what it was, and a
costlier call's excess is spent beyond the lease as beyond a hold of its own). When its time is up
the lease's unused room is released at once, and the rest as its calls in flight settle. Near
the end of a budget a lease does not fit, and each call holds on its own; a changed budget or a
new month closes the lease at once. A lease is an ordinary reservation row: if its worker dies,
it expires as any hold does (`UsageMeter.release_expired`).

`LeaseBook` keeps a worker's leases; the meter (`parley.usage.meter`) writes their holds and
releases in its batches.
"""

from __future__ import annotations

import asyncio
import contextvars
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

from parley.core.batching import GroupCommit
from parley.core.db import utcnow
from parley.core.errors import BudgetExceeded
from parley.settings import Settings
from parley.usage.periods import period_of
from parley.usage.reservations import Hold, Reservation, Settle

# The most of a budget one worker's lease takes.
LEASE_BUDGET_SHARE = Decimal("0.125")
# How many users whose last lease did not fit are remembered (so that their calls do not try a
# lease each before their own hold).
UNLEASABLE_MAX = 10_000


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
    peak: int = 0  # the most calls it had in flight at once
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


class LeaseBook:
    """This worker's leases on its users' budgets: drawn from by `UsageMeter.reserve`, taken
    and released through the meter's batches.

    Args:
        holds: the meter's batched holds (a lease is taken as one).
        settles: the meter's batched settles (a lease is released, or shrunk, as one).
        settings: the leases' size (`BUDGET_LEASE_CALLS`) and time (`BUDGET_LEASE_SECONDS`).
    """

    def __init__(
        self,
        holds: GroupCommit[Hold, Reservation],
        settles: GroupCommit[Settle, None],
        settings: Settings,
    ) -> None:
        self._holds = holds
        self._settles = settles
        self.settings = settings
        # Each user's open lease in this worker, the leases being taken, and the users whose
        # last lease did not fit (until when no lease is tried for them).
        self._leases: dict[uuid.UUID, Lease] = {}
        self._leasing: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._unleasable: dict[uuid.UUID, float] = {}
        # How many calls a user's next lease serves, where their last one ran short.
        self._demand: dict[uuid.UUID, int] = {}
        # Set at shutdown: no lease is taken any more.
        self.closing = False

    async def draw(
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
                    lease.peak = max(lease.peak, lease.in_flight)
                    return Reservation(user_id, amount, lease=lease, period=lease.period)
                if lease.open and lease.granted - lease.drawn < amount:
                    # It ran short with its calls in flight: the next one serves twice as many.
                    self._remember_demand(user_id, 2 * (lease.in_flight + 1))
                self.close(lease)
                if lease.released is not None and not lease.released.done():
                    # Its remainder is released before a new lease is taken, which would
                    # otherwise hold the same room twice (written now, not after the delay).
                    self._settles.hurry()
                    await asyncio.shield(lease.released)
                    continue
            if self._unleasable.get(user_id, 0.0) > now:
                return None
            taking = self._leasing.get(user_id)
            if taking is None:
                calls = max(self.settings.budget_lease_calls, self._demand.get(user_id, 0))
                size = min(amount * calls, budget * LEASE_BUDGET_SHARE)
                if attempt == 2 or size < amount or self.closing:
                    return None
                # A task of its own (and a context of its own): the lease is recorded even if
                # the call that started it is cancelled meanwhile.
                taking = asyncio.create_task(
                    self._take(user_id, budget, size),
                    name="usage-lease",
                    context=contextvars.Context(),
                )
                self._leasing[user_id] = taking
                taking.add_done_callback(lambda task: self._taken(user_id, task))
            await asyncio.shield(taking)
        return None

    def _expire(self, lease: Lease) -> None:
        """A lease's time is up: close it, and size the user's next one by what it served."""
        if lease.user_id in self._demand:
            self._demand[lease.user_id] = 2 * lease.peak
        self.close(lease)

    def _remember_demand(self, user_id: uuid.UUID, calls: int) -> None:
        if len(self._demand) >= UNLEASABLE_MAX:
            self._demand.clear()
        self._demand[user_id] = max(calls, self._demand.get(user_id, 0))

    async def _take(self, user_id: uuid.UUID, budget: Decimal, size: Decimal) -> None:
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
            self.close(previous)
        self._leases[user_id] = lease
        lease.timer = asyncio.get_running_loop().call_later(
            self.settings.budget_lease_seconds, self._expire, lease
        )
        if self.closing:
            self.close(lease)

    def _taken(self, user_id: uuid.UUID, task: asyncio.Task[None]) -> None:
        if self._leasing.get(user_id) is task:
            del self._leasing[user_id]
        if not task.cancelled():
            task.exception()  # seen: the calls that waited for it got it

    def close(self, lease: Lease) -> None:
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

    def settled(self, lease: Lease, estimate: Decimal, cost: Decimal) -> uuid.UUID | None:
        """A lease's call ended: its estimate is free again and its cost is spent from the
        lease (its row gives up at most the call's estimate: see `UsageMeter.settle_many_in`).
        The lease's reservation id when this settle must also release it."""
        lease.drawn -= estimate
        lease.granted -= cost
        lease.held -= min(cost, estimate)
        lease.in_flight -= 1
        if not lease.open and lease.in_flight == 0 and not lease.returned:
            lease.returned = True
            return lease.reservation_id
        return None

    async def aclose(self) -> None:
        """Take no more leases, wait for those being taken, and close them all (each is
        released now, or by its last call's settle)."""
        self.closing = True
        if self._leasing:
            await asyncio.wait(list(self._leasing.values()))
        for lease in list(self._leases.values()):
            self.close(lease)
