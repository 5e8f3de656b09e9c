"""Serving an ASGI app with uvicorn in a thread on a free loopback port: what every fake upstream
uses, and what `tests.fixtures.servers` builds Parley's own in-process live server on, so that
there is one piece of code that picks a port, waits for the start and stops the server."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp

START_TIMEOUT_SECONDS = 20.0
STOP_TIMEOUT_SECONDS = 15.0


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ServerThread:
    """An ASGI app served by uvicorn in a thread; `url` is its origin."""

    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        """Stop the server and wait for its thread."""
        self.server.should_exit = True
        self.thread.join(timeout=STOP_TIMEOUT_SECONDS)


def try_serve(app: ASGIApp, *, name: str, **config: Any) -> ServerThread | None:
    """Serve `app` on a free loopback port (`config` goes to `uvicorn.Config`); None, the server
    stopped again, when it did not start within `START_TIMEOUT_SECONDS`."""
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, **config
        )
    )

    def run() -> None:
        # uvicorn exits its thread (SystemExit) when the app's start-up fails; the caller sees
        # a server that never started, not an error left to the thread's excepthook.
        try:
            server.run()
        except SystemExit:
            return

    thread = threading.Thread(target=run, name=f"{name}-{port}", daemon=True)
    thread.start()
    running = ServerThread(f"http://127.0.0.1:{port}", server, thread)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            running.stop()
            return None
        time.sleep(0.01)
    return running


def serve(app: ASGIApp) -> ServerThread:
    """Serve a fake's `app` (no lifespan, no websockets) on a free loopback port until `stop()`."""
    running = try_serve(app, name="fake-upstream", lifespan="off", ws="none")
    if running is None:
        raise RuntimeError("the fake upstream did not start")
    return running
