"""The processes a benchmark runs against, each started on a free loopback port and stopped at the
end: the fake upstream, the minimal relay, and Parley (`python -m parley serve`), with Parley's
bench user, API key and budget set up through its own command line and API."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

READY_TIMEOUT_SECONDS = 120.0
PORTKEY_DIR = Path(__file__).parent / "portkey"
BENCH_MODEL = "bench-64"
PARLEY_MODEL = f"openai:{BENCH_MODEL}"
BENCH_EMAIL = "bench@example.com"
BENCH_PASSWORD = "bench-password-1"
JWT_SECRET = "bench-secret-" + "x" * 40
MODELS_FILE = f"""
[[models]]
id = "{PARLEY_MODEL}"
name = "Bench 64"
context_window = 128000
input_price_per_mtok = 0.15
output_price_per_mtok = 0.60
"""


def free_port() -> int:
    """A port nobody listens on now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process and where it listens."""

    name: str
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float = 0.0
    ready_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def pid(self) -> int:
        """The server's process id."""
        return self.process.pid

    def stop(self) -> None:
        """Stop gracefully, then by force."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _environment(**values: str) -> dict[str, str]:
    keep = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PARLEY_", "OPENAI_", "ANTHROPIC_", "GEMINI_", "OTEL_", "RATE_"))
        and key not in {"DATABASE_URL", "REDIS_URL", "JWT_SECRET", "DEFAULT_MODEL"}
    }
    keep.update(values)
    return keep


def start(
    name: str, command: list[str], port: int, ready_path: str, env: dict[str, str], logs: Path
) -> Server:
    """Start a server and wait until `ready_path` answers 200."""
    log_path = logs / f"{name}.log"
    handle = log_path.open("wb")
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)  # noqa: S603
    server = Server(name, f"http://127.0.0.1:{port}", process, log_path, started_at=started)
    deadline = started + READY_TIMEOUT_SECONDS
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited early:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(server.url + ready_path, timeout=1).status_code < 500:
                server.ready_seconds = time.perf_counter() - started
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    server.stop()
    raise RuntimeError(f"{name} did not start:\n{log_path.read_text()[-4000:]}")


def start_upstream(logs: Path, *, tokens: int = 64) -> Server:
    """The fake OpenAI-compatible upstream."""
    port = free_port()
    command = [sys.executable, "-m", "bench.upstream", "--port", str(port), "--tokens", str(tokens)]
    return start("upstream", command, port, "/v1/models", _environment(), logs)


def start_relay(logs: Path, upstream: Server, *, client: str = "aiohttp") -> Server:
    """The minimal relay in front of `upstream`, forwarding with `client` (`aiohttp`, `httpx`)."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "bench.relay",
        "--port",
        str(port),
        "--upstream",
        upstream.url + "/v1",
        "--client",
        client,
    ]
    return start(f"relay-{client}", command, port, "/v1/chat/completions", _environment(), logs)


def portkey_installed() -> Path:
    """Portkey's gateway, installed from npm at the versions `bench/portkey/package-lock.json`
    pins (once; `npm ci` needs Node.js and the npm registry). Returns its server script."""
    script = PORTKEY_DIR / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"
    if not script.exists():
        npm = shutil.which("npm")
        if npm is None:
            raise RuntimeError("Portkey's gateway needs Node.js and npm (apt-get install npm)")
        subprocess.run(  # noqa: S603
            [npm, "ci", "--no-audit", "--no-fund", "--prefix", str(PORTKEY_DIR)],
            check=True,
            capture_output=True,
        )
    return script


def start_portkey(logs: Path) -> Server:
    """Portkey's open-source gateway (Node.js, Hono) on a free port: each request names the
    upstream in its `x-portkey-provider` and `x-portkey-custom-host` headers."""
    script = portkey_installed()
    node = shutil.which("node") or "node"
    port = free_port()
    command = [node, str(script), f"--port={port}", "--headless"]
    env = _environment(NODE_ENV="production")
    return start("portkey", command, port, "/", env, logs)


def parley_environment(
    data_dir: Path, upstream: Server | None, database_url: str | None
) -> dict[str, str]:
    """Parley's settings for a benchmark: the fake upstream as its only provider (or, without
    one, the offline model only)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    values = {
        "PARLEY_DATA_DIR": str(data_dir),
        "JWT_SECRET": JWT_SECRET,
        "RATE_LIMIT_CHAT_PER_MINUTE": "1000000",
        "RATE_LIMIT_V1_PER_MINUTE": "1000000",
        "RATE_LIMIT_LOGIN_PER_MINUTE": "1000000",
        "DB_POOL_SIZE": "20",
        "DB_MAX_OVERFLOW": "20",
        # A run signs in once per server; filling a million tasks between the first and the
        # last measurement took longer than the default 15 minutes on a slow machine.
        "ACCESS_TOKEN_TTL_SECONDS": str(24 * 3600),
        # The request path alone: each new chat's first reply enqueues its `chat.title` job (that
        # INSERT is measured), but no worker in the measured process runs it, as when
        # `parley worker` processes run the jobs. The queue has its own benchmark (bench.jobs).
        "WORKER_IN_PROCESS": "false",
    }
    if upstream is not None:
        models_file = data_dir / "models.toml"
        models_file.write_text(MODELS_FILE, encoding="utf-8")
        values |= {
            "OPENAI_BASE_URL": upstream.url + "/v1",
            "OPENAI_API_KEY": "sk-bench",
            "OPENAI_MODELS": BENCH_MODEL,
            "PARLEY_MODELS_FILE": str(models_file),
            "DEFAULT_MODEL": PARLEY_MODEL,
        }
    if database_url:
        values["DATABASE_URL"] = database_url
    return _environment(**values)


def start_parley(logs: Path, env: dict[str, str], *, name: str = "parley") -> Server:
    """`python -m parley serve` on a free port (it migrates the database first)."""
    port = free_port()
    command = [sys.executable, "-m", "parley", "serve", "--port", str(port)]
    return start(name, command, port, "/health/live", env, logs)


def create_bench_user(env: dict[str, str], *, python: str = sys.executable) -> None:
    """The bench user, an admin, made with `parley user create` (run by `python`: another
    checkout's interpreter for an A/B run)."""
    subprocess.run(  # noqa: S603
        [python, "-m", "parley", "migrate", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
    )
    subprocess.run(  # noqa: S603
        [
            python,
            "-m",
            "parley",
            "user",
            "create",
            "--email",
            BENCH_EMAIL,
            "--password",
            BENCH_PASSWORD,
            "--admin",
        ],
        env=env,
        check=True,
        capture_output=True,
    )


def sign_in(parley: Server, *, budget_usd: float | None = 1_000_000.0) -> dict[str, str]:
    """Log the bench user in, set their monthly budget (so that every call holds and settles a
    reservation) and make an API key. Returns `access_token`, `api_key` and `user_id`."""
    with httpx.Client(base_url=parley.url, timeout=30) as http:
        login = http.post(
            "/api/auth/login", json={"email": BENCH_EMAIL, "password": BENCH_PASSWORD}
        ).raise_for_status()
        data = login.json()["data"]
        token = data["tokens"]["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        user_id = data["user"]["id"]
        http.patch(
            f"/api/admin/users/{user_id}", json={"monthly_budget_usd": budget_usd}, headers=headers
        ).raise_for_status()
        key = http.post("/api/users/me/api-keys", json={"name": "bench"}, headers=headers)
        key.raise_for_status()
        return {"access_token": token, "api_key": key.json()["data"]["key"], "user_id": user_id}
