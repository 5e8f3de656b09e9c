"""The minimal relay: the smallest Starlette app that forwards `/v1/chat/completions` to the
upstream and streams the answer back through one shared HTTP client — the floor of what
forwarding a stream costs in Python, against which Parley's CPU and latency are compared.

It uses `httpx2`, the HTTP client Parley's own gateway and providers use, so the comparison is of
what Parley does beyond forwarding, not of two HTTP clients.

    uv run python -m bench.relay --port 9101 --upstream http://127.0.0.1:9100/v1
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx2
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route


def create_app(upstream: str) -> Starlette:
    """The relay's ASGI app, forwarding to `upstream` (a base URL ending in `/v1`)."""
    client = httpx2.AsyncClient(
        base_url=upstream,
        timeout=httpx2.Timeout(60.0),
        limits=httpx2.Limits(max_connections=1000, max_keepalive_connections=1000),
    )

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    async def completions(request: Request) -> Response:
        upstream_request = client.build_request(
            "POST",
            "/chat/completions",
            content=await request.body(),
            headers={"content-type": "application/json"},
        )
        answer = await client.send(upstream_request, stream=True)
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type"),
            background=BackgroundTask(answer.aclose),
        )

    return Starlette(
        routes=[Route("/v1/chat/completions", completions, methods=["POST"])], lifespan=lifespan
    )


def main() -> None:
    """Serve the relay on loopback."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.upstream),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
