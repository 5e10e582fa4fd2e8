"""node.bursts: the first frame of an event-loop pass goes at once, the rest of the pass is
held and flushed in order when the pass ends; batches keep to the frame limit and to
FrameBatch's count, and decode back to the frames in order."""

from __future__ import annotations

import asyncio

import pytest

from node.bursts import PassBurst, batch_frames
from protocol.batch import FRAME_BATCH_MESSAGES_MAX, FrameBatch
from protocol.codec import decode


@pytest.mark.asyncio
async def test_a_burst_holds_the_rest_of_the_pass_and_flushes_it_in_order() -> None:
    flushed: list[list[bytes]] = []
    burst = PassBurst(flushed.append)
    assert not burst.hold(b"first")  # nothing open: the caller sends it now
    burst.open()
    assert burst.hold(b"a") and burst.hold(b"b")
    assert flushed == []
    await asyncio.sleep(0)  # the pass ends
    assert flushed == [[b"a", b"b"]]
    assert not burst.hold(b"next pass")  # the burst closed with its pass


@pytest.mark.asyncio
async def test_a_burst_with_nothing_held_flushes_nothing() -> None:
    flushed: list[list[bytes]] = []
    burst = PassBurst(flushed.append)
    burst.open()
    await asyncio.sleep(0)
    assert flushed == []


def _unpacked(packed: list[tuple[bytes, int]]) -> list[bytes]:
    out = []
    for data, count in packed:
        if count == 1:
            out.append(data)
        else:
            frames = decode(data, FrameBatch).frames
            assert len(frames) == count
            out.extend(frames)
    return out


@pytest.mark.parametrize(
    ("sizes", "limit", "writes"),
    [
        ([10] * 5, 1_000, 1),  # all in one batch
        ([400, 400, 400], 1_000, 2),  # two fit, then one alone
        ([10, 5_000, 10], 1_000, 3),  # a frame over the limit goes alone, between others
        ([1] * (FRAME_BATCH_MESSAGES_MAX + 1), 1 << 20, 2),  # at most the batch's count
    ],
)
def test_batches_keep_the_order_and_the_limits(sizes: list[int], limit: int, writes: int) -> None:
    frames = [bytes([i % 256]) * n for i, n in enumerate(sizes)]
    packed = batch_frames(frames, limit)
    assert len(packed) == writes
    assert _unpacked(packed) == frames
    for data, count in packed:
        if count > 1:
            assert len(data) <= limit
