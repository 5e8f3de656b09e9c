"""The message tree against a fake upstream: edits start branches (also at the root), regenerating
adds sibling replies, switching branches moves the current leaf, the path pages towards the root,
and chats are found by their messages and titled after their first exchange."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.fakes import Reply
from tests.fakes.openai_upstream import FaultyOpenAI
from tests.fixtures.accounts import TestUser
from tests.fixtures.catalogs import OPENAI_MODEL
from tests.fixtures.chats import new_chat
from tests.fixtures.errors import assert_error
from tests.fixtures.polling import wait_for
from tests.fixtures.streams import chunk_types, parse_sse

Json = dict[str, Any]
UNKNOWN_ID = "01890000-0000-7000-8000-000000000000"


async def _exchange(
    api: httpx.AsyncClient, user: TestUser, chat_id: str, content: str, **extra: Any
) -> tuple[Json, Json]:
    """Send without streaming; the stored user message and reply."""
    response = await api.post(
        f"/api/chats/{chat_id}/messages?stream=false",
        json={"content": content, **extra},
        headers=user.headers,
    )
    assert response.status_code == 201, response.text
    data = response.json()["data"]
    return data["user_message"], data["assistant_message"]


async def _path(api: httpx.AsyncClient, user: TestUser, chat_id: str, **params: Any) -> list[Json]:
    response = await api.get(f"/api/chats/{chat_id}/messages", params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    items: list[Json] = response.json()["data"]["items"]
    return items


async def _chat(api: httpx.AsyncClient, user: TestUser, chat_id: str) -> Json:
    response = await api.get(f"/api/chats/{chat_id}", headers=user.headers)
    assert response.status_code == 200, response.text
    data: Json = response.json()["data"]
    return data


def _texts(messages: list[Json]) -> list[str]:
    return ["".join(p["text"] for p in m["parts"] if p["type"] == "text") for m in messages]


def _ids(messages: list[Json]) -> list[str]:
    return [m["id"] for m in messages]


def _sent_messages(upstream: FaultyOpenAI, index: int) -> list[Json]:
    """The chat messages of the upstream's `index`th completion request."""
    body = upstream.script.completions("/chat/completions")[index].body
    assert body is not None
    messages: list[Json] = body["messages"]
    return messages


