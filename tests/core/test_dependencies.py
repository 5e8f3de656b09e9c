"""Every dependency of every route runs on the event loop.

FastAPI runs a plain `def` dependency in its thread pool: a thread hop per dependency per
request, which on `/v1` cost more CPU than the statements it serves. A new sync dependency
fails here.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.security import OAuth2PasswordRequestForm

# Classes FastAPI instantiates as dependencies (in its thread pool), allowed where it is cheap and
# off the hot paths: the password grant's form (`POST /api/auth/token`), which hashes anyway.
ALLOWED_CLASSES = {OAuth2PasswordRequestForm}


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    for sub in dependant.dependencies:
        yield sub
        yield from _dependants(sub)


def _runs_in_thread_pool(call: object) -> bool:
    if inspect.isclass(call):
        return call not in ALLOWED_CLASSES
    target = call if inspect.isroutine(call) else getattr(call, "__call__", call)  # noqa: B004
    return not (inspect.iscoroutinefunction(target) or inspect.isasyncgenfunction(target))


def test_no_route_dependency_runs_in_the_thread_pool(app: FastAPI) -> None:
    offenders: set[str] = set()
    routes = [
        context.original_route
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute)
    ]
    assert len(routes) > 30
    for route in routes:
        for sub in _dependants(route.dependant):
            if sub.call is not None and _runs_in_thread_pool(sub.call):
                offenders.add(f"{route.path}: {getattr(sub.call, '__qualname__', sub.call)}")
    assert not offenders, sorted(offenders)


def test_a_sync_dependency_is_caught() -> None:
    def sync_dependency() -> int:
        return 1

    async def async_dependency() -> int:
        return 1

    assert _runs_in_thread_pool(sync_dependency)
    assert not _runs_in_thread_pool(async_dependency)
