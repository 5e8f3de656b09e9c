"""`python -m parley serve` in a child process, for end-to-end tests of the real command: start it
with a clean environment, wait until it is live, and always stop it (gracefully, then by force)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from parley.settings import Settings
from tests.conftest import free_port

START_TIMEOUT_SECONDS = 120.0


@dataclass
class ServerProcess:
    """A running `parley serve`: its base URL, the process, and the file its output goes to."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def clean_environment(**overrides: str) -> dict[str, str]:
    """The current environment without any Parley or OpenTelemetry setting, plus `overrides`."""
    names = {name.upper() for name in Settings.model_fields} | {"PARLEY_DATA_DIR"}
    environment = {
        key: value
        for key, value in os.environ.items()
        if key.upper() not in names and not key.upper().startswith(("PARLEY_", "OTEL_"))
    }
    environment.update(overrides)
    return environment


def _wait_until_live(server: ServerProcess, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"parley serve exited early:\n{server.output()}")
        try:
            if httpx.get(f"{server.url}/health/live", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"parley serve did not become live:\n{server.output()}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@contextmanager
def parley_serve(
    workdir: Path, env: dict[str, str], *args: str, start_timeout: float = START_TIMEOUT_SECONDS
) -> Iterator[ServerProcess]:
    """Run `python -m parley serve --port <free port> *args` in `workdir` with `env` (see
    `clean_environment`); yields once `/health/live` answers (within `start_timeout` seconds),
    and stops the server on exit."""
    port = free_port()
    log_path = workdir / f"serve-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "parley", "serve", "--port", str(port), *args],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        server = ServerProcess(f"http://127.0.0.1:{port}", process, log_path)
        try:
            _wait_until_live(server, start_timeout)
            yield server
        finally:
            _stop(process)
