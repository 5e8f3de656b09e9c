"""Serving needs nothing from the `dev` dependency group, so `uv run --no-dev parley serve` (the
README's quick start) works. The distributions only the dev group brings in are read from
uv.lock; a child interpreter in which their modules cannot be imported then imports every module of
Parley and every provider module, and `parley serve` in such a child answers on each surface."""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx

from tests.fixtures.servers import clean_environment, parley_serve

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "correct horse battery"

# Raises for any module of a dev-only distribution, as if it were not installed (it is not, after
# `uv sync --no-dev`). Installed as sitecustomize, so it is in place before Parley imports anything.
BLOCKER = """
import importlib.abc
import sys

DEV_ONLY = frozenset({modules!r})


class DevOnlyModules(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in DEV_ONLY:
            raise ModuleNotFoundError(f"No module named {{name!r}} (dev group only)", name=name)
        return None


sys.meta_path.insert(0, DevOnlyModules())
"""

IMPORT_EVERYTHING = """
import importlib
import pkgutil

import parley
from parley.llm.providers import _PROVIDER_MODULES

try:
    import pytest  # noqa: F401
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the dev-only blocker is not active")

names = [
    module.name
    for module in pkgutil.walk_packages(parley.__path__, "parley.")
    # __main__ runs the command; env.py runs Alembic's context (`parley serve` migrates, below)
    if module.name != "parley.__main__" and not module.name.startswith("parley.migrations.")
]
names += list(_PROVIDER_MODULES.values())
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _closure(packages: dict[str, dict[str, Any]], roots: list[dict[str, Any]]) -> set[str]:
    """The names of the locked distributions `roots` pull in, extras included. Markers are not
    evaluated: a platform-only dependency counts as needed, which can only shrink the dev-only
    set, never make this test fail wrongly."""
    seen: set[tuple[str, tuple[str, ...]]] = set()
    pending = list(roots)
    while pending:
        dependency = pending.pop()
        extras = tuple(dependency.get("extra", ()))
        if (dependency["name"], extras) in seen:
            continue
        seen.add((dependency["name"], extras))
        package = packages[dependency["name"]]
        pending.extend(package.get("dependencies", []))
        for extra in extras:
            pending.extend(package.get("optional-dependencies", {}).get(extra, []))
    return {name for name, _ in seen}


def dev_only_modules() -> set[str]:
    """Top-level modules whose every installed distribution comes with the dev group alone."""
    lock = tomllib.loads((ROOT / "uv.lock").read_text(encoding="utf-8"))
    packages = {package["name"]: package for package in lock["package"]}
    parley = packages["parley"]
    runtime = _closure(packages, parley["dependencies"])
    dev_only = _closure(packages, parley["dev-dependencies"]["dev"]) - runtime
    return {
        module
        for module, distributions in importlib.metadata.packages_distributions().items()
        if all(_canonical(distribution) in dev_only for distribution in distributions)
    }


def _environment_without_dev_group(tmp_path: Path) -> dict[str, str]:
    modules = dev_only_modules()
    # the lock reading works: the test tools are among the modules blocked
    assert {"pytest", "_pytest", "playwright", "schemathesis", "hypothesis", "mypy"} <= modules
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        BLOCKER.format(modules=sorted(modules)), encoding="utf-8"
    )
    return clean_environment(
        PYTHONPATH=str(hook), PARLEY_DATA_DIR=str(tmp_path / "data"), LOG_LEVEL="WARNING"
    )


def test_every_module_imports_without_the_dev_group(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING],
        env=_environment_without_dev_group(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert int(result.stdout) > 50


def test_serve_answers_on_every_surface_without_the_dev_group(tmp_path: Path) -> None:
    env = _environment_without_dev_group(tmp_path)
    with (
        parley_serve(tmp_path, env) as server,
        httpx.Client(base_url=server.url, timeout=60) as web,
    ):
        ready = web.get("/health/ready")
        docs = web.get("/docs")
        schema = web.get("/openapi.json")
        page = web.get("/")
        assets = [
            web.get(path) for path in re.findall(r'(?:href|src)="(/static/[^"]+)"', page.text)
        ]
        tokens = web.post(
            "/api/auth/register", json={"email": "lean@example.com", "password": PASSWORD}
        ).json()["data"]["tokens"]
        web.headers["authorization"] = f"Bearer {tokens['access_token']}"
        chat = web.post("/api/chats", json={}).json()["data"]
        turn = web.post(
            f"/api/chats/{chat['id']}/messages",
            params={"stream": "false"},
            json={"content": "add a task to buy milk tomorrow"},
        )
        tasks = web.get("/api/tasks").json()["data"]["items"]
        completion = web.post(
            "/v1/chat/completions",
            json={"model": "offline:parley", "messages": [{"role": "user", "content": "hi"}]},
        )
        mcp = web.post(
            "/mcp",
            headers={"accept": "application/json, text/event-stream"},
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "packaging-test", "version": "1"},
                },
            },
        )
        output = server.output()
    assert ready.json()["checks"]["database"] == "ok"
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    assert "/api/chats" in schema.json()["paths"]
    assert page.status_code == 200
    assert assets
    assert all(asset.status_code == 200 for asset in assets)
    assert turn.status_code == 201, turn.text
    assert turn.json()["data"]["assistant_message"]["status"] == "complete"
    assert [task["title"] for task in tasks] == ["Buy milk"]
    assert completion.status_code == 200, completion.text
    assert mcp.status_code == 200, mcp.text
    assert '"tools"' in mcp.text
    assert "dev group only" not in output
    assert "could not import" not in output
