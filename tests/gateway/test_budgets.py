"""Budgets on `/v1`: a spent monthly budget is a 402 (`insufficient_quota`, `budget_exceeded`), and
concurrent calls at a nearly spent budget overspend it by at most what was in flight. Far from
the end of a budget, a worker's calls hold from one lease (the lease's own lifecycle is in
tests/usage/test_leases.py)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI
from sqlalchemy import select
from tests.fakes import Reply
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import TestUser
from tests.fixtures.budgets import budget_status, set_budget
from tests.fixtures.catalogs import OFFLINE_MODEL, OPENAI_MODEL
from tests.fixtures.gateway import usage_records

from parley.usage.leases import LEASE_BUDGET_SHARE
from parley.usage.models import BudgetReservation

# The fake answers 11 tokens in and 7 out; the model costs $2/M in and $8/M out.
CALL_COST = Decimal(11 * 2 + 7 * 8) / 1_000_000
MAX_TOKENS = 10
# What a call of one short message reserves: (1 character ~ 1 token + 4 per message) in,
# MAX_TOKENS out.
RESERVATION = Decimal(5 * 2 + MAX_TOKENS * 8) / 1_000_000
HI: list[Any] = [{"role": "user", "content": "h"}]


async def test_spent_budget_is_a_402(
    oai: openai.AsyncOpenAI,
    openai_fake: FaultyOpenAI,
    client: httpx.AsyncClient,
    admin: TestUser,
    user: TestUser,
) -> None:
    await set_budget(client, admin, user, CALL_COST * Decimal("1.5"))
    for _ in range(2):  # the second starts with budget left, and overspends it a little
        await oai.chat.completions.create(model=OPENAI_MODEL, messages=HI, max_tokens=MAX_TOKENS)
    requests_before = len(openai_fake.script.requests)
    for model in (OPENAI_MODEL, OFFLINE_MODEL):
        with pytest.raises(openai.APIStatusError) as caught:
            await oai.chat.completions.create(model=model, messages=HI, stream=True)
        assert caught.value.status_code == 402
        body = caught.value.body
        assert isinstance(body, dict)
        assert {key: body[key] for key in ("type", "param", "code")} == {
            "type": "insufficient_quota",
            "param": None,
            "code": "budget_exceeded",
        }
        assert "budget" in body["message"]
    assert len(openai_fake.script.requests) == requests_before  # the provider was not called
    assert len(await usage_records(client, user, expected=2)) == 2
    status = await budget_status(client, user)
    assert status["spent_usd"] == pytest.approx(float(CALL_COST * 2))
    assert status["reserved_usd"] == 0


async def test_budget_raised_lets_calls_through_again(
    oai: openai.AsyncOpenAI, client: httpx.AsyncClient, admin: TestUser, user: TestUser
) -> None:
    await set_budget(client, admin, user, Decimal(0))
    with pytest.raises(openai.APIStatusError) as caught:
        await oai.chat.completions.create(model=OPENAI_MODEL, messages=HI)
    assert caught.value.status_code == 402
    await set_budget(client, admin, user, Decimal(1))
    completion = await oai.chat.completions.create(model=OPENAI_MODEL, messages=HI)
    assert completion.choices[0].message.content


async def test_concurrent_calls_overspend_at_most_what_was_in_flight(
    oai: openai.AsyncOpenAI,
    openai_fake: FaultyOpenAI,
    client: httpx.AsyncClient,
    admin: TestUser,
    user: TestUser,
) -> None:
    budget = CALL_COST * 6
    await set_budget(client, admin, user, budget)
    for _ in range(3):  # half the budget spent
        await oai.chat.completions.create(model=OPENAI_MODEL, messages=HI, max_tokens=MAX_TOKENS)
    # Slow answers, so that the calls overlap: each holds its reservation while it runs.
    openai_fake.script.default = Reply(text="ok", delay=0.4)

    async def call(index: int) -> int:
        try:
            if index % 2:
                stream = await oai.chat.completions.create(
                    model=OPENAI_MODEL, messages=HI, max_tokens=MAX_TOKENS, stream=True
                )
                _ = [chunk async for chunk in stream]
            else:
                await oai.chat.completions.create(
                    model=OPENAI_MODEL, messages=HI, max_tokens=MAX_TOKENS
                )
        except openai.APIStatusError as exc:
            return exc.status_code
        return 200

    statuses = await asyncio.gather(*(call(index) for index in range(30)))
    admitted = statuses.count(200)
    assert statuses.count(402) + admitted == 30, statuses
    assert statuses.count(402) > 0
    assert admitted > 0
    # Calls are let in while what is spent and held is under the budget, each holding more
    # than it costs: what was spent can pass the budget by less than one call's hold.
    records = await usage_records(client, user, expected=3 + admitted)
    assert len(records) == 3 + admitted
    assert all(record["status"] == "complete" for record in records)
    spent = sum(Decimal(str(record["cost_usd"])) for record in records)
    assert spent == pytest.approx(CALL_COST * (3 + admitted))
    assert spent < budget + RESERVATION
    assert admitted <= int((budget - CALL_COST * 3) / RESERVATION) + 1
    status = await budget_status(client, user)
    assert status["reserved_usd"] == 0  # every hold was released
    assert status["spent_usd"] == pytest.approx(float(spent))


# What a lease holds for such calls: BUDGET_LEASE_CALLS (32) of their holds.
LEASE = RESERVATION * 32


async def reservations(app: FastAPI) -> list[Decimal]:
    """The amounts of every reservation row (holds and leases)."""
    async with app.state.database.sessionmaker() as session:
        rows = await session.execute(select(BudgetReservation.amount_usd))
        return [Decimal(str(amount)) for amount in rows.scalars()]


async def test_calls_far_from_the_budget_hold_from_one_lease(
    app: FastAPI,
    oai: openai.AsyncOpenAI,
    client: httpx.AsyncClient,
    admin: TestUser,
    user: TestUser,
) -> None:
    await set_budget(client, admin, user, Decimal(1))
    assert Decimal(1) * LEASE_BUDGET_SHARE > LEASE
    for _ in range(5):
        await oai.chat.completions.create(model=OPENAI_MODEL, messages=HI, max_tokens=MAX_TOKENS)
    await usage_records(client, user, expected=5)
    # One reservation, the lease, less what its five calls cost; spent plus reserved is the
    # lease, as if it had been spent whole.
    assert await reservations(app) == [pytest.approx(LEASE - CALL_COST * 5)]
    status = await budget_status(client, user)
    assert status["spent_usd"] == pytest.approx(float(CALL_COST * 5))
    assert status["reserved_usd"] == pytest.approx(float(LEASE - CALL_COST * 5))

    async def stream() -> None:
        chunks = await oai.chat.completions.create(
            model=OPENAI_MODEL, messages=HI, max_tokens=MAX_TOKENS, stream=True
        )
        _ = [chunk async for chunk in chunks]

    await asyncio.gather(*(stream() for _ in range(10)))
    await usage_records(client, user, expected=15)
    assert await reservations(app) == [pytest.approx(LEASE - CALL_COST * 15)]
    status = await budget_status(client, user)
    assert status["spent_usd"] == pytest.approx(float(CALL_COST * 15))


async def test_a_budget_lowered_under_a_lease_refuses_the_next_call(
    app: FastAPI,
    oai: openai.AsyncOpenAI,
    openai_fake: FaultyOpenAI,
    client: httpx.AsyncClient,
    admin: TestUser,
    user: TestUser,
) -> None:
    await set_budget(client, admin, user, Decimal(1))
    await oai.chat.completions.create(model=OPENAI_MODEL, messages=HI, max_tokens=MAX_TOKENS)
    await usage_records(client, user, expected=1)
    assert len(await reservations(app)) == 1  # the lease, with room for 31 more such calls
    await set_budget(client, admin, user, CALL_COST / 2)  # already spent
    requests_before = len(openai_fake.script.requests)
    with pytest.raises(openai.APIStatusError) as caught:
        await oai.chat.completions.create(model=OPENAI_MODEL, messages=HI, max_tokens=MAX_TOKENS)
    assert caught.value.status_code == 402
    assert len(openai_fake.script.requests) == requests_before
    # The lease was closed by the change, and with no call in flight it is released at once.
    for _ in range(100):
        if not await reservations(app):
            break
        await asyncio.sleep(0.05)
    assert await reservations(app) == []
    status = await budget_status(client, user)
    assert status["reserved_usd"] == 0
    assert status["spent_usd"] == pytest.approx(float(CALL_COST))
