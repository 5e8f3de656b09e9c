"""Knowledge bases over the API, and search scoped to them: create, list, get, change, delete;
files added and taken out (the file stays); upload straight into a base; search within a base or
a file; bad input is a 4xx; another user's bases are not found."""

from __future__ import annotations

import uuid

import httpx

from parley.jobs.worker import Worker
from tests.fixtures.accounts import TestUser
from tests.knowledge.conftest import search, settled, upload

BIKES = b"""# Bicycle care

## Chains

Clean and oil the chain every 300 kilometres, or after a ride in the rain.

## Tyres

Check tyre pressure weekly; road tyres usually want between 80 and 100 psi.
"""
BREAD = b"""# Sourdough

## Starter

Feed the starter twice a day with equal weights of flour and water.

## Baking

Bake the loaf in a covered pot at 250 degrees for twenty minutes, then uncover it.
"""


async def test_a_knowledge_base_lifecycle(
    client: httpx.AsyncClient, user: TestUser, worker: Worker
) -> None:
    created = await client.post(
        "/api/knowledge",
        json={"name": "  Workshop  ", "description": "Repair notes"},
        headers=user.headers,
    )
    assert created.status_code == 201, created.text
    base = created.json()["data"]
    assert base["name"] == "Workshop"
    assert base["file_count"] == 0

    bikes = (await upload(client, user, "bikes.md", BIKES, "text/markdown")).json()["data"]
    bread = (
        await upload(client, user, "bread.md", BREAD, "text/markdown", knowledge_id=base["id"])
    ).json()["data"]
    await settled(client, user, bikes["id"])
    await settled(client, user, bread["id"])
    added = await client.post(
        f"/api/knowledge/{base['id']}/files", json={"file_id": bikes["id"]}, headers=user.headers
    )
    assert added.status_code == 200
    assert added.json()["data"]["file_count"] == 2
    again = await client.post(
        f"/api/knowledge/{base['id']}/files", json={"file_id": bikes["id"]}, headers=user.headers
    )
    assert again.json()["data"]["file_count"] == 2

    listed = await client.get("/api/knowledge", headers=user.headers)
    assert [item["id"] for item in listed.json()["data"]["items"]] == [base["id"]]

    in_base = await search(client, user, "how often should I oil my chain", knowledge_id=base["id"])
    assert in_base[0]["file_id"] == bikes["id"]
    only_bread = await search(client, user, "oil the chain", file_id=bread["id"])
    assert all(hit["file_id"] == bread["id"] for hit in only_bread)

    removed = await client.delete(
        f"/api/knowledge/{base['id']}/files/{bikes['id']}", headers=user.headers
    )
    assert removed.status_code == 204
    missing = await client.delete(
        f"/api/knowledge/{base['id']}/files/{bikes['id']}", headers=user.headers
    )
    assert missing.status_code == 404
    after = await search(client, user, "oil the chain", knowledge_id=base["id"])
    assert all(hit["file_id"] == bread["id"] for hit in after)
    assert (await client.get(f"/api/files/{bikes['id']}", headers=user.headers)).status_code == 200

    changed = await client.patch(
        f"/api/knowledge/{base['id']}",
        json={"name": "Kitchen", "description": None},
        headers=user.headers,
    )
    assert changed.status_code == 200
    assert changed.json()["data"]["name"] == "Kitchen"
    assert changed.json()["data"]["description"] is None
    assert changed.json()["data"]["file_count"] == 1

    deleted = await client.delete(f"/api/knowledge/{base['id']}", headers=user.headers)
    assert deleted.status_code == 204
    assert (
        await client.get(f"/api/knowledge/{base['id']}", headers=user.headers)
    ).status_code == 404
    assert (await client.get(f"/api/files/{bread['id']}", headers=user.headers)).status_code == 200


async def test_search_finds_by_meaning_and_by_words(
    client: httpx.AsyncClient, user: TestUser, worker: Worker
) -> None:
    for name, content in (("bikes.md", BIKES), ("bread.md", BREAD)):
        created = (await upload(client, user, name, content, "text/markdown")).json()["data"]
        await settled(client, user, created["id"])
    by_meaning = await search(client, user, "what inflation should my wheels have")
    assert "psi" in by_meaning[0]["text"]
    by_words = await search(client, user, "covered pot uncover")
    assert "covered pot" in by_words[0]["text"]
    assert by_words[0]["heading"] == "Baking"
    limited = await search(client, user, "flour water chain tyre", limit=1)
    assert len(limited) == 1