async def _branched_chat(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> tuple[str, dict[str, Json]]:
    """A chat of A -> R1 -> B -> R2, then B' edited in under R1 -> R3 (the current branch)."""
    upstream.script.push(Reply(text="R1"), Reply(text="R2"), Reply(text="R3"))
    chat_id = await new_chat(api, user)
    a, r1 = await _exchange(api, user, chat_id, "A")
    b, r2 = await _exchange(api, user, chat_id, "B")
    b2, r3 = await _exchange(api, user, chat_id, "B'", parent_id=r1["id"])
    return chat_id, {"A": a, "R1": r1, "B": b, "R2": r2, "B'": b2, "R3": r3}


async def test_an_edit_starts_a_branch_beside_the_old_one(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(Reply(text="R1"), Reply(text="R2"), Reply(text="R3"))
    chat_id = await new_chat(api, user)
    a, r1 = await _exchange(api, user, chat_id, "A")
    b, r2 = await _exchange(api, user, chat_id, "B")
    response = await api.post(
        f"/api/chats/{chat_id}/messages",
        json={"content": "B'", "parent_id": r1["id"]},
        headers=user.headers,
    )
    assert response.status_code == 200, response.text
    events = parse_sse(response.text)
    assert chunk_types(events)[-1] == "finish"
    start = events[0].chunk

    path = await _path(api, user, chat_id)
    assert _texts(path) == ["A", "R1", "B'", "R3"]
    assert [m["parent_id"] for m in path] == [None, a["id"], r1["id"], path[2]["id"]]
    b2, r3 = path[2], path[3]
    assert b2["id"] == start["messageMetadata"]["user_message_id"]
    assert r3["id"] == start["messageId"]
    assert b2["sibling_ids"] == [b["id"], b2["id"]]
    assert r3["sibling_ids"] == [r3["id"]]
    assert path[0]["sibling_ids"] == [a["id"]]

    old = await _path(api, user, chat_id, leaf_id=r2["id"])
    assert _ids(old) == [a["id"], r1["id"], b["id"], r2["id"]]
    assert _texts(old) == ["A", "R1", "B", "R2"]
    assert old[2]["sibling_ids"] == [b["id"], b2["id"]]
    assert (await _chat(api, user, chat_id))["current_leaf_id"] == r3["id"]
    # The edited turn's context is its own branch: the old B and R2 are not in it.
    sent = _sent_messages(upstream, 2)
    assert [(m["role"], m["content"]) for m in sent] == [
        ("user", "A"),
        ("assistant", "R1"),
        ("user", "B'"),
    ]


async def test_an_edit_of_the_first_message_starts_a_new_root(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(Reply(text="First reply"), Reply(text="Second reply"))
    chat_id = await new_chat(api, user)
    first, _ = await _exchange(api, user, chat_id, "First")
    edited, reply = await _exchange(api, user, chat_id, "First, edited", parent_id=None)
    assert edited["parent_id"] is None
    assert edited["sibling_ids"] == [first["id"], edited["id"]]
    path = await _path(api, user, chat_id)
    assert _ids(path) == [edited["id"], reply["id"]]
    assert _texts(path) == ["First, edited", "Second reply"]
    assert path[0]["sibling_ids"] == [first["id"], edited["id"]]
    assert [(m["role"], m["content"]) for m in _sent_messages(upstream, 1)] == [
        ("user", "First, edited")
    ]


async def test_regenerate_makes_sibling_replies(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    upstream.script.push(Reply(text="Answer one"), Reply(text="Answer two"))
    chat_id = await new_chat(api, user, system_prompt="Be brief.")
    question, first = await _exchange(api, user, chat_id, "Question")

    response = await api.post(
        f"/api/chats/{chat_id}/messages/{first['id']}/regenerate", headers=user.headers
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    events = parse_sse(response.text)
    assert [event.id for event in events] == list(range(1, len(events) + 1))
    assert events[-1].data == "[DONE]"
    types = chunk_types(events)
    assert types[0] == "start"
    assert types[-1] == "finish"
    start = events[0].chunk
    assert start["messageMetadata"]["chat_id"] == chat_id
    assert start["messageMetadata"]["user_message_id"] == question["id"]
    text = "".join(e.chunk["delta"] for e in events[:-1] if e.chunk["type"] == "text-delta")
    assert text == "Answer two"

    path = await _path(api, user, chat_id)
    second = path[-1]
    assert _ids(path) == [question["id"], start["messageId"]]
    assert second["parent_id"] == question["id"]
    assert second["sibling_ids"] == [first["id"], second["id"]]
    assert second["model_id"] == OPENAI_MODEL
    assert second["status"] == "complete"
    assert _texts(path) == ["Question", "Answer two"]
    assert (await _chat(api, user, chat_id))["current_leaf_id"] == second["id"]
    # The model saw the same history both times.
    assert _sent_messages(upstream, 1) == _sent_messages(upstream, 0)
    assert [m["role"] for m in _sent_messages(upstream, 1)] == ["system", "user"]

    # Regenerating the user message adds a new child of it; `?stream=false` answers 201.
    upstream.script.push(Reply(text="Answer three"))
    plain = await api.post(
        f"/api/chats/{chat_id}/messages/{question['id']}/regenerate?stream=false",
        headers=user.headers,
    )
    assert plain.status_code == 201, plain.text
    data = plain.json()["data"]
    assert set(data) == {"user_message", "assistant_message"}
    assert data["user_message"]["id"] == question["id"]
    third = data["assistant_message"]
    assert third["parent_id"] == question["id"]
    assert third["status"] == "complete"
    assert third["parts"] == [{"type": "text", "text": "Answer three"}]
    assert third["sibling_ids"] == [first["id"], second["id"], third["id"]]
    assert len(upstream.script.completions("/chat/completions")) == 3
    assert _sent_messages(upstream, 2) == _sent_messages(upstream, 0)

    # Another model, named in the body.
    offline = await api.post(
        f"/api/chats/{chat_id}/messages/{first['id']}/regenerate?stream=false",
        json={"model_id": "offline:parley"},
        headers=user.headers,
    )
    assert offline.status_code == 201, offline.text
    fourth = offline.json()["data"]["assistant_message"]
    assert fourth["model_id"] == "offline:parley"
    assert fourth["status"] == "complete"
    assert fourth["parent_id"] == question["id"]
    assert len(fourth["sibling_ids"]) == 4
    assert len(upstream.script.completions("/chat/completions")) == 3  # not the upstream
    assert (await _path(api, user, chat_id))[-1]["id"] == fourth["id"]


async def test_switching_branches_moves_the_current_leaf(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    chat_id, tree = await _branched_chat(api, user, upstream)

    async def switch(message_id: str) -> Json:
        response = await api.patch(
            f"/api/chats/{chat_id}", json={"current_leaf_id": message_id}, headers=user.headers
        )
        assert response.status_code == 200, response.text
        data: Json = response.json()["data"]
        return data

    assert (await switch(tree["B"]["id"]))["current_leaf_id"] == tree["R2"]["id"]
    assert _texts(await _path(api, user, chat_id)) == ["A", "R1", "B", "R2"]
    assert (await _chat(api, user, chat_id))["current_leaf_id"] == tree["R2"]["id"]
    # Under R1 the newest branch is B'; under the root message too.
    assert (await switch(tree["R1"]["id"]))["current_leaf_id"] == tree["R3"]["id"]
    assert _texts(await _path(api, user, chat_id)) == ["A", "R1", "B'", "R3"]
    assert (await switch(tree["A"]["id"]))["current_leaf_id"] == tree["R3"]["id"]
    assert (await switch(tree["R2"]["id"]))["current_leaf_id"] == tree["R2"]["id"]
    # A send without parent_id continues the branch switched to.
    upstream.script.push(Reply(text="R4"))
    c, r4 = await _exchange(api, user, chat_id, "C")
    assert c["parent_id"] == tree["R2"]["id"]
    assert _texts(await _path(api, user, chat_id)) == ["A", "R1", "B", "R2", "C", "R4"]

    other_chat = await new_chat(api, user)
    upstream.script.push(Reply(text="Elsewhere"))
    elsewhere, _ = await _exchange(api, user, other_chat, "Elsewhere")
    foreign = await api.patch(
        f"/api/chats/{chat_id}", json={"current_leaf_id": elsewhere["id"]}, headers=user.headers
    )
    assert_error(foreign, 404, "not_found")
    foreign_leaf = await api.get(
        f"/api/chats/{chat_id}/messages", params={"leaf_id": elsewhere["id"]}, headers=user.headers
    )
    assert_error(foreign_leaf, 404, "not_found")
    assert (await _chat(api, user, chat_id))["current_leaf_id"] == r4["id"]


async def test_a_message_cannot_follow_a_user_message(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    chat_id = await new_chat(api, user)
    question, reply = await _exchange(api, user, chat_id, "Question")
    response = await api.post(
        f"/api/chats/{chat_id}/messages",
        json={"content": "Under a user message", "parent_id": question["id"]},
        headers=user.headers,
    )
    error = assert_error(response, 422, "validation_error")["error"]
    assert "body.parent_id" in [detail["field"] for detail in error["details"]]  # type: ignore[index]
    assert len(upstream.script.completions("/chat/completions")) == 1
    assert _ids(await _path(api, user, chat_id)) == [question["id"], reply["id"]]
    assert question["sibling_ids"] == [question["id"]]


async def test_regenerate_and_turn_routes_refuse_what_they_cannot_do(
    api: httpx.AsyncClient, user: TestUser, other_user: TestUser, upstream: FaultyOpenAI
) -> None:
    chat_id = await new_chat(api, user)
    question, reply = await _exchange(api, user, chat_id, "Question")
    base = f"/api/chats/{chat_id}"
    unknown = await api.post(f"{base}/messages/{UNKNOWN_ID}/regenerate", headers=user.headers)
    assert_error(unknown, 404, "not_found")
    other_chat = await new_chat(api, user)
    elsewhere = await api.post(
        f"/api/chats/{other_chat}/messages/{reply['id']}/regenerate", headers=user.headers
    )
    assert_error(elsewhere, 404, "not_found")

    for method, url in [
        ("POST", f"{base}/messages/{reply['id']}/regenerate"),
        ("POST", f"{base}/messages/{question['id']}/regenerate"),
        ("POST", f"{base}/stop"),
        ("GET", f"{base}/stream"),
        ("GET", f"{base}/messages"),
        ("GET", f"{base}/messages?leaf_id={reply['id']}"),
    ]:
        response = await api.request(method, url, headers=other_user.headers)
        assert_error(response, 404, "not_found")
    assert len(upstream.script.completions("/chat/completions")) == 1

    # One reply at a time: a regenerate while a reply streams is refused.
    upstream.script.push(Reply(text=" ".join(["slow"] * 40), chunk_delay=0.03))
    sending = asyncio.create_task(
        api.post(f"{base}/messages", json={"content": "Slowly"}, headers=user.headers)
    )

    async def in_progress() -> Json | None:
        path = await _path(api, user, chat_id)
        last = path[-1]
        return last if len(path) == 4 and last["status"] == "streaming" else None

    streaming = await wait_for(in_progress)
    for message_id in (reply["id"], question["id"], streaming["id"]):
        busy = await api.post(f"{base}/messages/{message_id}/regenerate", headers=user.headers)
        assert_error(busy, 409, "conflict")
    finished = await sending
    assert chunk_types(parse_sse(finished.text))[-1] == "finish"
    path = await _path(api, user, chat_id)
    assert path[-1]["id"] == streaming["id"]
    assert path[-1]["status"] == "complete"
    assert path[-1]["sibling_ids"] == [streaming["id"]]  # the refused tries left nothing behind
    assert path[1]["sibling_ids"] == [reply["id"]]
    assert len(upstream.script.completions("/chat/completions")) == 2


async def test_the_path_pages_towards_the_root(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    chat_id = await new_chat(api, user)
    expected: list[str] = []
    for number in range(25):
        question, reply = await _exchange(api, user, chat_id, f"Question {number}")
        expected += [question["id"], reply["id"]]
    assert _ids(await _path(api, user, chat_id, limit=100)) == expected

    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params: Json = {"limit": 10}
        if cursor:
            params["cursor"] = cursor
        response = await api.get(
            f"/api/chats/{chat_id}/messages", params=params, headers=user.headers
        )
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        pages.append(_ids(page["items"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert len(pages) < 10, "the pages do not end"
    assert len(pages) == 5
    assert pages[0] == expected[-10:]
    assert pages[1] == expected[-20:-10]
    assert all(len(page) == 10 for page in pages)
    together = [message_id for page in reversed(pages) for message_id in page]
    assert together == expected
    assert len(set(together)) == len(together)

    garbage = await api.get(
        f"/api/chats/{chat_id}/messages", params={"cursor": "garbage"}, headers=user.headers
    )
    assert_error(garbage, 422, "validation_error")


async def test_search_finds_a_chat_by_the_text_of_its_messages(
    api: httpx.AsyncClient, user: TestUser, other_user: TestUser, upstream: FaultyOpenAI
) -> None:
    wanted = await new_chat(api, user, title="Weekend")
    other = await new_chat(api, user, title="Errands")
    await _exchange(api, user, wanted, "Remember the Aardvark exhibit on Sunday")
    await _exchange(api, user, other, "Pick up the parcel")
    theirs = await new_chat(api, other_user, title="Zoo")
    await _exchange(api, other_user, theirs, "aardvark aardvark")

    async def found(q: str) -> list[str]:
        response = await api.get("/api/chats", params={"q": q}, headers=user.headers)
        assert response.status_code == 200, response.text
        return [chat["id"] for chat in response.json()["data"]["items"]]

    assert await found("aardvark") == [wanted]
    assert await found("AARDVARK EXHIBIT") == [wanted]
    assert await found("parcel") == [other]
    assert await found("weekend") == [wanted]  # the title still counts
    assert await found("zebra") == []


async def test_an_untitled_chat_is_titled_by_its_first_exchange(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    short = await new_chat(api, user)
    assert (await _chat(api, user, short))["title"] is None
    await _exchange(api, user, short, "  Plan the   summer trip  ")
    assert (await _chat(api, user, short))["title"] == "Plan the summer trip"
    await _exchange(api, user, short, "Something else entirely")
    assert (await _chat(api, user, short))["title"] == "Plan the summer trip"

    long = await new_chat(api, user)
    words = "Plan the summer trip to the mountains with the whole family and the dog"
    await _exchange(api, user, long, words)
    title = (await _chat(api, user, long))["title"]
    assert title == "Plan the summer trip to the mountains with the whole family…"
    assert len(title) <= 61
    assert words.startswith(title[:-1])

    named = await new_chat(api, user, title="My own title")
    await _exchange(api, user, named, "Whatever comes first")
    assert (await _chat(api, user, named))["title"] == "My own title"


async def test_the_title_comes_from_the_first_line_only(
    api: httpx.AsyncClient, user: TestUser, upstream: FaultyOpenAI
) -> None:
    chat_id = await new_chat(api, user)
    await _exchange(api, user, chat_id, "Shopping list\nmilk\neggs")
    assert (await _chat(api, user, chat_id))["title"] == "Shopping list"
