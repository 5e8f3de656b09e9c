"""Group commit: many small writes that arrive together share one transaction.

A request that needs a short write of its own (a budget hold, a usage record) submits it and
waits. The first submission starts a writer task; everything submitted while that task writes a
batch goes into the next batch. At low load a batch holds one item and costs one task switch
more than writing directly; under load one transaction (one session, one commit) serves many
requests, which is most of what such a write costs on SQLAlchemy.

Writes nobody waits for (usage records, whose submitters `post` them) can also wait `delay`
seconds before each batch, so that the writes of calls that end one after another, not only at
once, share a transaction; `flush` writes what is queued without waiting out the delay.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

BatchWriter = Callable[[Sequence[T]], Awaitable[Sequence[R | Exception]]]


def _wake_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class GroupCommit(Generic[T, R]):
    """Writes submitted items in batches, one writer task at a time.

    Args:
        write: writes a batch (in one transaction) and returns, for each item in order, its
            result or the exception its submitter gets. If `write` itself raises, every item of
            the batch gets that exception.
        max_batch: the most items one call to `write` gets.
        name: the writer task's name.
        delay: seconds a batch waits for more items before it is written (0: none).
    """

    def __init__(
        self, write: BatchWriter[T, R], *, max_batch: int, name: str, delay: float = 0.0
    ) -> None:
        self._write = write
        self._max_batch = max_batch
        self._name = name
        self._delay = delay
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None
        self._writing: list[asyncio.Future[R]] = []  # the batch being written
        self._closing = False
        self._urgent = False  # a flush waits: the next batch does not wait out the delay

    async def submit(self, item: T) -> R:
        """Write `item` with the next batch and return its result once that batch is written.

        The write goes on if the caller is cancelled meanwhile.

        Raises:
            Exception: what `write` gave or raised for this item.
        """
        return await asyncio.shield(self.post(item))

    def post(self, item: T) -> asyncio.Future[R]:
        """Queue `item` for the next batch without waiting: the future of its result (an
        error in it is marked as seen, so nobody has to read it)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        # A submitter cancelled meanwhile never reads its outcome: mark an error as seen, or
        # asyncio logs "exception was never retrieved" (`write` logs what matters itself).
        future.add_done_callback(_consume)
        self._pending.append((item, future))
        if self._wake is not None and len(self._pending) >= self._max_batch:
            _wake_up(self._wake)  # a full batch waits no longer
        if self._writer is None or self._writer.done():
            # A context of its own: otherwise the writer would carry the request id and the
            # span of whichever request happened to start it into every later batch.
            self._writer = asyncio.create_task(
                self._drain(), name=self._name, context=contextvars.Context()
            )
        return future

    async def _linger(self) -> None:
        """Wait out the delay, unless a flush (or a full batch) ends it early."""
        loop = asyncio.get_running_loop()
        wake = self._wake = loop.create_future()
        timer = loop.call_later(self._delay, _wake_up, wake)
        try:
            await wake
        finally:
            timer.cancel()
            self._wake = None

    async def _drain(self) -> None:
        while self._pending:
            full = len(self._pending) >= self._max_batch
            if self._delay and not (self._closing or self._urgent or full):
                try:
                    await self._linger()
                except BaseException:  # cancelled (shutdown): nobody waits for ever
                    for _, future in self._pending:
                        future.cancel()
                    self._pending.clear()
                    raise
            self._urgent = False
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            futures = self._writing = [future for _, future in batch]
            try:
                outcomes: Sequence[R | Exception] = await self._write([item for item, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"{self._name}: {len(outcomes)} results for {len(batch)}")
            except Exception as exc:  # the whole batch failed: each submitter gets the error
                outcomes = [exc] * len(batch)
            except BaseException:  # cancelled (shutdown): nobody waits for ever
                futures += [future for _, future in self._pending]
                self._pending.clear()
                for future in futures:
                    if not future.done():
                        future.cancel()
                raise
            for future, outcome in zip(futures, outcomes, strict=True):
                if future.done():
                    continue
                if isinstance(outcome, Exception):
                    future.set_exception(outcome)
                else:
                    future.set_result(outcome)
            self._writing = []

    def hurry(self) -> None:
        """Write what is queued without waiting out the delay (without waiting for it here)."""
        if self._pending or self._writing:
            self._urgent = True
            if self._wake is not None:
                _wake_up(self._wake)

    async def flush(self) -> None:
        """Write what is queued now, without waiting out the delay, and return once everything
        submitted so far is written (or failed)."""
        waiting = [future for _, future in self._pending] + self._writing
        if not waiting:
            return
        self.hurry()
        await asyncio.wait(waiting)

    async def aclose(self) -> None:
        """Write everything submitted so far, without waiting out the delay, and wait until the
        writer has ended."""
        self._closing = True
        while self._writer is not None and not self._writer.done():
            if self._wake is not None:
                _wake_up(self._wake)
            await asyncio.wait({self._writer})
