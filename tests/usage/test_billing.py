"""Chat replies are billed for what they used, exactly once, however they end: a turn the provider
refused before producing anything costs nothing; a reply stopped where no worker runs it is billed
once, though its generation goes on elsewhere and ends later; and the month's reservation never
reads as a negative number (not even `-0.0`). (A reply cut off by a killed worker and billed by
the sweep: tests/robustness/test_faults.py.)"""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from parley.usage.reservations import UsageEntry
from tests.fakes import Reply
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import TestUser
from tests.fixtures.budgets import budget_status, set_budget
from tests.fixtures.catalogs import OPENAI_MODEL
from tests.fixtures.chats import new_chat
from tests.fixtures.meters import settle
from tests.fixtures.polling import wait_for

Json = dict[str, Any]


async def _chat_records(api: httpx.AsyncClient, user: TestUser) -> list[Json]:
    response = await api.get(
        "/api/usage/records", params={"source": "chat", "limit": 100}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["data"]["items"]
    return items


async def test_a_turn_the_provider_refused_costs_nothing(
    api: httpx.AsyncClient, upstream: FaultyOpenAI, user: TestUser, admin: TestUser
) -> None:
    await set_budget(api, admin, user, "1")
    upstream.script.push(*(Reply(status=500) for _ in range(3)))
    chat_id = await new_chat(api, user, model_id=OPENAI_MODEL)
    response = await api.post(
        f"/api/chats/{chat_id}/messages?stream=false",
        json={"content": "Hello there"},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    reply = response.json()["data"]["assistant_message"]
    assert reply["status"] == "error"
    assert reply["usage"]["input_tokens"] == 0
    assert reply["usage"]["output_tokens"] == 0
    assert reply["usage"]["cost_usd"] == 0
    [record] = await _chat_records(api, user)
    assert record["status"] == "error"
    assert (record["input_tokens"], record["output_tokens"], record["cost_usd"]) == (0, 0, 0)
    budget = await budget_status(api, user)
    assert (budget["spent_usd"], budget["reserved_usd"]) == (0, 0)


async def test_a_reply_stopped_where_no_worker_runs_it_is_billed_once(
    upstream_app: FastAPI,
    api: httpx.AsyncClient,
    upstream: FaultyOpenAI,
    user: TestUser,
    admin: TestUser,
) -> None:
    """A stop that reaches a worker not running the reply (several workers, no Redis) ends and
    bills it from what was saved; the generation, which runs on and ends later on its own
    worker, neither bills it again nor loses its text. (The stop's worker is played here by the
    same manager's database path: `_mark_ended`, which is what such a stop runs.)"""
    await set_budget(api, admin, user, "1")
    upstream.script.push(Reply(text="one two three four five six seven eight", chunk_delay=0.15))
    chat_id = await new_chat(api, user, model_id=OPENAI_MODEL)
    manager = upstream_app.state.turn_runner
    turn = asyncio.create_task(
        api.post(
            f"/api/chats/{chat_id}/messages?stream=false",
            json={"content": "Count slowly"},
            headers=user.headers,
        )
    )

    async def streaming_reply() -> Any:
        page = await api.get(f"/api/chats/{chat_id}/messages", headers=user.headers)
        items = page.json()["data"]["items"]
        last = items[-1] if items else {}
        saved_text = any(part.get("text") for part in last.get("parts", []))
        return last["id"] if last.get("status") == "streaming" and saved_text else None

    message_id = await wait_for(streaming_reply, within=10)
    await manager._mark_ended(uuid.UUID(message_id), "cancelled")
    response = await turn
    assert response.status_code == 201, response.text
    messages = await api.get(f"/api/chats/{chat_id}/messages", headers=user.headers)
    reply = messages.json()["data"]["items"][-1]
    records = [r for r in await _chat_records(api, user) if r["message_id"] == reply["id"]]
    assert len(records) == 1, records
    assert records[0]["status"] == "cancelled"
    assert records[0]["output_tokens"] > 0
    budget = await budget_status(api, user)
    assert budget["reserved_usd"] == 0
    assert budget["spent_usd"] == pytest.approx(records[0]["cost_usd"])
    # The generation's own save kept the whole text.
    text = "".join(part["text"] for part in reply["parts"] if part["type"] == "text")
    assert text.startswith("one two")


@dataclass(frozen=True)
class _Holder:
    """A user's standing as the meter reads it (id and budget)."""

    id: uuid.UUID
    monthly_budget_usd: Decimal | None


async def test_reserved_never_reads_below_zero(
    upstream_app: FastAPI, api: httpx.AsyncClient, user: TestUser
) -> None:
    """Holds of 0.3 and 0.6 released in the order they were taken: on SQLite, whose sums are
    floating-point, the month's reservation lands a hair below zero, which read as `-0.0`."""
    meter = upstream_app.state.usage_meter
    holder = _Holder(uuid.UUID(user.id), Decimal(100))
    reservations = []
    for amount in ("0.3", "0.6"):
        async with upstream_app.state.database.sessionmaker() as session:
            reservations.append(await meter.reserve_in(session, holder, Decimal(amount)))
            await session.commit()
    for reservation in reservations:
        await settle(
            meter,
            reservation,
            UsageEntry(
                user_id=holder.id,
                api_key_id=None,
                source="v1",
                model_id=OPENAI_MODEL,
                input_tokens=0,
                output_tokens=0,
                cost_usd=Decimal(0),
                latency_ms=1,
                status="complete",
            ),
        )
    budget = await budget_status(api, user)
    assert budget["reserved_usd"] == 0
    assert math.copysign(1.0, budget["reserved_usd"]) == 1.0
    assert math.copysign(1.0, budget["spent_usd"]) == 1.0
