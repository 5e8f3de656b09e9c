"""Keyset pagination: signed opaque cursors (round trip, forged, tampered, garbage, from another
sort) and the paging parameters over HTTP."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import UTC, datetime

import httpx
import pytest

from parley.accounts.models import ApiKey, User
from parley.core.errors import ValidationFailed
from parley.core.pagination import CursorCodec, SortKey
from tests.fixtures.accounts import TestUser

CREATED = SortKey(name="created_at", column=ApiKey.created_at, descending=True)
NAME = SortKey(name="name", column=ApiKey.name, descending=False, kind="str")
BUDGET = SortKey(
    name="budget", column=User.monthly_budget_usd, descending=False, kind="int", nullable=True
)
BY_ID = SortKey(name="user", column=ApiKey.user_id, descending=False, kind="uuid")


@pytest.fixture
def codec() -> CursorCodec:
    return CursorCodec("cursor-test-secret-" + "k" * 20)


def _unpack(cursor: str) -> tuple[bytes, bytes]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    payload, _, signature = raw.rpartition(b".")
    return payload, signature


def _pack(payload: bytes, signature: bytes) -> str:
    return base64.urlsafe_b64encode(payload + b"." + signature).decode().rstrip("=")


@pytest.mark.parametrize(
    ("sort", "value"),
    [
        (CREATED, datetime(2026, 5, 1, 8, 30, 0, 250000, tzinfo=UTC)),
        (NAME, "keys / with ünïcode"),
        (BUDGET, 42),
        (BUDGET, None),
        (BY_ID, uuid.uuid4()),
    ],
)
def test_round_trip(codec: CursorCodec, sort: SortKey, value: object) -> None:
    row_id = uuid.uuid4()
    cursor = codec.encode(sort, value, row_id)
    assert "=" not in cursor
    assert codec.decode(sort, cursor) == (value, row_id)


def test_cursor_is_opaque_but_not_secret_and_stable(codec: CursorCodec) -> None:
    row_id = uuid.uuid4()
    when = datetime(2026, 5, 1, tzinfo=UTC)
    assert codec.encode(CREATED, when, row_id) == codec.encode(CREATED, when, row_id)
    assert CursorCodec("cursor-test-secret-" + "k" * 20).decode(
        CREATED, codec.encode(CREATED, when, row_id)
    ) == (when, row_id)


def _assert_invalid_cursor(codec: CursorCodec, sort: SortKey, cursor: str) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        codec.decode(sort, cursor)
    assert caught.value.status_code == 422
    assert caught.value.details is not None
    assert caught.value.details[0]["field"] == "query.cursor"
    return caught.value


def test_cursor_signed_with_another_secret_is_refused(codec: CursorCodec) -> None:
    forged = CursorCodec("someone-elses-secret-" + "z" * 20).encode(NAME, "alpha", uuid.uuid4())
    _assert_invalid_cursor(codec, NAME, forged)


def test_tampered_cursor_is_refused(codec: CursorCodec) -> None:
    payload, signature = _unpack(codec.encode(NAME, "alpha", uuid.uuid4()))
    name, _value, row_id = json.loads(payload)
    changed = json.dumps([name, "omega", row_id], separators=(",", ":")).encode()
    _assert_invalid_cursor(codec, NAME, _pack(changed, signature))
    _assert_invalid_cursor(codec, NAME, _pack(payload, b"0" * len(signature)))
    _assert_invalid_cursor(codec, NAME, _pack(payload, b""))


@pytest.mark.parametrize(
    "garbage",
    ["garbage", "", "!!!!", "a", "=" * 8, "e30", base64.urlsafe_b64encode(b"[1,2,3]").decode()],
)
def test_garbage_cursor_is_refused(codec: CursorCodec, garbage: str) -> None:
    _assert_invalid_cursor(codec, NAME, garbage)


def test_well_signed_but_malformed_payloads_are_refused(codec: CursorCodec) -> None:
    for payload in (b"not json", b'["name"]', b'["name", "x", "not-a-uuid"]', b"{}"):
        _assert_invalid_cursor(codec, NAME, _pack(payload, codec._sign(payload).encode()))
    bad_time = b'["created_at", "yesterday", "' + str(uuid.uuid4()).encode() + b'"]'
    _assert_invalid_cursor(codec, CREATED, _pack(bad_time, codec._sign(bad_time).encode()))


def test_cursor_from_another_sort_is_refused(codec: CursorCodec) -> None:
    cursor = codec.encode(CREATED, datetime(2026, 1, 1, tzinfo=UTC), uuid.uuid4())
    error = _assert_invalid_cursor(codec, NAME, cursor)
    assert "sorted another way" in error.message


# -- over HTTP ------------------------------------------------------------------------------


async def test_pages_follow_the_cursor_without_gaps_or_repeats(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    for index in range(5):
        created = await client.post(
            "/api/users/me/api-keys", json={"name": f"key {index}"}, headers=user.headers
        )
        assert created.status_code == 201, created.text
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        response = await client.get("/api/users/me/api-keys", params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        assert set(page) == {"items", "next_cursor"}
        seen.extend(item["name"] for item in page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"key {index}" for index in reversed(range(5))]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"cursor": "garbage"}, "query.cursor"),
        ({"limit": "0"}, "query.limit"),
        ({"limit": "101"}, "query.limit"),
        ({"limit": "many"}, "query.limit"),
        ({"cursor": "x" * 1025}, "query.cursor"),
    ],
)
async def test_bad_paging_parameters_are_validation_errors(
    client: httpx.AsyncClient, user: TestUser, query: dict[str, str], field: str
) -> None:
    response = await client.get("/api/users/me/api-keys", params=query, headers=user.headers)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "validation_error"
    assert [item["field"] for item in error["details"]] == [field]


@pytest.mark.parametrize("limit", ["1", "100"])
async def test_limit_bounds_are_accepted(
    client: httpx.AsyncClient, user: TestUser, limit: str
) -> None:
    response = await client.get(
        "/api/users/me/api-keys", params={"limit": limit}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"] == {"items": [], "next_cursor": None}
