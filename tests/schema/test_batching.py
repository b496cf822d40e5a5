"""GroupWriter: concurrent callers share writes, each told its own outcome."""

from __future__ import annotations

import asyncio

import pytest

from schema.batching import GroupWriter


class Recorder:
    def __init__(self) -> None:
        self.writes: list[list[int]] = []

    async def write(self, items: list[int]) -> None:
        self.writes.append(list(items))
        await asyncio.sleep(0)


async def test_callers_arriving_during_the_linger_share_one_write() -> None:
    recorder = Recorder()
    writer = GroupWriter(recorder.write, max_batch=100, linger=0.05)

    async def late(item: int) -> None:
        await asyncio.sleep(0.01 * item)  # staggered, all inside the linger
        await writer.submit(item)

    await asyncio.gather(*(late(i) for i in range(4)))
    assert recorder.writes == [[0, 1, 2, 3]]


async def test_without_linger_a_lone_caller_is_written_at_once() -> None:
    recorder = Recorder()
    writer = GroupWriter(recorder.write, max_batch=100)
    await writer.submit(1)
    await writer.submit(2)
    assert recorder.writes == [[1], [2]]


async def test_max_batch_splits_and_failures_reach_every_caller_of_the_batch() -> None:
    calls: list[list[int]] = []

    async def write(items: list[int]) -> None:
        calls.append(items)
        if 3 in items:
            raise OSError("down")

    writer = GroupWriter(write, max_batch=2, linger=0.01)
    results = await asyncio.gather(*(writer.submit(i) for i in range(4)), return_exceptions=True)
    assert calls == [[0, 1], [2, 3]]
    assert results[:2] == [None, None]
    assert all(isinstance(r, OSError) for r in results[2:])


async def test_stopping_during_the_linger_tells_callers_it_was_not_written() -> None:
    recorder = Recorder()
    writer = GroupWriter(recorder.write, max_batch=100, linger=10)
    caller = asyncio.create_task(writer.submit(1))
    await asyncio.sleep(0.01)
    assert writer._flusher is not None
    writer._flusher.cancel()
    with pytest.raises(ConnectionAbortedError):
        await caller
    assert recorder.writes == []


async def test_no_linger_after_a_large_write() -> None:
    recorder = Recorder()
    writer = GroupWriter(recorder.write, max_batch=100, linger=10, linger_below=3)
    writer._last_size = 5  # the previous write was large: the writer is busy
    async with asyncio.timeout(1):
        await writer.submit(1)
    assert recorder.writes == [[1]]


async def test_a_cancelled_caller_leaves_its_neighbours_written_and_told() -> None:
    release = asyncio.Event()
    writes: list[list[int]] = []

    async def write(items: list[int]) -> None:
        await release.wait()
        writes.append(list(items))

    writer = GroupWriter(write, max_batch=100)
    first = asyncio.create_task(writer.submit(1))
    await asyncio.sleep(0)  # the write of [1] has begun and waits
    waiting = [asyncio.create_task(writer.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0)
    waiting[1].cancel()  # gave up while queued for the next write
    first.cancel()  # gave up while its write is in progress
    release.set()
    results = await asyncio.gather(first, *waiting, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert isinstance(results[2], asyncio.CancelledError)
    assert (results[1], results[3]) == (None, None)
    # What was submitted is written all the same: nobody was told it was, or was not.
    assert writes == [[1], [2, 3, 4]]
