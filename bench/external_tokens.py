"""`uv run python -m bench.external_tokens [--rounds 6]`: what a bearer JWT of an external issuer
(docs/identity.md) costs a request, beside Parley's own access token and an API key, on one
server in one run.

One `parley serve` (SQLite, no worker in its process) is configured with one external issuer
whose JWKS a loopback HTTP server here serves (an Ed25519 key and an RSA 2048 key, as Better Auth
and most OpenID Connect providers sign). Each round sends `--requests` `GET /api/users/me` at
`--concurrency` with each credential in turn (the order rotates from round to round) and reads the
server's CPU time: Parley's HS256 access token, an API key, an external EdDSA token and an
external RS256 token. Run twice: with the caller cache on (`AUTH_CACHE_SECONDS` 2, the default: a
client repeating its token is served from memory) and off (0: every request verifies its token).
Printed: server CPU-ms per request, each credential over Parley's own token. Loopback only; stops
by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from jwt.algorithms import OKPAlgorithm, RSAAlgorithm

from bench.load import run_load
from bench.proc import cpu_seconds
from bench.servers import Server, create_bench_user, parley_environment, sign_in, start_parley

ISSUER = "https://auth.bench.example"
CREDENTIALS = ("parley access token", "API key", "external EdDSA", "external RS256")


@contextmanager
def jwks_server(keys: list[dict[str, Any]]) -> Iterator[str]:
    """A loopback HTTP server answering the JWKS at `/jwks`: its URL."""
    body = json.dumps({"keys": keys}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks"
    finally:
        server.shutdown()
        server.server_close()


def external_token(private: Any, kid: str, algorithm: str) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": ISSUER,
        "sub": "bench-subject",
        "email": "bench-external@example.com",
        "name": "Bench External",
        "iat": now,
        "exp": now + 3600,
    }
    return jwt.encode(claims, private, algorithm=algorithm, headers={"kid": kid})


async def _round(server: Server, token: str, requests: int, concurrency: int) -> float:
    headers = {"Authorization": f"Bearer {token}"}

    def request(_: int) -> tuple[str, str, None, dict[str, str]]:
        return "GET", f"{server.url}/api/users/me", None, headers

    before = cpu_seconds(server.pid)
    result = await run_load(request, total=requests, concurrency=concurrency)
    after = cpu_seconds(server.pid)
    failures = {key: n for key, n in result.failures.items() if key != "no_first_token"}
    if failures:
        raise RuntimeError(f"{failures} requests failed")
    return (after - before) * 1000 / requests


def measure(
    root: Path, jwks_url: str, tokens: dict[str, str], cache_seconds: str, args: Any
) -> dict[str, list[float]]:
    env = parley_environment(root / f"data-{cache_seconds}", None, None)
    env |= {
        "AUTH_ISSUER": ISSUER,
        "AUTH_JWKS_URL": jwks_url,
        "AUTH_ALGORITHMS": "EdDSA,RS256",
        "AUTH_CACHE_SECONDS": cache_seconds,
    }
    create_bench_user(env)
    server = start_parley(root, env, name=f"parley-cache-{cache_seconds}")
    try:
        own = sign_in(server, budget_usd=None)
        credentials = {
            "parley access token": own["access_token"],
            "API key": own["api_key"],
            **tokens,
        }
        for name, token in credentials.items():  # warm-up (the external user's first sign-in)
            try:
                asyncio.run(_round(server, token, 200, 8))
            except RuntimeError as exc:
                raise RuntimeError(f"{name}: {exc}; see {root}") from exc
        figures: dict[str, list[float]] = {name: [] for name in CREDENTIALS}
        for number in range(args.rounds):
            order = CREDENTIALS[number % 4 :] + CREDENTIALS[: number % 4]
            for name in order:
                figures[name].append(
                    asyncio.run(_round(server, credentials[name], args.requests, args.concurrency))
                )
        return figures
    finally:
        server.stop()


def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(prog="python -m bench.external_tokens", description=__doc__)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    ed_key = ed25519.Ed25519PrivateKey.generate()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_kid, rsa_kid = uuid.uuid4().hex[:16], uuid.uuid4().hex[:16]
    keys = [
        {**OKPAlgorithm.to_jwk(ed_key.public_key(), as_dict=True), "kid": ed_kid, "alg": "EdDSA"},
        {**RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), "kid": rsa_kid, "alg": "RS256"},
    ]
    tokens = {
        "external EdDSA": external_token(ed_key, ed_kid, "EdDSA"),
        "external RS256": external_token(rsa_key, rsa_kid, "RS256"),
    }
    with (
        tempfile.TemporaryDirectory(prefix="parley-external-") as scratch,
        jwks_server(keys) as url,
    ):
        root = Path(scratch)
        print(
            f"GET /api/users/me, {args.requests} a round at concurrency {args.concurrency}, "
            f"{args.rounds} rounds; server CPU-ms per request (median of the rounds), and over "
            "Parley's own token\n"
        )
        print("| AUTH_CACHE_SECONDS | " + " | ".join(CREDENTIALS) + " |")
        print("| --- |" + " --- |" * len(CREDENTIALS))
        for cache_seconds in ("2", "0"):
            figures = measure(root, url, tokens, cache_seconds, args)
            own = statistics.median(figures["parley access token"])
            medians = {name: statistics.median(figures[name]) for name in CREDENTIALS}
            cells = [f"{medians[name]:.2f} ({medians[name] / own:.2f}x)" for name in CREDENTIALS]
            print(f"| {cache_seconds} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
