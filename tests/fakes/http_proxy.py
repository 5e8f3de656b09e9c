"""An HTTP forward proxy on loopback (RFC 9112's absolute-form requests for `http://` targets),
served on the test's own event loop: it records each request's target, sends the request on to
its origin in origin-form, and pipes the answer back. One request per connection (it answers
`Connection: close`), which is all a test needs."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit


class ForwardProxy:
    """What the proxy saw: `targets`, each request's absolute URL."""

    def __init__(self) -> None:
        self.targets: list[str] = []
        self.url = ""

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            method, target, version = (await reader.readline()).decode().split()
            self.targets.append(target)
            headers = []
            while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                name = line.split(b":", 1)[0].strip().lower()
                if name not in (b"connection", b"proxy-connection", b"keep-alive"):
                    headers.append(line)
            body = b""
            for line in headers:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    body = await reader.readexactly(int(value.strip()))
            origin = urlsplit(target)
            path = origin.path + (f"?{origin.query}" if origin.query else "")
            up_reader, up_writer = await asyncio.open_connection(origin.hostname, origin.port)
            up_writer.write(f"{method} {path} {version}\r\n".encode())
            up_writer.write(b"".join(headers) + b"connection: close\r\n\r\n" + body)
            await up_writer.drain()
            while chunk := await up_reader.read(65536):
                writer.write(chunk)
                await writer.drain()
            up_writer.close()
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


@asynccontextmanager
async def forward_proxy() -> AsyncIterator[ForwardProxy]:
    """A proxy on a free loopback port, for the block's duration."""
    proxy = ForwardProxy()
    server = await asyncio.start_server(proxy._handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    proxy.url = f"http://127.0.0.1:{port}"
    try:
        yield proxy
    finally:
        server.close()
        await server.wait_closed()
