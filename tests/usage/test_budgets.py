"""Monthly budgets: a chat turn started with the budget spent is refused with 402 before anything
is stored; each turn holds an estimate while it runs, so concurrent turns overspend by at most
what was in flight; holds are released when turns end, or by the sweep when their worker died."""

from __future__ import annotations

import asyncio
import math
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from parley.accounts.models import User
from parley.core.db import utcnow
from parley.usage.models import BudgetReservation
from tests.fakes import Reply
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import TestUser
from tests.fixtures.apps import running_app
from tests.fixtures.budgets import budget_status, set_budget
from tests.fixtures.catalogs import OPENAI_MODEL
from tests.fixtures.chats import new_chat
from tests.fixtures.polling import wait_for
from tests.fixtures.settings import make_settings

Json = dict[str, Any]
OFFLINE_MODEL = "offline:parley"
# The fake OpenAI model costs $2 in and $8 out per million tokens; a turn holds its prompt plus
# BUDGET_RESERVE_OUTPUT_TOKENS (1024 by default) output tokens: a little over $0.0082.
HOLD_USD = 1024 * 8 / 1e6
# A reply costlier than its hold, so that no settled turn frees room for another.
COSTLY = Reply(text="Costly", input_tokens=10_000, output_tokens=2_000)
COSTLY_USD = (10_000 * 2 + 2_000 * 8) / 1e6


async def _send(api: httpx.AsyncClient, user: TestUser, chat_id: str) -> httpx.Response:
    return await api.post(
        f"/api/chats/{chat_id}/messages?stream=false",
        json={"content": "Tell me something"},
        headers=user.headers,
    )


async def test_a_spent_budget_refuses_the_turn_and_keeps_nothing(
    api: httpx.AsyncClient, upstream: FaultyOpenAI, user: TestUser, admin: TestUser
):
    chat_id = await new_chat(api, user, model_id=OFFLINE_MODEL)
    first = await _send(api, user, chat_id)
    assert first.status_code == 201
    assistant_id = first.json()["data"]["assistant_message"]["id"]
    await set_budget(api, admin, user, 0)

    response = await api.post(
        f"/api/chats/{chat_id}/messages",
        json={"content": "Once more"},
        headers={**user.headers, "Idempotency-Key": "budget-1"},
    )
    assert response.status_code == 402
    body = response.json()
    assert body["error"]["code"] == "budget_exceeded"
    assert "budget" in body["error"]["message"]
    assert response.headers["content-type"].startswith("application/json")
    regenerate = await api.post(
        f"/api/chats/{chat_id}/messages/{assistant_id}/regenerate", headers=user.headers
    )
    assert regenerate.status_code == 402

    messages = (await api.get(f"/api/chats/{chat_id}/messages", headers=user.headers)).json()
    assert len(messages["data"]["items"]) == 2  # the first exchange only
    chat = (await api.get(f"/api/chats/{chat_id}", headers=user.headers)).json()["data"]
    assert chat["current_leaf_id"] == assistant_id

    # Raised again, the budget lets the same request (and key) through as a new turn.
    await set_budget(api, admin, user, 5)
    retried = await api.post(
        f"/api/chats/{chat_id}/messages?stream=false",
        json={"content": "Once more"},
        headers={**user.headers, "Idempotency-Key": "budget-1"},
    )
    assert retried.status_code == 201, retried.text
    budget = await budget_status(api, user)
    assert budget["monthly_budget_usd"] == 5
    assert budget["reserved_usd"] == 0


async def test_the_turn_that_spends_the_budget_is_the_last(
    api: httpx.AsyncClient, upstream: FaultyOpenAI, user: TestUser, admin: TestUser
):
    await set_budget(api, admin, user, "0.02")
    upstream.script.push(COSTLY)
    chat_id = await new_chat(api, user, model_id=OPENAI_MODEL)
    assert (await _send(api, user, chat_id)).status_code == 201
    refused = await _send(api, user, chat_id)
    assert refused.status_code == 402
    assert len(upstream.script.completions("/chat/completions")) == 1  # no second model call
    budget = await budget_status(api, user)
    assert budget["spent_usd"] == pytest.approx(COSTLY_USD)
    assert budget["reserved_usd"] == 0
    assert budget["remaining_usd"] == 0


