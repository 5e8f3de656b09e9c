"""Real chat titles (the `chat.title` job): after a chat's first reply, the chat's model names
it; the offline model names it from the first message's words; a title the user gave is never
replaced; the title call is billed to the chat's owner like a turn."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi import FastAPI

from parley.background import build_worker
from parley.jobs.worker import Worker
from parley.llm.titles import TITLE_INSTRUCTIONS, clean_title, title_prompt, words_title
from tests.fakes import Reply
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import TestUser, UserFactory
from tests.fixtures.chats import new_chat
from tests.fixtures.polling import wait_for
from tests.jobs.helpers import jobs_of


async def send(http: httpx.AsyncClient, user: TestUser, chat_id: str, text: str) -> None:
    response = await http.post(
        f"/api/chats/{chat_id}/messages?stream=false",
        json={"parts": [{"type": "text", "text": text}]},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text


async def chat_title(http: httpx.AsyncClient, user: TestUser, chat_id: str) -> str | None:
    response = await http.get(f"/api/chats/{chat_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    title: str | None = response.json()["data"]["title"]
    return title


def title_becomes(http: httpx.AsyncClient, user: TestUser, chat_id: str, expected: str) -> Any:
    async def check() -> bool:
        return await chat_title(http, user, chat_id) == expected

    return check


def title_job_succeeded(app: FastAPI) -> Any:
    async def check() -> Any:
        [job] = await jobs_of(app.state.database, "chat.title")
        return job if job.status == "succeeded" else None

    return check


async def test_the_offline_model_names_a_new_chat_from_the_first_messages_words(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI, worker: Worker
) -> None:
    chat_id = await new_chat(client, user)
    await send(client, user, chat_id, "Please add a task to buy oat milk tomorrow")
    await wait_for(title_becomes(client, user, chat_id, "Add task buy oat milk tomorrow"))

    job = await wait_for(title_job_succeeded(app))
    assert job.attempts == 1
    # Only the first exchange names the chat.
    await send(client, user, chat_id, "what's on my list?")
    assert len(await jobs_of(app.state.database, "chat.title")) == 1
    assert await chat_title(client, user, chat_id) == "Add task buy oat milk tomorrow"


async def test_a_title_the_user_gave_is_kept(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    named = await new_chat(client, user, title="My groceries")
    await send(client, user, named, "add a task to buy bread")
    assert await jobs_of(app.state.database, "chat.title") == []  # nothing to name
    # Renamed after the first reply, before its title job ran: the job leaves it.
    renamed = await new_chat(client, user)
    await send(client, user, renamed, "add a task to call the plumber")
    response = await client.patch(
        f"/api/chats/{renamed}", json={"title": "House"}, headers=user.headers
    )
    assert response.status_code == 200
    worker = build_worker(app.state.runtime)
    worker.poll_seconds = 0.1
    worker.start()
    try:

        async def title_job_done() -> bool:
            jobs = await jobs_of(app.state.database, "chat.title")
            return bool(jobs) and jobs[0].status == "succeeded"

        await wait_for(title_job_done)
    finally:
        await worker.stop(grace_seconds=0)
    assert await chat_title(client, user, renamed) == "House"
    assert await chat_title(client, user, named) == "My groceries"


async def test_another_users_chat_is_not_named_by_a_forged_job(
    client: httpx.AsyncClient, make_user: UserFactory, app: FastAPI, worker: Worker
) -> None:
    owner, other = await make_user(), await make_user()
    chat_id = await new_chat(client, owner)
    await send(client, owner, chat_id, "add a task to water the plants")
    await wait_for(title_becomes(client, owner, chat_id, "Add task water plants"))

    job = await wait_for(title_job_succeeded(app))
    from parley.jobs.queue import enqueue
    from parley.turns.titles import TITLE_JOB

    async with app.state.database.sessionmaker() as session:
        await enqueue(session, TITLE_JOB, {**job.args, "user_id": other.id})
        await session.commit()

    async def all_done() -> bool:
        jobs = await jobs_of(app.state.database, "chat.title")
        return len(jobs) == 2 and all(row.status == "succeeded" for row in jobs)

    await wait_for(all_done)
    assert await chat_title(client, owner, chat_id) == "Add task water plants"


async def test_the_chats_model_names_it_and_the_call_is_billed(
    api: httpx.AsyncClient,
    upstream_app: FastAPI,
    upstream: FaultyOpenAI,
    make_user: UserFactory,
) -> None:
    owner = await make_user()
    chat_id = await new_chat(api, owner)
    upstream.script.push(
        Reply(text="Sure, here is a plan for the garden.", input_tokens=20, output_tokens=9),
        Reply(text='Title: "Planning a spring garden."', input_tokens=30, output_tokens=6),
    )
    await send(api, owner, chat_id, "How should I plan my garden this spring?")
    worker = build_worker(upstream_app.state.runtime)
    worker.poll_seconds = 0.1
    worker.start()
    try:
        await wait_for(title_becomes(api, owner, chat_id, "Planning a spring garden"))
    finally:
        await worker.stop(grace_seconds=0)
    title_request = upstream.script.completions("/chat/completions")[-1].body
    sent = json.dumps(title_request["messages"])
    assert TITLE_INSTRUCTIONS in sent
    assert "How should I plan my garden this spring?" in sent
    assert "Sure, here is a plan for the garden." in sent
    assert "tools" not in title_request
    usage = await api.get("/api/usage", params={"group_by": "model"}, headers=owner.headers)
    assert usage.status_code == 200, usage.text
    totals = usage.json()["data"]["totals"]
    # The reply's tokens and the title's, in two requests.
    assert (totals["input_tokens"], totals["output_tokens"], totals["requests"]) == (50, 15, 2)


async def test_a_failing_title_call_is_retried_later_and_the_words_title_stays(
    api: httpx.AsyncClient,
    upstream_app: FastAPI,
    upstream: FaultyOpenAI,
    make_user: UserFactory,
) -> None:
    owner = await make_user()
    chat_id = await new_chat(api, owner)
    upstream.script.push(Reply(text="An answer."))
    await send(api, owner, chat_id, "Tell me about tide pools")
    assert await chat_title(api, owner, chat_id) == "Tell me about tide pools"
    upstream.script.default = Reply(status=400, error_message="the upstream refuses")
    worker = build_worker(upstream_app.state.runtime)
    worker.poll_seconds = 0.1
    worker.start()
    try:

        async def first_attempt_failed() -> Any:
            jobs = await jobs_of(upstream_app.state.database, "chat.title")
            if not jobs:
                return None  # the title sweep has not queued it yet
            [job] = jobs
            return job if job.attempts == 1 and job.status == "queued" and job.error else None

        job = await wait_for(first_attempt_failed, within=20)
    finally:
        await worker.stop(grace_seconds=0)
        upstream.script.default = Reply(text="Hello from the fake upstream.")
    assert "refuses" in job.error
    assert job.run_at > job.started_at  # retried after a backoff, not at once
    assert await chat_title(api, owner, chat_id) == "Tell me about tide pools"


def test_titles_are_cleaned_and_bounded() -> None:
    assert clean_title('  "Trip to Lisbon."  ') == "Trip to Lisbon"
    assert clean_title("**Title:** Budget review\nmore text") == "Budget review"
    assert clean_title("# Title - Weekly plan!") == "Weekly plan"
    assert clean_title("   \n  ") is None
    long = clean_title("word " * 40)
    assert long is not None
    assert len(long) <= 80
    assert not long.endswith(" ")
    prompt = title_prompt("hi, can you help me fix my bike's brakes?", "Sure.")
    assert words_title(prompt) == "Help fix bike's brakes"
    assert words_title(title_prompt("the", "x")) == "The"
    assert words_title(title_prompt("", "")) == "New chat"
