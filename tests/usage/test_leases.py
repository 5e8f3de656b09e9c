"""Budget leases (`UsageMeter.reserve`, see parley.usage.leases): a worker holds a slice of a
user's budget once and serves the holds of that user's next `/v1` calls from it in memory. The
lease is released when its time is up and its last call has settled, at shutdown, or by the sweep
if its worker died; a new month takes a new one. (Calls through `/v1` are in
tests/gateway/test_budgets.py.)"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from parley.accounts.models import User
from parley.core.db import utcnow
from parley.core.errors import BudgetExceeded
from parley.usage import leases as usage_leases
from parley.usage import meter as usage_meter
from parley.usage import repository
from parley.usage.meter import UsageMeter
from parley.usage.models import BudgetPeriod, BudgetReservation
from parley.usage.periods import period_of
from parley.usage.reservations import UsageEntry
from tests.fixtures.accounts import TestUser
from tests.fixtures.apps import running_app
from tests.fixtures.meters import settle
from tests.fixtures.settings import make_settings

HOLD = Decimal("0.01")
COST = Decimal("0.004")


def _entry(user_id: uuid.UUID, cost: Decimal = COST) -> UsageEntry:
    return UsageEntry(
        user_id=user_id,
        api_key_id=None,
        source="v1",
        model_id="m",
        input_tokens=10,
        output_tokens=20,
        cost_usd=cost,
        latency_ms=5,
        status="complete",
    )


async def _user(app: FastAPI, user: TestUser, budget: Decimal) -> User:
    async with app.state.database.sessionmaker() as session:
        row = await session.get(User, uuid.UUID(user.id))
        assert row is not None
        row.monthly_budget_usd = budget
        await session.commit()
        return row


async def _rows(app: FastAPI) -> list[tuple[str, Decimal]]:
    """Every reservation's (period, amount)."""
    async with app.state.database.sessionmaker() as session:
        result = await session.execute(
            select(BudgetReservation.period, BudgetReservation.amount_usd)
        )
        return [(period, Decimal(str(amount))) for period, amount in result]


async def _month(app: FastAPI, user: TestUser, period: str) -> tuple[Decimal, Decimal]:
    """The user's (spent, reserved) in `period`."""
    async with app.state.database.sessionmaker() as session:
        row = (
            await session.execute(
                select(BudgetPeriod.spent_usd, BudgetPeriod.reserved_usd).where(
                    BudgetPeriod.user_id == uuid.UUID(user.id), BudgetPeriod.period == period
                )
            )
        ).one()
        return Decimal(str(row[0])), Decimal(str(row[1]))


async def _until_rows(app: FastAPI, expected: list[tuple[str, Decimal]]) -> None:
    """Wait (a little) until the reservations are `expected`: releases are written after the
    call that made them returns."""
    for _ in range(200):
        if await _rows(app) == expected:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"reservations {await _rows(app)}, expected {expected}")


async def _until_released(app: FastAPI) -> None:
    await _until_rows(app, [])


@pytest.fixture
async def short_leases(database_url: str, tmp_path: Path) -> AsyncIterator[FastAPI]:
    """An app whose leases serve new calls for a second."""
    settings = make_settings(database_url, tmp_path, budget_lease_seconds=1.0)
    async with running_app(settings) as (application, _):
        yield application


