"""`/v1` bounds every number it is sent and bills only what was used: a huge `max_tokens` (or any
other number past its range) is a 400 that stores nothing; a provider reporting absurd usage is
recorded within what the columns hold; a call the provider refused before producing anything is
recorded at no cost and releases its hold."""

from __future__ import annotations

import json
import math
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest
from tests.fakes import Reply
from tests.fakes.anthropic_upstream import FakeAnthropic
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import TestUser
from tests.fixtures.budgets import budget_status, set_budget
from tests.fixtures.catalogs import ANTHROPIC_MODEL, OFFLINE_MODEL, OPENAI_MODEL
from tests.fixtures.gateway import usage_records

from parley.usage.pricing import MAX_CALL_COST_USD, MAX_TOKENS

HI: list[Any] = [{"role": "user", "content": "hi"}]
# A budget too small for a worker's lease on it (an eighth of it is less than one call's hold of
# 100 output tokens), so that each call holds on its own and `reserved_usd` shows it.
NO_LEASE_BUDGET = Decimal("0.006")


async def _post_raw(raw: httpx.AsyncClient, api_key: str, body: str) -> httpx.Response:
    """A completion request whose body is sent as written (JSON numbers no SDK would send)."""
    return await raw.post(
        "/v1/chat/completions",
        content=body,
        headers={"Authorization": f"Bearer {api_key}", "content-type": "application/json"},
    )


@pytest.mark.parametrize("model", [OPENAI_MODEL, OFFLINE_MODEL])
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", "1" + "0" * 400),
        ("max_tokens", str(10**15)),
        ("max_completion_tokens", str(10**15)),
        ("max_tokens", "1e400"),
        ("seed", str(2**64)),
        ("temperature", "1e400"),
        ("top_p", "-1e400"),
        ("n", str(10**30)),
    ],
)
async def test_numbers_out_of_range_are_a_400_and_store_nothing(
    raw: httpx.AsyncClient,
    api_key: str,
    openai_fake: FaultyOpenAI,
    client: httpx.AsyncClient,
    admin: TestUser,
    user: TestUser,
    model: str,
    field: str,
    value: str,
) -> None:
    await set_budget(client, admin, user, Decimal(5))
    body = f'{{"model": "{model}", "messages": [{{"role": "user", "content": "hi"}}], '
    body += f'"{field}": {value}}}'
    response = await _post_raw(raw, api_key, body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == field
    assert openai_fake.script.completions("/chat/completions") == []
    assert await usage_records(client, user) == []
    status = await budget_status(client, user)
    assert status["reserved_usd"] == 0
    assert status["spent_usd"] == 0
    # The month is not spoilt: the next ordinary call goes through.
    ok = await _post_raw(raw, api_key, json.dumps({"model": model, "messages": HI}))
    assert ok.status_code == 200, ok.text


async def test_logit_bias_out_of_range_is_a_400(raw: httpx.AsyncClient, api_key: str) -> None:
    body = {"model": OPENAI_MODEL, "messages": HI, "logit_bias": {"50256": 1000}}
    response = await _post_raw(raw, api_key, json.dumps(body))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"].startswith("logit_bias")


async def test_the_largest_call_allowed_holds_and_settles_within_the_columns(
    oai: openai.AsyncOpenAI,
    openai_fake: FaultyOpenAI,
    client: httpx.AsyncClient,
    admin: TestUser,
    user: TestUser,
) -> None:
    """The top price an admin may set, the top `max_tokens`, and a provider reporting absurd
    usage: the hold fits, the record is written (clamped), and the reports stay numbers."""
    top = "999999.999999"
    response = await client.patch(
        f"/api/admin/models/{OPENAI_MODEL}",
        json={"input_price_per_mtok": top, "output_price_per_mtok": top},
        headers=admin.headers,
    )
    assert response.status_code == 200, response.text
    await set_budget(client, admin, user, Decimal("99999999.999999"))
    openai_fake.script.push(Reply(text="ok", input_tokens=10**12, output_tokens=10**12))
    completion = await oai.chat.completions.create(
        model=OPENAI_MODEL, messages=HI, max_tokens=1_000_000
    )
    assert completion.choices[0].message.content == "ok"
    [record] = await usage_records(client, user, expected=1)
    assert record["status"] == "complete"
    assert record["input_tokens"] == MAX_TOKENS
    assert record["output_tokens"] == MAX_TOKENS
    assert record["cost_usd"] == pytest.approx(float(MAX_CALL_COST_USD))
    report = (await client.get("/api/usage", headers=user.headers)).json()["data"]
    for value in (*report["totals"].values(), *report["budget"].values()):
        if isinstance(value, float):
            assert math.isfinite(value)
            assert value >= 0
    # (What stays reserved is the unused part of this worker's lease on the budget.)
    assert report["budget"]["spent_usd"] == pytest.approx(float(MAX_CALL_COST_USD))


@pytest.mark.parametrize("stream", [False, True])
async def test_a_call_the_provider_refused_costs_nothing(
    oai: openai.AsyncOpenAI,
    openai_fake: FaultyOpenAI,
    client: httpx.AsyncClient,
    admin: TestUser,
    user: TestUser,
    stream: bool,
) -> None:
    await set_budget(client, admin, user, NO_LEASE_BUDGET)
    openai_fake.script.push(Reply(status=500), Reply(status=500))
    with pytest.raises(openai.InternalServerError):
        await oai.chat.completions.create(
            model=OPENAI_MODEL, messages=HI, max_tokens=100, stream=stream
        )
    [record] = await usage_records(client, user, expected=1)
    assert record["status"] == "error"
    assert (record["input_tokens"], record["output_tokens"], record["cost_usd"]) == (0, 0, 0)
    status = await budget_status(client, user)
    assert status["spent_usd"] == 0
    assert status["reserved_usd"] == 0
    assert math.copysign(1.0, status["reserved_usd"]) == 1.0


async def test_a_translated_call_the_provider_refused_costs_nothing(
    oai: openai.AsyncOpenAI,
    anthropic_fake: FakeAnthropic,
    client: httpx.AsyncClient,
    admin: TestUser,
    user: TestUser,
) -> None:
    await set_budget(client, admin, user, NO_LEASE_BUDGET)
    anthropic_fake.script.push(*[Reply(status=500)] * 3)
    with pytest.raises(openai.APIStatusError):
        await oai.chat.completions.create(
            model=ANTHROPIC_MODEL, messages=HI, max_tokens=100, stream=True
        )
    [record] = await usage_records(client, user, expected=1)
    assert record["status"] == "error"
    assert (record["input_tokens"], record["output_tokens"], record["cost_usd"]) == (0, 0, 0)
    status = await budget_status(client, user)
    assert (status["spent_usd"], status["reserved_usd"]) == (0, 0)
