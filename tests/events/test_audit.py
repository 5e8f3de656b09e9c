"""The audit log, end to end through the public API on a real database: sign-ins, a guest's
upgrade, password changes and API keys (never their secret), tool calls over MCP (the SDK client
on a live server) and by the assistant (a scripted model), each written by the `events.audit`
consumer running as `events.consume` jobs of a real worker; isolation between users and the
admin's view; paging, filters and bad input; one record for an event consumed twice; no record
of a change that rolled back; bounded arguments; a failure to record never breaks a call."""

from __future__ import annotations

import dataclasses
import json
import logging
import uuid
from datetime import timedelta
from typing import Any

import httpx
import mcp.types as types
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from sqlalchemy import func, select, update

from parley.accounts.models import User
from parley.accounts.service import AccountService
from parley.background import PURGE_EVENTS_JOB, job_kinds
from parley.core.db import new_id, utcnow
from parley.core.errors import Conflict, InternalError
from parley.events.audit import AUDIT_CONSUMER, AUDITED_TYPES, audit_consumer
from parley.events.consumers import Consumer, consume, parse_event
from parley.events.models import AuditRecord, HandledEvent, OutboxEvent
from parley.events.repository import first_id_at
from parley.jobs.worker import Worker
from parley.settings import Settings
from parley.tools.builtin import builtin_registry
from parley.tools.events import TOOL_CALLED, ToolAudit
from parley.tools.registry import ToolContext, ToolDefinition, ToolRegistry
from tests.fakes import Reply, ToolCall
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import PASSWORD, TestUser, create_api_key
from tests.fixtures.chats import new_chat
from tests.fixtures.errors import assert_error
from tests.fixtures.mcp import mcp_client, refused_by_server
from tests.fixtures.polling import wait_for
from tests.fixtures.servers import LiveServer
from tests.fixtures.tools import tool_context
from tests.jobs.helpers import enqueue_one, status_is

RECORD_FIELDS = {"id", "action", "user_id", "subject", "time", "details"}