async def test_concurrent_turns_overspend_by_at_most_what_was_in_flight(
    api: httpx.AsyncClient, upstream: FaultyOpenAI, user: TestUser, admin: TestUser
):
    budget_usd = 0.02
    await set_budget(api, admin, user, str(budget_usd))
    upstream.script.default = COSTLY
    chats = [await new_chat(api, user, model_id=OPENAI_MODEL) for _ in range(12)]
    responses = await asyncio.gather(*(_send(api, user, chat_id) for chat_id in chats))
    statuses = sorted(response.status_code for response in responses)
    admitted = statuses.count(201)
    assert set(statuses) == {201, 402}, statuses
    # Each turn held a little more than HOLD_USD and cost more than that: once the holds in
    # flight cover what was left of the budget, every further turn is refused.
    assert 1 <= admitted <= math.ceil(budget_usd / HOLD_USD), statuses
    budget = await budget_status(api, user)
    assert budget["reserved_usd"] == pytest.approx(0, abs=1e-9)
    assert budget["spent_usd"] == pytest.approx(admitted * COSTLY_USD)
    assert budget["spent_usd"] - budget_usd <= admitted * COSTLY_USD


async def test_the_default_budget_applies_to_users_without_one(
    database_url: str, tmp_path: Path, make_user: Any
):
    settings = make_settings(database_url, tmp_path, default_monthly_budget_usd=Decimal(0))
    user: TestUser = await make_user()
    async with running_app(settings) as (_app, http):
        chat_id = await new_chat(http, user, model_id=OFFLINE_MODEL)
        response = await _send(http, user, chat_id)
        assert response.status_code == 402
        assert response.json()["error"]["code"] == "budget_exceeded"
        budget = await budget_status(http, user)
        assert budget["monthly_budget_usd"] == 0


async def test_holds_whose_turn_never_settled_are_released_by_the_sweep(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser, admin: TestUser
):
    await set_budget(client, admin, user, 1)
    meter = app.state.usage_meter
    async with app.state.database.sessionmaker() as session:
        row = await session.get(User, uuid.UUID(user.id))
        assert row is not None
    reservation = await meter.reserve(row, Decimal("0.75"))
    assert reservation.id is not None
    assert (await budget_status(client, user))["reserved_usd"] == pytest.approx(0.75)
    assert await meter.release_expired() == 0  # not expired yet

    async with app.state.database.sessionmaker() as session:
        await session.execute(
            update(BudgetReservation)
            .where(BudgetReservation.id == reservation.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()
    assert await meter.release_expired() == 1
    assert await meter.release_expired() == 0
    assert (await budget_status(client, user))["reserved_usd"] == pytest.approx(0)
    async with app.state.database.sessionmaker() as session:
        left = (await session.execute(select(BudgetReservation))).scalars().all()
    assert left == []


async def test_a_stopped_reply_settles_its_hold_and_is_recorded(
    api: httpx.AsyncClient, upstream: FaultyOpenAI, user: TestUser, admin: TestUser
):
    await set_budget(api, admin, user, 1)
    upstream.script.push(Reply(text=" ".join(["word"] * 200), chunk_delay=0.05))
    chat_id = await new_chat(api, user, model_id=OPENAI_MODEL)
    turn = asyncio.create_task(_send(api, user, chat_id))

    async def streaming() -> bool:
        """Text of the reply has been saved (and its hold is still on)."""
        page = await api.get(f"/api/chats/{chat_id}/messages", headers=user.headers)
        items = page.json()["data"]["items"]
        return bool(items and items[-1]["role"] == "assistant" and items[-1]["parts"])

    await wait_for(streaming)
    assert (await budget_status(api, user))["reserved_usd"] > 0
    assert (await api.post(f"/api/chats/{chat_id}/stop", headers=user.headers)).status_code == 204
    response = await turn
    assert response.status_code == 201
    assert response.json()["data"]["assistant_message"]["status"] == "cancelled"
    budget = await budget_status(api, user)
    assert budget["reserved_usd"] == 0
    records = (await api.get("/api/usage/records", headers=user.headers)).json()["data"]["items"]
    assert [record["status"] for record in records] == ["cancelled"]
    assert records[0]["output_tokens"] > 0
    assert budget["spent_usd"] == pytest.approx(records[0]["cost_usd"])
