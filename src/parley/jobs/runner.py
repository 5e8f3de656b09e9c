"""`parley worker`: a process that runs background jobs and nothing else.

It builds the same services as the API server (`parley.runtime`) and the same worker as its
in-process one (`parley.background`), then runs until SIGTERM or Ctrl-C: it stops taking jobs,
lets running ones finish for `WORKER_SHUTDOWN_SECONDS` (a second signal cuts that short), puts
back the rest, and exits.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import signal
from collections.abc import Sequence

from parley.core.telemetry import configure_tracing
from parley.jobs.queue import watch_enqueues
from parley.settings import Settings

logger = logging.getLogger(__name__)


async def serve_jobs(
    settings: Settings, *, concurrency: int | None, queues: Sequence[str] | None
) -> None:
    """Run a worker until SIGTERM or SIGINT."""
    from parley.background import build_worker
    from parley.runtime import open_runtime

    tracer_provider = configure_tracing(settings)
    watch_enqueues()
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    async with open_runtime(settings) as runtime:
        worker = build_worker(runtime, concurrency=concurrency, queues=queues)

        def on_signal() -> None:
            if stopping.is_set():
                worker.hurry()  # a second signal: no more grace
            stopping.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal)
        await runtime.turn_runner.run_background()
        worker.start()
        try:
            await stopping.wait()
            logger.info("stopping the worker")
            await worker.stop()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    tracer_provider.force_flush()


def run_worker(
    settings: Settings, *, concurrency: int | None, queues: Sequence[str] | None
) -> None:
    """`serve_jobs` on uvloop's event loop where it is installed."""
    coroutine = serve_jobs(settings, concurrency=concurrency, queues=queues)
    if importlib.util.find_spec("uvloop"):
        import uvloop

        uvloop.run(coroutine)
    else:
        asyncio.run(coroutine)
