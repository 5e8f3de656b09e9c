"""The minimal relays: the smallest Starlette app that forwards `/v1/chat/completions` to the
upstream and streams the answer back through one shared HTTP client, with no authentication, no
database and no limits — the floor of what forwarding a stream costs in Python, against which
Parley's CPU and latency are compared.

Two clients, each a target of its own: `aiohttp` (the client Parley's pass-through uses, and the
floor) and `httpx` (`httpx2`, the client the provider SDKs use).

    uv run python -m bench.relay --port 9101 --upstream http://127.0.0.1:9100/v1 --client aiohttp
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import httpx2
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

CLIENTS = ("aiohttp", "httpx")


def _httpx_app(upstream: str) -> Starlette:
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

    return _app(completions, lifespan)


def _aiohttp_app(upstream: str) -> Starlette:
    url = upstream + "/chat/completions"
    clients: list[aiohttp.ClientSession] = []

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        connector = aiohttp.TCPConnector(limit=1000, keepalive_timeout=75)
        clients.append(
            aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60))
        )
        yield
        await clients[0].close()

    async def completions(request: Request) -> Response:
        answer = await clients[0].post(
            url, data=await request.body(), headers={"content-type": "application/json"}
        )

        async def body() -> AsyncIterator[bytes]:
            async for chunk in answer.content.iter_any():
                yield chunk

        return StreamingResponse(
            body(),
            status_code=answer.status,
            media_type=answer.headers.get("content-type"),
            background=BackgroundTask(answer.release),
        )

    return _app(completions, lifespan)


def _app(completions: Callable[[Request], object], lifespan: object) -> Starlette:
    return Starlette(
        routes=[Route("/v1/chat/completions", completions, methods=["POST"])],
        lifespan=lifespan,  # type: ignore[arg-type]
    )


def create_app(upstream: str, client: str = "aiohttp") -> Starlette:
    """The relay's ASGI app, forwarding to `upstream` (a base URL ending in `/v1`) with `client`."""
    return _aiohttp_app(upstream) if client == "aiohttp" else _httpx_app(upstream)


def main() -> None:
    """Serve the relay on loopback."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--client", choices=CLIENTS, default="aiohttp")
    args = parser.parse_args()
    uvicorn.run(
        create_app(args.upstream, args.client),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


if __name__ == "__main__":
    main()
