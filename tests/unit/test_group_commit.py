"""GroupCommit: batches of concurrent callers, per-item errors, and the linger of a busy stream."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from cloudtuner.services.group_commit import GroupCommit


class Recorder:
    """A write function that records its batches and doubles each item (or fails on request)."""

    def __init__(self, fail_batches_with: int | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_batches_with = fail_batches_with

    async def __call__(self, batch: list[int]) -> Sequence[int | Exception]:
        self.batches.append(list(batch))
        if self.fail_batches_with is not None and self.fail_batches_with in batch and len(batch) > 1:
            raise RuntimeError("the batch failed")
        return [ValueError(f"bad {item}") if item < 0 else item * 2 for item in batch]


async def test_callers_of_one_moment_share_a_batch_and_get_their_own_results() -> None:
    write = Recorder()
    writer: GroupCommit[int, int] = GroupCommit(write, name="test")
    results = await asyncio.gather(*(writer.submit(n) for n in (1, 2, -3, 4)), return_exceptions=True)
    assert results[:2] == [2, 4]
    assert isinstance(results[2], ValueError)
    assert results[3] == 8
    assert write.batches == [[1, 2, -3, 4]]


async def test_a_failed_batch_is_written_again_item_by_item() -> None:
    write = Recorder(fail_batches_with=7)
    writer: GroupCommit[int, int] = GroupCommit(write, name="test", one_by_one_on_failure=True)
    assert await asyncio.gather(writer.submit(7), writer.submit(8)) == [14, 16]
    assert write.batches == [[7, 8], [7], [8]]


async def test_max_batch_caps_a_batch() -> None:
    write = Recorder()
    writer: GroupCommit[int, int] = GroupCommit(write, name="test", max_batch=2)
    await asyncio.gather(*(writer.submit(n) for n in range(5)))
    assert write.batches == [[0, 1], [2, 3], [4]]


async def test_a_lone_item_is_written_at_once() -> None:
    write = Recorder()
    writer: GroupCommit[int, int] = GroupCommit(write, name="test", linger_seconds=30.0)
    assert await asyncio.wait_for(writer.submit(1), timeout=5) == 2
    assert write.batches == [[1]]


async def test_after_a_batch_of_several_a_flush_waits_for_as_many() -> None:
    """The linger is long here, so a flush waits for the batch size it aims at, not for the time."""
    gate = asyncio.Event()
    write = Recorder()

    async def gated(batch: list[int]) -> Sequence[int | Exception]:
        await gate.wait()
        return await write(batch)

    writer: GroupCommit[int, int] = GroupCommit(gated, name="test", max_batch=16, linger_seconds=30.0)
    pair = asyncio.gather(writer.submit(0), writer.submit(1))  # side by side: one batch
    await asyncio.sleep(0.01)
    queued_meanwhile = asyncio.create_task(writer.submit(2))  # while that batch is being written
    gate.set()
    assert await pair == [0, 2]
    await asyncio.sleep(0.01)
    assert not queued_meanwhile.done(), "held until a second item joins it"
    assert await asyncio.wait_for(writer.submit(3), timeout=10) == 6
    assert await queued_meanwhile == 4
    assert write.batches == [[0, 1], [2, 3]]


@pytest.mark.parametrize("linger", [0.0, 0.001])
async def test_every_item_is_answered_under_load(linger: float) -> None:
    write = Recorder()
    writer: GroupCommit[int, int] = GroupCommit(write, name="test", max_batch=16, linger_seconds=linger)

    async def caller(start: int) -> list[int]:
        return [await writer.submit(start + n) for n in range(20)]

    results = await asyncio.wait_for(asyncio.gather(*(caller(100 * c) for c in range(10))), timeout=10)
    assert results == [[2 * (100 * c + n) for n in range(20)] for c in range(10)]
    assert sorted(item for batch in write.batches for item in batch) == sorted(
        100 * c + n for c in range(10) for n in range(20)
    )