async def audit_of(
    http: httpx.AsyncClient, who: TestUser, path: str = "/api/audit", **params: Any
) -> list[dict[str, Any]]:
    response = await http.get(path, params={"limit": 100, **params}, headers=who.headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["data"]["items"]
    for item in items:
        assert set(item) == RECORD_FIELDS
    return items


async def wait_for_records(
    http: httpx.AsyncClient,
    who: TestUser,
    action: str,
    count: int = 1,
    path: str = "/api/audit",
    **params: Any,
) -> list[dict[str, Any]]:
    """`who`'s records of `action` once there are `count` of them (the consumer runs as jobs)."""

    async def enough() -> list[dict[str, Any]] | None:
        items = await audit_of(http, who, path, action=action, **params)
        return items if len(items) >= count else None

    found: list[dict[str, Any]] = await wait_for(enough, within=20)
    return found


async def events_of(app: FastAPI, event_type: str) -> list[OutboxEvent]:
    async with app.state.database.sessionmaker() as session:
        rows = await session.execute(
            select(OutboxEvent).where(OutboxEvent.type == event_type).order_by(OutboxEvent.id)
        )
        return list(rows.scalars().all())


async def login(client: httpx.AsyncClient, who: TestUser) -> dict[str, Any]:
    response = await client.post(
        "/api/auth/login", json={"email": who.email, "password": who.password}
    )
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


# -- accounts ---------------------------------------------------------------------------------


async def test_sign_ins_upgrades_and_password_changes_are_recorded(
    client: httpx.AsyncClient, user: TestUser, worker: Worker
) -> None:
    signed = await login(client, user)
    await client.post(
        "/api/auth/refresh", json={"refresh_token": signed["tokens"]["refresh_token"]}
    )
    # A failed sign-in changes nothing, and tells nothing.
    wrong = await client.post("/api/auth/login", json={"email": user.email, "password": "nope" * 3})
    assert wrong.status_code == 401
    changed = await client.post(
        "/api/users/me/password",
        json={"current_password": PASSWORD, "new_password": "a brand new password"},
        headers=user.headers,
    )
    assert changed.status_code == 200, changed.text

    [sign_in] = await wait_for_records(client, user, "account.signed_in")
    assert sign_in["user_id"] == user.id
    assert sign_in["subject"] == f"users/{user.id}"
    assert sign_in["details"]["method"] == "password"
    assert sign_in["details"]["client_ip"] == "127.0.0.1"
    [password] = await wait_for_records(client, user, "account.password_changed")
    assert password["details"] == {"user_id": user.id}
    records = await audit_of(client, user)
    # Newest first, from the sign-up on; the refresh and the failed sign-in wrote nothing.
    assert [record["action"] for record in records] == [
        "account.password_changed",
        "account.signed_in",
        "account.registered",
    ]
    assert records[-1]["details"] == {
        "user_id": user.id,
        "email": user.email,
        "client_ip": "127.0.0.1",
    }
    assert "a brand new password" not in json.dumps(records)

    guest = (await client.post("/api/auth/guest")).json()["data"]
    as_guest = TestUser(
        id=guest["user"]["id"],
        email=None,
        password=None,
        access_token=guest["tokens"]["access_token"],
        refresh_token=guest["tokens"]["refresh_token"],
    )
    [started] = await wait_for_records(client, as_guest, "account.signed_in")
    assert started["details"]["method"] == "guest"
    email = f"upgraded-{uuid.uuid4().hex[:8]}@example.com"
    upgraded = await client.post(
        "/api/auth/upgrade", json={"email": email, "password": PASSWORD}, headers=as_guest.headers
    )
    assert upgraded.status_code == 200, upgraded.text
    [record] = await wait_for_records(client, as_guest, "account.upgraded")
    assert record["details"] == {"user_id": as_guest.id, "email": email}


async def test_api_keys_are_recorded_without_their_secret(
    client: httpx.AsyncClient, user: TestUser, worker: Worker
) -> None:
    expires = (utcnow() + timedelta(days=30)).isoformat()
    created = await client.post(
        "/api/users/me/api-keys",
        json={"name": "ci runner", "expires_at": expires},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    key = created.json()["data"]
    revoked = await client.delete(f"/api/users/me/api-keys/{key['id']}", headers=user.headers)
    assert revoked.status_code == 204

    [made] = await wait_for_records(client, user, "api_key.created")
    [gone] = await wait_for_records(client, user, "api_key.revoked")
    for record in (made, gone):
        assert record["subject"] == f"api_keys/{key['id']}"
        assert record["details"]["id"] == key["id"]
        assert record["details"]["name"] == "ci runner"
        assert record["details"]["prefix"] == key["prefix"]
        assert record["details"]["expires_at"] is not None
    assert set(made["details"]) == {"id", "name", "prefix", "created_at", "expires_at"}
    assert gone["details"]["revoked_at"]
    everything = json.dumps(await audit_of(client, user))
    assert key["key"] not in everything
    assert key["key"][len(key["prefix"]) :] not in everything


# -- tool calls -------------------------------------------------------------------------------


async def test_tool_calls_over_mcp_are_recorded_with_their_arguments(
    live_server: LiveServer, client: httpx.AsyncClient, user: TestUser, worker: Worker
) -> None:
    missing = str(uuid.uuid4())
    async with mcp_client(f"{live_server.url}/mcp", await create_api_key(client, user)) as mcp:
        added = await mcp.call_tool("add_task", {"title": "Plan the trip", "tags": ["travel"]})
        assert not added.is_error
        failed = await mcp.call_tool("get_task", {"task_id": missing})
        assert failed.is_error
        invalid = await mcp.call_tool("add_task", {"title": ""})
        assert invalid.is_error

    records = await wait_for_records(client, user, "tool.called", count=3)
    # Newest first.
    bad, not_found, ok = records
    assert ok["subject"] == "tools/add_task"
    assert ok["user_id"] == user.id
    details = ok["details"]
    assert details["surface"] == "mcp"
    assert details["tool"] == "add_task"
    assert details["status"] == "ok"
    assert details["error"] is None
    assert details["arguments"]["title"] == "Plan the trip"
    assert details["arguments"]["tags"] == ["travel"]
    assert details["chat_id"] is None
    assert details["duration_ms"] >= 0
    assert not_found["details"]["tool"] == "get_task"
    assert not_found["details"]["arguments"] == {"task_id": missing}
    assert not_found["details"]["status"] == "error"
    assert not_found["details"]["error"]["code"] == "not_found"
    assert bad["details"]["status"] == "error"
    assert bad["details"]["error"]["code"] == "invalid_arguments"
    assert bad["details"]["arguments"] == {"title": ""}  # as sent: they did not validate
    page = await audit_of(client, user, action="tool.called", limit=1)
    assert [record["id"] for record in page] == [bad["id"]]


async def test_tool_calls_by_the_assistant_are_recorded_with_their_reply(
    api: httpx.AsyncClient, upstream: FaultyOpenAI, user: TestUser, worker: Worker
) -> None:
    upstream.script.push(
        Reply(tool_calls=(ToolCall("add_task", {"title": "Buy milk"}, id="call_a"),)),
        Reply(tool_calls=(ToolCall("complete_task", {"task_id": str(uuid.uuid4())}, id="b"),)),
        Reply(text="Added it."),
    )
    chat_id = await new_chat(api, user)
    response = await api.post(
        f"/api/chats/{chat_id}/messages", json={"content": "Add milk"}, headers=user.headers
    )
    assert response.status_code == 200, response.text
    messages = (await api.get(f"/api/chats/{chat_id}/messages", headers=user.headers)).json()
    reply = messages["data"]["items"][-1]
    assert reply["role"] == "assistant"

    failed, added = await wait_for_records(api, user, "tool.called", count=2)
    for record in (failed, added):
        assert record["details"]["surface"] == "assistant"
        assert record["details"]["chat_id"] == chat_id
        assert record["details"]["message_id"] == reply["id"]
    assert added["details"]["tool"] == "add_task"
    assert added["details"]["status"] == "ok"
    assert added["details"]["arguments"]["title"] == "Buy milk"
    assert added["details"]["arguments"]["priority"] == "medium"  # validated: defaults filled
    assert failed["details"]["tool"] == "complete_task"
    assert failed["details"]["status"] == "error"
    assert failed["details"]["error"]["code"] == "not_found"


async def test_recorded_arguments_are_bounded(app: FastAPI, user: TestUser) -> None:
    registry = builtin_registry()
    context = await tool_context(app, user, ToolAudit(surface="mcp"))
    huge = "x" * 200_000
    result = await registry.call("add_task", {"title": huge, "description": huge}, context)
    assert result.is_error  # too long a title: the raw arguments are recorded, bounded
    listed = await registry.call("list_tasks", {"tag": "home"}, context)
    assert not listed.is_error
    [first, second] = await events_of(app, TOOL_CALLED)
    for event in (first, second):
        assert len(json.dumps(event.data["arguments"], ensure_ascii=False).encode()) <= 8 * 1024
        assert event.subject.startswith("tools/")
    assert first.data["arguments"]["title"] == "x" * 1000 + "…"
    assert first.data["status"] == "error"
    assert second.data["status"] == "ok"
    assert second.data["arguments"]["tag"] == "home"
    # Without an audit (Parley's own calls, tests) nothing is recorded.
    quiet = await tool_context(app, user, None)
    await registry.call("list_tasks", {}, quiet)
    assert len(await events_of(app, TOOL_CALLED)) == 2


class _Nothing(BaseModel):
    pass


async def _answer(context: ToolContext, args: _Nothing) -> BaseModel:
    return _Nothing()


async def _break(context: ToolContext, args: _Nothing) -> BaseModel:
    raise InternalError()


def _sessionmaker_that_fails() -> Any:
    raise ConnectionError("the database is away")


async def test_a_failure_to_record_never_breaks_the_call(
    app: FastAPI, user: TestUser, caplog: pytest.LogCaptureFixture
) -> None:
    registry = ToolRegistry.of(
        [
            ToolDefinition("answer", "Answers.", _Nothing, _answer, _Nothing, read_only=True),
            ToolDefinition("broken", "Fails.", _Nothing, _break, _Nothing),
        ]
    )
    context = await tool_context(app, user, ToolAudit(surface="assistant"))
    # A call that fails on our side is recorded as an error, then raised as before.
    with pytest.raises(InternalError):
        await registry.call("broken", {}, context)
    [event] = await events_of(app, TOOL_CALLED)
    assert event.data["status"] == "error"
    assert event.data["error"]["code"] == "internal_error"

    unrecordable = ToolContext(
        user=context.user,
        sessionmaker=_sessionmaker_that_fails,  # type: ignore[arg-type]
        cursor_codec=context.cursor_codec,
        audit=context.audit,
    )
    with caplog.at_level(logging.ERROR, logger="parley.tools.events"):
        result = await registry.call("answer", {}, unrecordable)
    assert not result.is_error
    assert "could not record the call of tool answer" in caplog.text
    assert len(await events_of(app, TOOL_CALLED)) == 1


# -- who sees what ----------------------------------------------------------------------------


async def test_users_see_their_own_records_and_admins_every_one(
    client: httpx.AsyncClient,
    user: TestUser,
    other_user: TestUser,
    admin: TestUser,
    worker: Worker,
) -> None:
    await login(client, user)
    await login(client, other_user)
    [mine] = await wait_for_records(client, user, "account.signed_in")
    [theirs] = await wait_for_records(client, other_user, "account.signed_in")
    [my_sign_up] = await wait_for_records(client, user, "account.registered")
    [their_sign_up] = await wait_for_records(client, other_user, "account.registered")
    [admin_sign_up] = await wait_for_records(client, admin, "account.registered")
    their_log = [record["id"] for record in await audit_of(client, other_user)]
    assert their_log == [theirs["id"], their_sign_up["id"]]
    my_log = [record["id"] for record in await audit_of(client, user)]
    assert my_log == [mine["id"], my_sign_up["id"]]

    every = await audit_of(client, admin, "/api/admin/audit")
    assert set(my_log + their_log) <= {record["id"] for record in every}
    only = await audit_of(client, admin, "/api/admin/audit", user_id=user.id)
    assert [record["id"] for record in only] == my_log
    assert await audit_of(client, admin, "/api/admin/audit", user_id=str(uuid.uuid4())) == []
    # The admin's own log: their sign-up, nothing of the others'.
    assert [record["id"] for record in await audit_of(client, admin)] == [admin_sign_up["id"]]

    refused = await client.get("/api/admin/audit", headers=user.headers)
    assert_error(refused, 403, "forbidden")
    assert_error(await client.get("/api/audit"), 401, "not_authenticated")
    assert_error(await client.get("/api/admin/audit"), 401, "not_authenticated")
    bad_token = {"Authorization": "Bearer not-a-token"}
    assert_error(await client.get("/api/audit", headers=bad_token), 401, "invalid_token")


# -- the consumer -----------------------------------------------------------------------------


def an_event(user_id: str | None, **overrides: Any) -> dict[str, Any]:
    event = {
        "specversion": "1.0",
        "id": str(new_id()),
        "source": "parley",
        "type": "parley.account.signed_in.v1",
        "subject": f"users/{user_id}",
        "time": utcnow().isoformat(),
        "datacontenttype": "application/json",
        "parleyuser": user_id,
        "data": {"user_id": user_id, "method": "password", "client_ip": "10.0.0.1"},
    }
    event.update(overrides)
    return event


async def count_records(app: FastAPI) -> int:
    async with app.state.database.sessionmaker() as session:
        return int(await session.scalar(select(func.count()).select_from(AuditRecord)) or 0)


async def test_an_event_consumed_twice_is_recorded_once(app: FastAPI, user: TestUser) -> None:
    database = app.state.database
    consumer = audit_consumer()
    assert consumer.name == AUDIT_CONSUMER
    event = parse_event(an_event(user.id))
    assert await consume(database, consumer, event) is True
    assert await consume(database, consumer, event) is False  # handled already
    # Even another consumer writing the same log cannot write a second line of it.
    copy = Consumer("events.audit.copy", AUDITED_TYPES, consumer.handle)
    assert await consume(database, copy, event) is True
    assert await count_records(app) == 1
    async with database.sessionmaker() as session:
        record = (await session.execute(select(AuditRecord))).scalar_one()
    assert record.event_id == uuid.UUID(event.id)
    assert record.action == "account.signed_in"
    # The record's id is of the event's millisecond: the log sorts as the events happened.
    assert record.id.int >> 80 == uuid.UUID(event.id).int >> 80
    # A type it does not handle has no effect; nor does a user deleted since (kept, unnamed).
    other = parse_event(an_event(user.id, type="parley.task.created.v1"))
    assert await consume(database, consumer, other) is False
    assert await consume(database, consumer, parse_event(an_event(str(uuid.uuid4())))) is True
    async with database.sessionmaker() as session:
        orphans = await session.scalar(
            select(func.count()).select_from(AuditRecord).where(AuditRecord.user_id.is_(None))
        )
    assert orphans == 1


async def test_the_hourly_purge_ages_out_audit_lines_and_handled_records(
    app: FastAPI, user: TestUser
) -> None:
    """`events.purge` deletes the audit lines older than AUDIT_RETENTION_DAYS (365 by default)
    and the consumers' handled-event records older than EVENTS_RETENTION_DAYS, and keeps the
    rest; AUDIT_RETENTION_DAYS=0 keeps every line."""
    database = app.state.database
    consumer = audit_consumer()
    long_ago = utcnow() - timedelta(days=400)
    old = parse_event(an_event(user.id, id=str(first_id_at(long_ago)), time=long_ago.isoformat()))
    recent = parse_event(an_event(user.id))
    for event in (old, recent):
        assert await consume(database, consumer, event) is True
    async with database.sessionmaker() as session:
        # The old event was handled long ago too.
        await session.execute(
            update(HandledEvent)
            .where(HandledEvent.event_id == uuid.UUID(old.id))
            .values(created_at=long_ago)
        )
        await session.commit()

    async def purge(settings: Settings) -> None:
        """Run one `events.purge` job, queued and run by a worker of these settings."""
        runtime = dataclasses.replace(app.state.runtime, settings=settings)
        worker = Worker(database, job_kinds(runtime), concurrency=1, poll_seconds=0.05)
        job_id = await enqueue_one(database, PURGE_EVENTS_JOB)
        worker.start()
        try:
            job = await wait_for(status_is(database, job_id, "succeeded", "failed"), within=20)
        finally:
            await worker.stop(grace_seconds=0)
        assert job.status == "succeeded", job.last_error

    await purge(app.state.settings.model_copy(update={"audit_retention_days": 0}))
    assert await count_records(app) == 2  # 0 keeps every line
    await purge(app.state.settings)
    async with database.sessionmaker() as session:
        lines = (await session.execute(select(AuditRecord.event_id))).scalars().all()
        handled = (await session.execute(select(HandledEvent.event_id))).scalars().all()
    assert lines == [uuid.UUID(recent.id)]
    assert uuid.UUID(old.id) not in handled
    assert uuid.UUID(recent.id) in handled


async def test_huge_details_are_bounded(app: FastAPI, user: TestUser) -> None:
    event = an_event(user.id, data={"blob": "b" * 100_000, "many": list(range(10_000))})
    await consume(app.state.database, audit_consumer(), parse_event(event))
    async with app.state.database.sessionmaker() as session:
        record = (await session.execute(select(AuditRecord))).scalar_one()
    assert len(json.dumps(record.details, ensure_ascii=False).encode()) <= 16 * 1024
    assert record.details["blob"].endswith("…")


async def test_a_change_that_rolls_back_writes_no_event(app: FastAPI, user: TestUser) -> None:
    def accounts_over(session: Any) -> AccountService:
        return AccountService(
            session, app.state.settings, app.state.rate_limiter, app.state.cursor_codec
        )

    async with app.state.database.sessionmaker() as session:
        guest, _ = await accounts_over(session).create_guest(client_ip="127.0.0.1")
    async with app.state.database.sessionmaker() as session:
        accounts = accounts_over(session)
        row = await session.get(User, guest.id)
        assert row is not None

        async def free(email: str) -> None:  # as if the other sign-up won the race meanwhile
            return None

        accounts._ensure_email_free = free  # type: ignore[method-assign]
        with pytest.raises(Conflict):
            await accounts.upgrade(row, email=user.email or "", password=PASSWORD)
    assert await events_of(app, "parley.account.upgraded.v1") == []
    async with app.state.database.sessionmaker() as session:
        still = await session.get(User, guest.id)
        assert still is not None
        assert still.is_guest


# -- paging and filters -----------------------------------------------------------------------


async def test_paging_filters_and_bad_input(
    app: FastAPI, client: httpx.AsyncClient, user: TestUser
) -> None:
    consumer = audit_consumer()
    start = utcnow()
    ids = []
    for index in range(5):
        kind = "parley.tool.called.v1" if index % 2 else "parley.account.signed_in.v1"
        event = an_event(user.id, type=kind, time=(start + timedelta(seconds=index)).isoformat())
        await consume(app.state.database, consumer, parse_event(event))
        ids.append(event["id"])

    seen: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/audit", params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        assert len(page["items"]) <= 2
        seen.extend(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 5
    times = [record["time"] for record in seen]
    assert times == sorted(times, reverse=True)  # newest first
    assert len({record["id"] for record in seen}) == 5

    tools = await audit_of(client, user, action="tool.called")
    assert len(tools) == 2
    assert {record["action"] for record in tools} == {"tool.called"}
    later = await audit_of(client, user, since=(start + timedelta(seconds=3)).isoformat())
    assert len(later) == 2
    earlier = await audit_of(client, user, until=(start + timedelta(seconds=1)).isoformat())
    assert len(earlier) == 1
    assert await audit_of(client, user, action="account.nothing") == []

    for params in (
        {"limit": 0},
        {"limit": 101},
        {"limit": "lots"},
        {"cursor": "garbage"},
        {"action": "Not An Action"},
        {"action": "x" * 101},
        {"since": "yesterday"},
        {"until": "2030-01-01T00:00:00"},  # no zone
    ):
        response = await client.get("/api/audit", params=params, headers=user.headers)
        assert_error(response, 422, "validation_error")


async def test_the_new_event_types_publish_their_schemas(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/events/schemas")
    assert response.status_code == 200
    published = {item["type"]: item for item in response.json()["data"]["items"]}
    assert set(published) >= AUDITED_TYPES
    tool = published[TOOL_CALLED]["schema"]
    assert tool["properties"]["type"]["const"] == TOOL_CALLED
    assert "arguments" in json.dumps(tool)


async def test_an_unknown_tool_over_mcp_is_refused_and_not_recorded(
    live_server: LiveServer, client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    async with mcp_client(f"{live_server.url}/mcp", user.access_token) as mcp:
        with refused_by_server():
            await mcp.call_tool("launch_rockets", {})
        listed = await mcp.list_tools()
    assert isinstance(listed, types.ListToolsResult)
    assert await events_of(app, TOOL_CALLED) == []
