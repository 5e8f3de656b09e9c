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