async def test_bad_knowledge_input_is_refused(client: httpx.AsyncClient, user: TestUser) -> None:
    for body in ({}, {"name": ""}, {"name": "x" * 201}, {"name": "ok", "extra": 1}):
        response = await client.post("/api/knowledge", json=body, headers=user.headers)
        assert response.status_code == 422, (body, response.text)
    for params in (
        {},
        {"q": ""},
        {"q": "x" * 2001},
        {"q": "ok", "limit": 0},
        {"q": "ok", "limit": 51},
        {"q": "ok", "knowledge_id": "nope"},
    ):
        response = await client.get("/api/knowledge/search", params=params, headers=user.headers)
        assert response.status_code == 422, (params, response.text)
    unknown = await client.get(
        "/api/knowledge/search",
        params={"q": "ok", "knowledge_id": str(uuid.uuid4())},
        headers=user.headers,
    )
    assert unknown.status_code == 404
    upload_into_unknown = await upload(
        client, user, "a.md", b"# A\n\ntext", "text/markdown", knowledge_id=str(uuid.uuid4())
    )
    assert upload_into_unknown.status_code == 404
    assert (await client.get("/api/files", headers=user.headers)).json()["data"]["items"] == []
    no_auth = await client.get("/api/knowledge")
    assert no_auth.status_code == 401


async def test_another_users_knowledge_bases_are_not_found(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser
) -> None:
    base = (
        await client.post("/api/knowledge", json={"name": "Private"}, headers=user.headers)
    ).json()["data"]
    mine = (await upload(client, other_user, "m.md", b"# M\n\nwords", "text/markdown")).json()[
        "data"
    ]
    for method, path, body in (
        ("GET", f"/api/knowledge/{base['id']}", None),
        ("PATCH", f"/api/knowledge/{base['id']}", {"name": "Taken"}),
        ("DELETE", f"/api/knowledge/{base['id']}", None),
        ("POST", f"/api/knowledge/{base['id']}/files", {"file_id": mine["id"]}),
        ("DELETE", f"/api/knowledge/{base['id']}/files/{mine['id']}", None),
        ("GET", f"/api/knowledge/{base['id']}/files", None),
    ):
        response = await client.request(method, path, json=body, headers=other_user.headers)
        assert response.status_code == 404, (method, path, response.text)
    into = await upload(
        client, other_user, "x.md", b"# X\n\ntext", "text/markdown", knowledge_id=base["id"]
    )
    assert into.status_code == 404
    listed = await client.get("/api/knowledge", headers=other_user.headers)
    assert listed.json()["data"]["items"] == []
    still = await client.get(f"/api/knowledge/{base['id']}", headers=user.headers)
    assert still.json()["data"]["name"] == "Private"


async def test_the_files_of_a_base_are_listed_page_by_page(
    client: httpx.AsyncClient, user: TestUser
) -> None:
    base = (
        await client.post("/api/knowledge", json={"name": "Notes"}, headers=user.headers)
    ).json()["data"]
    other = (
        await client.post("/api/knowledge", json={"name": "Other"}, headers=user.headers)
    ).json()["data"]
    inside = []
    for index in range(3):
        created = await upload(
            client, user, f"n{index}.md", f"# N{index}\n\nnote {index}".encode(), "text/markdown"
        )
        inside.append(created.json()["data"]["id"])
        await client.post(
            f"/api/knowledge/{base['id']}/files", json={"file_id": inside[-1]}, headers=user.headers
        )
    outside = await upload(
        client, user, "o.md", b"# O\n\nelsewhere", "text/markdown", knowledge_id=other["id"]
    )
    assert outside.status_code == 201
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = await client.get(
            f"/api/knowledge/{base['id']}/files", params=params, headers=user.headers
        )
        assert page.status_code == 200, page.text
        seen += [item["id"] for item in page.json()["data"]["items"]]
        cursor = page.json()["data"]["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(inside))  # newest first, only this base's
    empty = await client.get(f"/api/knowledge/{uuid.uuid4()}/files", headers=user.headers)
    assert empty.status_code == 404
    bad = await client.get(
        f"/api/knowledge/{base['id']}/files", params={"limit": 0}, headers=user.headers
    )
    assert bad.status_code == 422


async def test_a_passage_opens_by_its_id_for_its_owner_only(
    client: httpx.AsyncClient, user: TestUser, other_user: TestUser, worker: Worker
) -> None:
    created = (await upload(client, user, "bikes.md", BIKES, "text/markdown")).json()["data"]
    await settled(client, user, created["id"])
    hit = (await search(client, user, "tyre pressure psi"))[0]
    opened = await client.get(f"/api/knowledge/chunks/{hit['chunk_id']}", headers=user.headers)
    assert opened.status_code == 200, opened.text
    passage = opened.json()["data"]
    assert passage == {
        "chunk_id": hit["chunk_id"],
        "file_id": created["id"],
        "filename": "bikes.md",
        "media_type": "text/markdown",
        "page": None,
        "heading": hit["heading"],
        "text": hit["text"],
    }
    assert "psi" in passage["text"]
    path = f"/api/knowledge/chunks/{hit['chunk_id']}"
    assert (await client.get(path, headers=other_user.headers)).status_code == 404
    assert (await client.get(path)).status_code == 401
    unknown = await client.get(f"/api/knowledge/chunks/{uuid.uuid4()}", headers=user.headers)
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "not_found"
    malformed = await client.get("/api/knowledge/chunks/not-a-uuid", headers=user.headers)
    assert malformed.status_code == 422
    await client.delete(f"/api/files/{created['id']}", headers=user.headers)
    assert (await client.get(path, headers=user.headers)).status_code == 404
