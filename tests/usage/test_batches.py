"""`/v1` calls that start or end together hold and settle in one transaction (group commit); a
batch with one entry the database refuses still writes the others, one by one. (The budget
arithmetic of many concurrent calls is checked through the API in tests/gateway/test_budgets.py.)
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError, OperationalError

from parley.accounts.models import User
from parley.core.db import Database, build_engine
from parley.core.errors import BudgetExceeded
from parley.settings import Settings
from parley.usage.meter import UsageMeter
from parley.usage.reservations import Reservation, UsageEntry
from tests.fixtures.accounts import TestUser
from tests.fixtures.meters import settle


def _entry(user_id: uuid.UUID, model_id: str, cost: str = "0.25") -> UsageEntry:
    return UsageEntry(
        user_id=user_id,
        api_key_id=None,
        source="v1",
        model_id=model_id,
        input_tokens=10,
        output_tokens=20,
        cost_usd=Decimal(cost),
        latency_ms=5,
        status="complete",
    )


async def test_settles_ending_together_share_a_batch(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    meter: UsageMeter = app.state.usage_meter
    owner = uuid.UUID(user.id)
    await asyncio.gather(*(settle(meter, None, _entry(owner, f"m-{n}")) for n in range(25)))
    records = (
        await client.get("/api/usage/records", params={"limit": 100}, headers=user.headers)
    ).json()["data"]["items"]
    assert sorted(record["model_id"] for record in records) == sorted(f"m-{n}" for n in range(25))
    usage = (await client.get("/api/usage", headers=user.headers)).json()["data"]
    assert Decimal(str(usage["budget"]["spent_usd"])) == Decimal("6.25")


async def test_one_refused_entry_does_not_lose_the_rest_of_its_batch(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser, caplog: pytest.LogCaptureFixture
) -> None:
    meter: UsageMeter = app.state.usage_meter
    nobody = uuid.uuid4()  # no such user: the foreign keys refuse its record
    with caplog.at_level(logging.WARNING, logger="parley.usage.meter"):
        await asyncio.gather(
            settle(meter, None, _entry(uuid.UUID(user.id), "kept-1")),
            settle(meter, None, _entry(nobody, "refused")),
            settle(meter, None, _entry(uuid.UUID(user.id), "kept-2")),
        )
    messages = [record.getMessage() for record in caplog.records]
    assert "a batch of 3 settles failed; writing one by one" in messages
    assert messages.count("could not record usage") == 1
    records = (await client.get("/api/usage/records", headers=user.headers)).json()["data"]
    assert sorted(record["model_id"] for record in records["items"]) == ["kept-1", "kept-2"]


async def test_one_refused_hold_does_not_fail_the_rest_of_its_batch(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser, caplog: pytest.LogCaptureFixture
) -> None:
    meter: UsageMeter = app.state.usage_meter
    owner = User(id=uuid.UUID(user.id), monthly_budget_usd=Decimal(10))
    nobody = User(id=uuid.uuid4(), monthly_budget_usd=Decimal(10))  # no such row
    with caplog.at_level(logging.WARNING, logger="parley.usage.meter"):
        outcomes = await asyncio.gather(
            meter.reserve(owner, Decimal("1.5")),
            meter.reserve(nobody, Decimal("1.5")),
            meter.reserve(owner, Decimal("2")),
            return_exceptions=True,
        )
    assert "a batch of 3 holds failed; holding one by one" in caplog.text
    kept = [outcome for outcome in outcomes if isinstance(outcome, Reservation)]
    assert [reservation.amount_usd for reservation in kept] == [Decimal("1.5"), Decimal("2")]
    assert isinstance(outcomes[1], IntegrityError)
    budget = (await client.get("/api/usage", headers=user.headers)).json()["data"]["budget"]
    assert Decimal(str(budget["reserved_usd"])) == Decimal("3.5")
    for reservation in kept:
        await settle(meter, reservation, _entry(reservation.user_id, "held", cost="0"))
    budget = (await client.get("/api/usage", headers=user.headers)).json()["data"]["budget"]
    assert budget["reserved_usd"] == 0


async def test_a_database_that_fails_loses_the_batch_at_once(
    settings: Settings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No one-by-one retries when the database itself fails (down, locked): each would wait out
    its own timeout while every later call waits behind it."""
    unreachable = Database(build_engine(settings, f"sqlite+aiosqlite:///{tmp_path}/no/such.db"))
    meter = UsageMeter(unreachable, settings)
    holder = User(id=uuid.uuid4(), monthly_budget_usd=Decimal(10))
    try:
        with caplog.at_level(logging.WARNING, logger="parley.usage.meter"):
            await asyncio.gather(*(settle(meter, None, _entry(holder.id, "x")) for _ in range(3)))
            holds = await asyncio.gather(
                *(meter.reserve(holder, Decimal(1)) for _ in range(3)), return_exceptions=True
            )
    finally:
        await unreachable.dispose()
    messages = [record.getMessage() for record in caplog.records]
    assert messages.count("could not record usage") == 3
    assert not [message for message in messages if "one by one" in message]
    assert all(isinstance(outcome, OperationalError) for outcome in holds), holds


async def test_a_settle_counts_in_the_month_its_call_ended(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    meter: UsageMeter = app.state.usage_meter
    ended = datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC)  # settled a moment after midnight
    entry = _entry(uuid.UUID(user.id), "late")
    await settle(meter, None, dataclasses.replace(entry, at=ended))
    records = (await client.get("/api/usage/records", headers=user.headers)).json()["data"]
    assert [record["created_at"] for record in records["items"]] == ["2026-10-31T23:59:59Z"]
    usage = (await client.get("/api/usage", headers=user.headers)).json()["data"]
    assert usage["budget"]["spent_usd"] == 0  # this month's: the cost went to October


async def test_holds_of_a_batch_keep_each_users_order_and_reach_their_callers(
    app: FastAPI, user: TestUser, other_user: TestUser
) -> None:
    """A batch takes holds user by user (one lock order for every worker), each user's in the
    order they came: the third of `first`'s holds finds the budget held and is refused."""
    meter: UsageMeter = app.state.usage_meter
    first = User(id=uuid.UUID(user.id), monthly_budget_usd=Decimal(10))
    second = User(id=uuid.UUID(other_user.id), monthly_budget_usd=Decimal(10))
    outcomes = await asyncio.gather(
        meter.reserve(first, Decimal(6)),
        meter.reserve(second, Decimal(2)),
        meter.reserve(first, Decimal(5)),
        meter.reserve(second, Decimal(3)),
        meter.reserve(first, Decimal(1)),
        return_exceptions=True,
    )
    held = [
        (outcome.user_id, outcome.amount_usd) if isinstance(outcome, Reservation) else outcome
        for outcome in outcomes
    ]
    assert held[:4] == [
        (first.id, Decimal(6)),
        (second.id, Decimal(2)),
        (first.id, Decimal(5)),
        (second.id, Decimal(3)),
    ]
    assert isinstance(held[4], BudgetExceeded)
