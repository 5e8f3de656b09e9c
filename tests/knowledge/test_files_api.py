"""Files over the API on the test database, ingested by Parley's own worker: upload, list, get,
download, delete; the type read from the bytes; the upload limit and the quota; the same bytes
stored once; hostile names and files; a file deleted mid-ingestion; and nobody else's files."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
import zipfile
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select

from parley.app import create_app
from parley.background import build_worker
from parley.jobs.worker import Worker
from parley.knowledge.models import KnowledgeChunk
from parley.settings import Settings
from tests.fixtures.accounts import TestUser
from tests.fixtures.polling import wait_for
from tests.jobs.helpers import jobs_of
from tests.knowledge.conftest import file_of, search, settled, upload
from tests.knowledge.test_extraction import write_pdf

GUIDE = b"""# Espresso guide

## Grinding

Grind the beans just before brewing; a burr grinder gives an even particle size.

## Brewing

Brew at 93 degrees Celsius for about 27 seconds to pull a balanced double shot.
"""


async def chunk_count(app: FastAPI, file_id: str | None = None) -> int:
    async with app.state.database.sessionmaker() as session:
        statement = select(func.count()).select_from(KnowledgeChunk)
        if file_id is not None:
            statement = statement.where(KnowledgeChunk.file_id == uuid.UUID(file_id))
        return int(await session.scalar(statement) or 0)


async def test_upload_ingest_read_download_and_delete_a_markdown_file(
    client: httpx.AsyncClient, user: TestUser, worker: Worker, app: FastAPI
) -> None:
    response = await upload(client, user, "guide.md", GUIDE, "text/markdown")
    assert response.status_code == 201, response.text
    created = response.json()["data"]
    assert created["status"] == "queued"
    assert created["filename"] == "guide.md"
    assert created["media_type"] == "text/markdown"
    assert created["size_bytes"] == len(GUIDE)
    assert created["sha256"] == hashlib.sha256(GUIDE).hexdigest()
    assert created["error"] is None

    ready = await settled(client, user, created["id"])
    assert ready["status"] == "ready", ready
    assert ready["progress"] == 1.0
    assert ready["chunks"] >= 1
    assert ready["pages"] is None

    listed = await client.get("/api/files", headers=user.headers)
    assert [item["id"] for item in listed.json()["data"]["items"]] == [created["id"]]
    ready_only = await client.get("/api/files?status=failed", headers=user.headers)
    assert ready_only.json()["data"]["items"] == []

    download = await client.get(f"/api/files/{created['id']}/content", headers=user.headers)
    assert download.status_code == 200
    assert download.content == GUIDE
    assert download.headers["content-disposition"].startswith("attachment;")
    assert download.headers["x-content-type-options"] == "nosniff"

    hits = await search(client, user, "what temperature should I brew at")
    assert hits
    assert "93 degrees" in hits[0]["text"]
    assert hits[0]["heading"] == "Brewing"
    assert hits[0]["filename"] == "guide.md"

    deleted = await client.delete(f"/api/files/{created['id']}", headers=user.headers)
    assert deleted.status_code == 204
    gone = await client.get(f"/api/files/{created['id']}", headers=user.headers)
    assert gone.status_code == 404
    assert await chunk_count(app) == 0
    assert await search(client, user, "brew temperature") == []


async def test_a_pdf_is_read_page_by_page_and_search_names_the_page(
    client: httpx.AsyncClient, user: TestUser, worker: Worker, tmp_path: Path
) -> None:
    pages = [
        "The lighthouse keeper logs the weather every morning.",
        "Replacement lamps are stored in the north cellar behind the oil drums.",
        "Visitors may climb the tower on Sundays between noon and four.",
    ]
    pdf = write_pdf(tmp_path / "lighthouse.pdf", pages).read_bytes()
    response = await upload(client, user, "lighthouse.pdf", pdf, "application/pdf")
    assert response.status_code == 201, response.text
    ready = await settled(client, user, response.json()["data"]["id"])
    assert ready["status"] == "ready", ready
    assert ready["pages"] == 3
    hits = await search(client, user, "where are spare lamps kept")
    assert hits[0]["page"] == 2
    assert "north cellar" in hits[0]["text"]


async def test_the_type_comes_from_the_bytes_not_the_name(
    client: httpx.AsyncClient, user: TestUser, tmp_path: Path
) -> None:
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    refused = await upload(client, user, "picture.png", png, "image/png")
    assert refused.status_code == 415
    assert refused.json()["error"]["code"] == "unsupported_media_type"
    lying = await upload(client, user, "report.pdf", b"just some text", "application/pdf")
    assert lying.status_code == 415
    binary = await upload(client, user, "notes.txt", bytes(range(256)) * 4, "text/plain")
    assert binary.status_code == 415
    pdf = write_pdf(tmp_path / "real.pdf", ["A real PDF."]).read_bytes()
    renamed = await upload(client, user, "real.txt", pdf, "text/plain")
    assert renamed.status_code == 201
    assert renamed.json()["data"]["media_type"] == "application/pdf"
    assert (await client.get("/api/files", headers=user.headers)).json()["data"]["items"][0][
        "filename"
    ] == "real.txt"


async def test_a_hostile_filename_is_reduced_to_its_last_component(
    client: httpx.AsyncClient, user: TestUser, settings: Settings
) -> None:
    for name, kept in (
        ("../../../../etc/passwd.md", "passwd.md"),
        ("..\\..\\windows\\win.ini.txt", "win.ini.txt"),
        ("\x1bevil\u202e.md", "evil.md"),
        ("....", "file"),
    ):
        response = await upload(client, user, name, b"# Hello\n\nplain words", "text/markdown")
        assert response.status_code == 201, (name, response.text)
        assert response.json()["data"]["filename"] == kept, name
    stored = [path for path in (settings.data_dir / "files").rglob("*") if path.is_file()]
    assert stored
    assert all(settings.data_dir / "files" in path.parents for path in stored)
    assert not (settings.data_dir.parent / "etc").exists()


async def test_the_same_bytes_twice_are_stored_once(
    client: httpx.AsyncClient, user: TestUser, settings: Settings
) -> None:
    first = await upload(client, user, "a.md", GUIDE, "text/markdown")
    second = await upload(client, user, "b.md", GUIDE, "text/markdown")
    assert first.json()["data"]["id"] != second.json()["data"]["id"]
    digest = hashlib.sha256(GUIDE).hexdigest()
    blobs = list((settings.data_dir / "files").rglob(digest))
    assert len(blobs) == 1
    # Deleting one keeps the bytes the other needs; deleting both removes them.
    await client.delete(f"/api/files/{first.json()['data']['id']}", headers=user.headers)
    assert blobs[0].exists()
    download = await client.get(
        f"/api/files/{second.json()['data']['id']}/content", headers=user.headers
    )
    assert download.content == GUIDE
    await client.delete(f"/api/files/{second.json()['data']['id']}", headers=user.headers)
    assert not blobs[0].exists()


async def test_another_users_files_are_not_found_anywhere(
    client: httpx.AsyncClient,
    user: TestUser,
    other_user: TestUser,
    worker: Worker,
) -> None:
    created = (await upload(client, user, "guide.md", GUIDE, "text/markdown")).json()["data"]
    await settled(client, user, created["id"])
    for method, path in (
        ("GET", f"/api/files/{created['id']}"),
        ("GET", f"/api/files/{created['id']}/content"),
        ("DELETE", f"/api/files/{created['id']}"),
    ):
        response = await client.request(method, path, headers=other_user.headers)
        assert response.status_code == 404, (method, path, response.text)
    listed = await client.get("/api/files", headers=other_user.headers)
    assert listed.json()["data"]["items"] == []
    assert await search(client, other_user, "brew temperature grind beans") == []
    scoped = await client.get(
        "/api/knowledge/search",
        params={"q": "brew", "file_id": created["id"]},
        headers=other_user.headers,
    )
    assert scoped.status_code == 404
    base = await client.post("/api/knowledge", json={"name": "Mine"}, headers=other_user.headers)
    adding = await client.post(
        f"/api/knowledge/{base.json()['data']['id']}/files",
        json={"file_id": created["id"]},
        headers=other_user.headers,
    )
    assert adding.status_code == 404
    assert (await file_of(client, user, created["id"]))["status"] == "ready"


async def test_unreadable_files_fail_with_their_reason(
    client: httpx.AsyncClient, user: TestUser, worker: Worker, tmp_path: Path
) -> None:
    pdf = write_pdf(tmp_path / "cut.pdf", ["Some words on a page."] * 3).read_bytes()
    broken = await upload(client, user, "cut.pdf", pdf[: len(pdf) // 3], "application/pdf")
    bomb_path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(bomb_path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w") as member:
            zeros = b"\0" * (1 << 20)
            for _ in range(300):
                member.write(zeros)
    bomb = await upload(
        client,
        user,
        "bomb.docx",
        bomb_path.read_bytes(),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    )
    fake_docx = io.BytesIO()
    with zipfile.ZipFile(fake_docx, "w") as archive:
        archive.writestr("hello.txt", "not a word document")
    not_docx = await upload(client, user, "letter.docx", fake_docx.getvalue())
    empty = await upload(client, user, "empty.md", b"   \n\n  \n", "text/markdown")
    expected = {
        broken.json()["data"]["id"]: "unreadable",
        bomb.json()["data"]["id"]: "zip_bomb",
        not_docx.json()["data"]["id"]: "type_mismatch",
        empty.json()["data"]["id"]: "no_text",
    }
    for file_id, code in expected.items():
        result = await settled(client, user, file_id)
        assert result["status"] == "failed", result
        assert result["error"]["code"] == code, result
        assert result["error"]["message"]
        assert result["chunks"] == 0


async def test_a_file_deleted_before_its_ingestion_ends_leaves_nothing(
    client: httpx.AsyncClient, user: TestUser, app: FastAPI
) -> None:
    created = (await upload(client, user, "guide.md", GUIDE, "text/markdown")).json()["data"]
    assert (await client.delete(f"/api/files/{created['id']}", headers=user.headers)).status_code
    running = build_worker(app.state.runtime)
    running.poll_seconds = 0.1
    running.start()
    try:

        async def ingestion_done() -> bool:
            jobs = await jobs_of(app.state.database, "files.ingest")
            return bool(jobs) and all(job.status == "succeeded" for job in jobs)

        await wait_for(ingestion_done)
    finally:
        await running.stop(grace_seconds=0)
    assert await chunk_count(app) == 0


async def test_uploads_over_the_limit_or_the_quota_are_refused(
    settings: Settings, user: TestUser, tmp_path: Path
) -> None:
    small = settings.model_copy(
        update={
            "max_upload_bytes": 4096,
            "user_storage_quota_bytes": 10_000,
            "data_dir": tmp_path,
        }
    )
    application = create_app(small)
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            too_big = await upload(http, user, "big.txt", b"a" * 5000, "text/plain")
            assert too_big.status_code == 413
            assert too_big.json()["error"]["code"] == "payload_too_large"
            # Concurrent uploads of 3,000 bytes each: at most three fit in 10,000.
            results = await asyncio.gather(
                *(
                    upload(http, user, f"part{n}.txt", f"{n:04d}".encode() * 750, "text/plain")
                    for n in range(6)
                )
            )
            codes = sorted(result.status_code for result in results)
            assert codes == [201, 201, 201, 413, 413, 413], [r.text for r in results]
            refused = [result for result in results if result.status_code == 413]
            assert all(r.json()["error"]["code"] == "storage_quota_exceeded" for r in refused)
            listed = await http.get("/api/files", headers=user.headers)
            assert len(listed.json()["data"]["items"]) == 3
            # Deleting gives the bytes back.
            first = listed.json()["data"]["items"][0]["id"]
            await http.delete(f"/api/files/{first}", headers=user.headers)
            again = await upload(http, user, "again.txt", b"b" * 3000, "text/plain")
            assert again.status_code == 201, again.text
