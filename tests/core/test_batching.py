"""`GroupCommit`: what is submitted while a batch is written goes in the next batch; results and
errors reach their own submitters; a cancelled submitter's item is still written."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Sequence

import pytest

from parley.core.batching import GroupCommit


class Recorder:
    def __init__(self, *, delay: float = 0.01, fail: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self.delay = delay
        self.fail = fail

    async def write(self, items: Sequence[str]) -> list[str | Exception]:
        self.batches.append(list(items))
        await asyncio.sleep(self.delay)
        if self.fail == "all":
            raise RuntimeError("the transaction failed")
        return [ValueError(item) if item == self.fail else item.upper() for item in items]


async def test_items_arriving_together_share_a_batch_and_get_their_own_results() -> None:
    recorder = Recorder()
    batcher: GroupCommit[str, str] = GroupCommit(recorder.write, max_batch=100, name="t")
    first = asyncio.create_task(batcher.submit("a"))
    await asyncio.sleep(0)  # the writer has taken "a" alone
    rest = [asyncio.create_task(batcher.submit(item)) for item in "bcd"]
    assert await first == "A"
    assert [await task for task in rest] == ["B", "C", "D"]
    assert recorder.batches == [["a"], ["b", "c", "d"]]


async def test_batches_are_capped() -> None:
    recorder = Recorder(delay=0)
    batcher: GroupCommit[str, str] = GroupCommit(recorder.write, max_batch=2, name="t")
    results = await asyncio.gather(*(batcher.submit(item) for item in "abcde"))
    assert results == list("ABCDE")
    assert recorder.batches == [["a", "b"], ["c", "d"], ["e"]]


async def test_an_item_error_reaches_only_its_submitter() -> None:
    batcher: GroupCommit[str, str] = GroupCommit(Recorder(fail="b").write, max_batch=9, name="t")
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in "abc"), return_exceptions=True)
    assert outcomes[0] == "A"
    assert outcomes[2] == "C"
    assert isinstance(outcomes[1], ValueError)


async def test_a_failed_write_fails_every_item_of_its_batch() -> None:
    batcher: GroupCommit[str, str] = GroupCommit(Recorder(fail="all").write, max_batch=9, name="t")
    outcomes = await asyncio.gather(*(batcher.submit(i) for i in "ab"), return_exceptions=True)
    assert [str(outcome) for outcome in outcomes] == ["the transaction failed"] * 2


async def test_a_cancelled_submitter_does_not_stop_the_write(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder(delay=0.05, fail="a")
    batcher: GroupCommit[str, str] = GroupCommit(recorder.write, max_batch=9, name="t")
    task = asyncio.create_task(batcher.submit("a"))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await batcher.aclose()  # waits for the batch in progress
    assert recorder.batches == [["a"]]
    gc.collect()  # asyncio reports an unread exception when its future is collected
    assert "never retrieved" not in caplog.text


async def test_with_a_delay_items_posted_one_after_another_share_a_batch() -> None:
    recorder = Recorder(delay=0)
    batcher: GroupCommit[str, str] = GroupCommit(recorder.write, max_batch=100, name="t", delay=0.2)
    futures = []
    for item in "abc":
        futures.append(batcher.post(item))
        await asyncio.sleep(0.01)  # each after the last was queued, well within the delay
    assert recorder.batches == []  # nothing written before the delay is out
    assert [await future for future in futures] == ["A", "B", "C"]
    assert recorder.batches == [["a", "b", "c"]]


async def test_flush_writes_without_waiting_out_the_delay() -> None:
    recorder = Recorder(delay=0)
    batcher: GroupCommit[str, str] = GroupCommit(recorder.write, max_batch=100, name="t", delay=60)
    future = batcher.post("a")
    await asyncio.wait_for(batcher.flush(), timeout=5)
    assert future.result() == "A"
    assert recorder.batches == [["a"]]
    await batcher.flush()  # nothing queued: returns at once


async def test_a_full_batch_waits_no_longer_and_close_writes_the_rest() -> None:
    recorder = Recorder(delay=0)
    batcher: GroupCommit[str, str] = GroupCommit(recorder.write, max_batch=2, name="t", delay=60)
    first = [batcher.post(item) for item in "ab"]
    await asyncio.wait_for(asyncio.gather(*first), timeout=5)
    last = batcher.post("c")
    await asyncio.wait_for(batcher.aclose(), timeout=5)
    assert last.result() == "C"
    assert recorder.batches == [["a", "b"], ["c"]]
