"""PostgreSQL's `LISTEN` for the workers: a connection of its own (outside the pool) that hears
the `NOTIFY` of every committed enqueue, cancel and retry, and wakes the worker at once. When the
connection drops it is made again; meanwhile the worker's poll still finds due jobs."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from parley.jobs.queue import NOTIFY_CHANNEL

logger = logging.getLogger(__name__)
RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)


class PostgresListener:
    """Calls `on_notify(payload)` for each notification on the jobs' channel, until cancelled.

    Args:
        engine: the app's engine: its URL and connect arguments, not its pool.
        on_notify: called in the event loop with each payload (a queue name, or `cancel:<id>`).
        on_connect: called once the connection listens (also after a reconnect, when
            notifications may have been missed).
    """

    def __init__(
        self,
        engine: AsyncEngine,
        on_notify: Callable[[str], None],
        on_connect: Callable[[], None] | None = None,
    ) -> None:
        self.engine = engine
        self.on_notify = on_notify
        self.on_connect = on_connect
        self.listening = asyncio.Event()

    async def _connect(self) -> Any:
        import asyncpg  # type: ignore[import-untyped]  # the PostgreSQL driver, present wherever PostgreSQL is configured

        args, kwargs = self.engine.dialect.create_connect_args(self.engine.url)
        kwargs = {key: value for key, value in kwargs.items() if not key.startswith("prepared")}
        return await asyncpg.connect(*args, **kwargs)

    async def run(self) -> None:
        """Listen until cancelled, reconnecting after a lost connection."""
        failures = 0
        while True:
            connection = None
            try:
                connection = await self._connect()
                lost = asyncio.Event()
                connection.add_termination_listener(lambda _connection, lost=lost: lost.set())
                await connection.add_listener(
                    NOTIFY_CHANNEL, lambda *arguments: self.on_notify(str(arguments[3]))
                )
                failures = 0
                self.listening.set()
                if self.on_connect is not None:
                    self.on_connect()
                await lost.wait()
                logger.warning("the jobs' LISTEN connection was lost; reconnecting")
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.warning("cannot LISTEN for jobs; the workers poll meanwhile", exc_info=True)
            finally:
                self.listening.clear()
                if connection is not None and not connection.is_closed():
                    connection.terminate()  # no goodbye needed: LISTEN ends with the session
            await asyncio.sleep(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)])
            failures += 1
