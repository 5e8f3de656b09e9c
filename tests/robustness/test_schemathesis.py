"""Schemathesis over the whole OpenAPI schema of a running server, authenticated.

Every operation of `/openapi.json` gets a bounded number of generated requests (valid ones, then
invalid ones), with a fixed seed, sent over real HTTP to a live server as an admin (so the admin
routes are reached too). Each response must pass:

- `not_a_server_error`: no 5xx;
- `status_code_conformance`: its status is one the operation declares;
- `content_type_conformance`: its content type is one the operation declares for that status;
- `response_schema_conformance`: its body validates against the declared schema.

Operations with an id in their path are fuzzed twice: with generated ids (mostly unknown: the 404
paths) and with the ids of real rows of the caller (the paths past the lookup: updates, deletes,
turns on a real chat).

What is left out, by its nature: `/mcp` (not an OpenAPI operation; JSON-RPC over the MCP transport,
covered by tests/mcp and the ownership matrix here), and the bodies of event streams
(`text/event-stream` is declared as a string; the stream protocol is checked by
tests/turns and the AI SDK's own reader).
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.fixtures.accounts import TestUser, UserFactory
from tests.fixtures.servers import LiveServer

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Bounded, so the whole run takes about a minute on a loaded two-core machine.
POSITIVE_EXAMPLES = int(os.environ.get("PARLEY_FUZZ_EXAMPLES", "15"))
NEGATIVE_EXAMPLES = max(1, POSITIVE_EXAMPLES // 2)
REQUEST_TIMEOUT_SECONDS = 30


@dataclass
class FuzzReport:
    """What a run sent, and every failure it saw (collected rather than raised, so Hypothesis
    does not spend the time budget shrinking)."""

    calls: int = 0
    failures: list[str] = field(default_factory=list)
    statuses: dict[str, set[int]] = field(default_factory=dict)


def _fuzz_operation(
    operation: Any,
    mode: schemathesis.GenerationMode,
    examples: int,
    headers: dict[str, str],
    report: FuzzReport,
    path_parameters: dict[str, str] | None = None,
) -> None:
    strategy = operation.as_strategy(generation_mode=mode, path_parameters=path_parameters)

    @settings(
        max_examples=examples,
        derandomize=True,  # a fixed seed: the same requests on every run
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        verbosity=Verbosity.quiet,
    )
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call(headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
        report.calls += 1
        report.statuses.setdefault(operation.label, set()).add(response.status_code)
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except FailureGroup as group:
            report.failures.append(f"{operation.label} [{mode.value}]:\n{group}")

    try:
        run()
    except Unsatisfiable:
        # Nothing to make invalid: an operation without parameters or body has no negative case.
        if mode is not schemathesis.GenerationMode.NEGATIVE:
            raise


async def _own_rows(http: httpx.AsyncClient, owner: TestUser) -> dict[str, str]:
    """A task, a chat with one finished turn, and an API key of `owner`: their ids by the path
    parameter that names them."""
    task = await http.post("/api/tasks", json={"title": "fuzz me"}, headers=owner.headers)
    chat = await http.post("/api/chats", json={"title": "fuzz"}, headers=owner.headers)
    assert task.status_code == chat.status_code == 201
    chat_id = chat.json()["data"]["id"]
    turn = await http.post(
        f"/api/chats/{chat_id}/messages",
        params={"stream": "false"},
        json={"content": "hello"},
        headers=owner.headers,
    )
    assert turn.status_code == 201, turn.text
    key = await http.post("/api/users/me/api-keys", json={"name": "fuzz"}, headers=owner.headers)
    assert key.status_code == 201
    return {
        "task_id": task.json()["data"]["id"],
        "chat_id": chat_id,
        "message_id": turn.json()["data"]["assistant_message"]["id"],
        "key_id": key.json()["data"]["id"],
    }


async def test_the_whole_schema_under_fuzzing(
    robust_live: LiveServer, make_user: UserFactory
) -> None:
    admin = await make_user(admin=True)
    async with httpx.AsyncClient(base_url=robust_live.url, timeout=30) as http:
        rows = await _own_rows(http, admin)
    schema = schemathesis.openapi.from_url(f"{robust_live.url}/openapi.json", timeout=30)
    headers = {"Authorization": f"Bearer {admin.access_token}"}
    report = FuzzReport()
    labels: list[str] = []

    def fuzz_all() -> None:
        with_rows: list[Any] = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result
            operation = result.ok()
            labels.append(operation.label)
            modes = (
                (schemathesis.GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
                (schemathesis.GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
            )
            for mode, examples in modes:
                _fuzz_operation(operation, mode, examples, headers, report)
            names = {parameter.name for parameter in operation.path_parameters}
            if names and names <= set(rows):
                with_rows.append(operation)
        # Deletes last, so the other operations find the rows still there.
        for operation in sorted(with_rows, key=lambda item: item.method.upper() == "DELETE"):
            fixed = {
                parameter.name: rows[parameter.name] for parameter in operation.path_parameters
            }
            _fuzz_operation(
                operation,
                schemathesis.GenerationMode.POSITIVE,
                POSITIVE_EXAMPLES,
                headers,
                report,
                path_parameters=fixed,
            )

    def explicit_cases() -> None:
        # What random bodies seldom reach: a `/v1` completion on a real model, streamed and not.
        operation = schema["/v1/chat/completions"]["POST"]
        for stream in (False, True):
            body: dict[str, Any] = {
                "model": "offline:parley",
                "messages": [{"role": "user", "content": "hello"}],
                "stream": stream,
            }
            case = operation.Case(body=body, media_type="application/json")
            response = case.call(headers=headers, timeout=REQUEST_TIMEOUT_SECONDS)
            report.calls += 1
            report.statuses.setdefault(f"{operation.label} stream={stream}", set()).add(
                response.status_code
            )
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except FailureGroup as group:
                report.failures.append(f"{operation.label} [stream={stream}]:\n{group}")

    started = time.monotonic()
    await asyncio.to_thread(fuzz_all)
    await asyncio.to_thread(explicit_cases)
    elapsed = time.monotonic() - started
    assert "POST /api/chats/{chat_id}/messages" in labels
    assert "POST /v1/chat/completions" in labels
    assert report.calls >= len(labels) * POSITIVE_EXAMPLES // 2, (report.calls, elapsed)
    assert not report.failures, "\n\n".join(report.failures)
    # The fixed-id pass reached the success paths, not only the 404s.
    assert 200 in report.statuses["PATCH /api/tasks/{task_id}"]
    assert 200 in report.statuses["GET /api/chats/{chat_id}/messages"]
    assert {200, 201} & report.statuses["POST /api/chats/{chat_id}/messages"]  # a reply
    assert report.statuses["POST /v1/chat/completions stream=True"] == {200}