async def test_a_lease_serves_many_holds_and_is_released_after_its_time(
    short_leases: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    meter: UsageMeter = short_leases.state.usage_meter
    owner = await _user(short_leases, user, Decimal(10))
    period = period_of(utcnow())
    held = await asyncio.gather(*(meter.reserve(owner, HOLD) for _ in range(5)))
    assert all(r.lease is not None and r.lease is held[0].lease for r in held)
    lease = 32 * HOLD
    assert await _rows(short_leases) == [(period, lease)]
    await asyncio.gather(*(settle(meter, r, _entry(owner.id)) for r in held))
    assert await _rows(short_leases) == [(period, lease - 5 * COST)]
    assert await _month(short_leases, user, period) == (5 * COST, lease - 5 * COST)
    await _until_released(short_leases)
    assert await _month(short_leases, user, period) == (5 * COST, 0)
    budget = (await client.get("/api/usage", headers=user.headers)).json()["data"]["budget"]
    assert budget["reserved_usd"] == 0


async def test_a_lease_in_use_is_released_by_its_last_call(
    short_leases: FastAPI, user: TestUser
) -> None:
    meter: UsageMeter = short_leases.state.usage_meter
    owner = await _user(short_leases, user, Decimal(10))
    period = period_of(utcnow())
    first = await meter.reserve(owner, HOLD)
    await asyncio.sleep(1.2)  # its time is up, with a call in flight
    # Its unused part is released at once; what its call holds, when the call ends.
    await _until_rows(short_leases, [(period, HOLD)])
    second = await meter.reserve(owner, HOLD)  # a new lease for a new call
    assert second.lease is not None
    assert second.lease is not first.lease
    assert sorted(await _rows(short_leases)) == [(period, HOLD), (period, 32 * HOLD)]
    await settle(meter, first, _entry(owner.id))  # the old lease's last call: released with it
    assert await _rows(short_leases) == [(period, 32 * HOLD)]
    await settle(meter, second, _entry(owner.id))
    await _until_released(short_leases)
    assert await _month(short_leases, user, period) == (2 * COST, 0)


async def test_shutdown_releases_the_leases(
    database_url: str, tmp_path: Path, user: TestUser, app: FastAPI
) -> None:
    settings = make_settings(database_url, tmp_path)  # leases of 10 s
    async with running_app(settings) as (application, _):
        meter: UsageMeter = application.state.usage_meter
        owner = await _user(application, user, Decimal(10))
        reservation = await meter.reserve(owner, HOLD)
        await settle(meter, reservation, _entry(owner.id))
        assert len(await _rows(application)) == 1
    assert await _rows(app) == []
    assert await _month(app, user, period_of(utcnow())) == (COST, 0)


async def test_a_lease_the_sweep_released_is_not_taken_off_twice(
    app: FastAPI, user: TestUser
) -> None:
    """A worker stalled past `BUDGET_RESERVATION_TTL_SECONDS`: the sweep released its lease,
    then its call ends. The cost is spent; nothing more comes off the month's reservations."""
    meter: UsageMeter = app.state.usage_meter
    owner = await _user(app, user, Decimal(10))
    period = period_of(utcnow())
    reservation = await meter.reserve(owner, HOLD)
    async with app.state.database.sessionmaker() as session:
        await session.execute(
            update(BudgetReservation).values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    assert await meter.release_expired() == 1
    assert await _month(app, user, period) == (0, 0)
    await settle(meter, reservation, _entry(owner.id))
    assert await _month(app, user, period) == (COST, 0)
    assert await _rows(app) == []


async def test_a_new_month_or_a_new_budget_takes_a_new_lease(
    app: FastAPI, user: TestUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    meter: UsageMeter = app.state.usage_meter
    owner = await _user(app, user, Decimal(10))
    november = await meter.reserve(owner, HOLD)
    assert november.lease is not None
    later = datetime(2099, 1, 1, tzinfo=UTC)
    monkeypatch.setattr(usage_leases, "utcnow", lambda: later)
    monkeypatch.setattr(usage_meter, "utcnow", lambda: later)
    january = await meter.reserve(owner, HOLD)
    assert january.lease is not None
    assert january.lease is not november.lease
    assert january.period == "2099-01"
    owner.monthly_budget_usd = Decimal(20)
    raised = await meter.reserve(owner, HOLD)
    assert raised.lease is not None
    assert raised.lease is not january.lease
    periods = sorted(period for period, _ in await _rows(app))
    assert periods == sorted([period_of(utcnow()), "2099-01", "2099-01"])
    for reservation in (november, january, raised):
        await settle(meter, reservation, _entry(owner.id))
    # The closed leases were released with their calls; only the open one is left.
    assert await _rows(app) == [("2099-01", 32 * HOLD - COST)]


async def test_no_lease_near_the_end_of_a_budget(app: FastAPI, user: TestUser) -> None:
    """A lease takes at most an eighth of the budget and must fit whole under it: once it does
    not, each call holds on its own, exactly as without leases."""
    meter: UsageMeter = app.state.usage_meter
    owner = await _user(app, user, Decimal("0.5"))
    period = period_of(utcnow())
    capped = await meter.reserve(owner, HOLD)
    assert capped.lease is not None
    assert await _rows(app) == [(period, Decimal("0.0625"))]  # an eighth, not 32 holds (0.32)
    await settle(meter, capped, _entry(owner.id, cost=Decimal("0.44")))
    # Spent 0.44: the lease is used up (and released), and what is left of the budget (0.06) is
    # less than a lease.
    held = [await meter.reserve(owner, HOLD) for _ in range(3)]
    assert all(r.lease is None and r.id is not None for r in held)
    assert sorted(amount for _, amount in await _rows(app)) == [HOLD] * 3
    assert await _month(app, user, period) == (Decimal("0.44"), 3 * HOLD)


async def test_leases_closed_with_calls_in_flight_keep_only_what_those_calls_hold(
    database_url: str, tmp_path: Path, user: TestUser
) -> None:
    """Long calls, each started after the last one's lease closed: every closed lease gives its
    unused room back at once, so eight calls of 0.01 in flight hold 0.08 of a $1 budget, not
    eight leases' worth (which refused the ninth call, with nothing spent)."""
    settings = make_settings(database_url, tmp_path, budget_lease_seconds=0.2)
    async with running_app(settings) as (application, _):
        meter: UsageMeter = application.state.usage_meter
        owner = await _user(application, user, Decimal(1))
        period = period_of(utcnow())
        in_flight = []
        for _ in range(8):
            in_flight.append(await meter.reserve(owner, HOLD))
            await asyncio.sleep(0.3)  # its lease's time is up; the next call takes a new one
        await _until_rows(application, [(period, HOLD)] * 8)
        assert await _month(application, user, period) == (0, 8 * HOLD)
        ninth = await meter.reserve(owner, HOLD)
        for reservation in [*in_flight, ninth]:
            await settle(meter, reservation, _entry(owner.id))
        await _until_released(application)
        assert await _month(application, user, period) == (9 * COST, 0)


async def test_a_call_costing_more_than_its_hold_cannot_hide_spending(
    app: FastAPI, user: TestUser
) -> None:
    """A lease's call that costs more than it held takes only its hold off the lease (the rest
    is spent, as with a hold of its own): the lease's row never goes below zero, so spent plus
    reserved never understates what is committed, and later calls stop at the budget."""
    meter: UsageMeter = app.state.usage_meter
    owner = await _user(app, user, Decimal("0.5"))
    period = period_of(utcnow())
    costly = await meter.reserve(owner, HOLD)
    running = await meter.reserve(owner, HOLD)  # keeps the lease alive
    assert costly.lease is running.lease is not None
    await settle(meter, costly, _entry(owner.id, cost=Decimal("0.44")))
    assert await _rows(app) == [(period, Decimal("0.0625") - HOLD)]
    admitted = []
    for _ in range(60):
        try:
            admitted.append(await meter.reserve(owner, HOLD))
        except BudgetExceeded:
            break
    # 0.44 spent and 0.01 running: room for five more calls of 0.01, as without leases (the
    # spent lease closed and gave back all but the running call's hold).
    assert len(admitted) == 5
    for reservation in [running, *admitted]:
        await settle(meter, reservation, _entry(owner.id, cost=Decimal(0)))
    await _until_released(app)
    assert await _month(app, user, period) == (Decimal("0.44"), 0)


async def test_a_release_that_fails_is_tried_again(
    short_leases: FastAPI,
    user: TestUser,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The database refused a lease's release (locked, say): it is tried again a few seconds
    later, not left to the sweep an hour later with up to an eighth of the budget held."""
    meter: UsageMeter = short_leases.state.usage_meter
    owner = await _user(short_leases, user, Decimal(10))
    period = period_of(utcnow())
    monkeypatch.setattr(usage_meter, "LEASE_RELEASE_RETRY_SECONDS", 0.1)
    real = repository.take_reservations
    failures = []

    async def refuse_once(session: Any, ids: Any) -> Any:
        if ids and not failures:
            failures.append(ids)
            raise OperationalError("DELETE", {}, sqlite3.OperationalError("database is locked"))
        return await real(session, ids)

    monkeypatch.setattr(repository, "take_reservations", refuse_once)
    reservation = await meter.reserve(owner, HOLD)
    await settle(meter, reservation, _entry(owner.id))
    with caplog.at_level(logging.ERROR, logger="parley.usage.meter"):
        await _until_released(short_leases)  # its time (1 s), the failure, the retry
    assert failures
    assert "could not release a budget lease" in caplog.text
    assert await _month(short_leases, user, period) == (COST, 0)


async def test_a_lease_that_runs_short_is_followed_by_a_larger_one(
    database_url: str, tmp_path: Path, user: TestUser
) -> None:
    """Four calls' lease with ten in flight: the fifth call closes it and takes one for ten
    (twice the calls in flight), which serves the rest; the calls never hold one by one."""
    settings = make_settings(database_url, tmp_path, budget_lease_calls=4)
    async with running_app(settings) as (application, _):
        meter: UsageMeter = application.state.usage_meter
        owner = await _user(application, user, Decimal(100))
        held = [await meter.reserve(owner, HOLD) for _ in range(10)]
        leases = {id(reservation.lease) for reservation in held}
        assert None not in {reservation.lease for reservation in held}
        assert len(leases) == 2
        assert held[4].lease is not held[3].lease
        assert held[4].lease is not None
        assert held[4].lease.granted == 10 * HOLD  # 2 x (4 in flight + this one)
        for reservation in held:
            meter.settle(reservation, _entry(owner.id))
        await meter.flush()
