"""Bursts: what one stream sends in the same event-loop pass, after its first message.

Under load a node sends a peer many messages in one pass of its event loop:
about twenty at a time to each member at 512 closed-loop clients. Each message written
alone costs a WebSocket frame, a TLS record, a write and a wake-up on both sides. A
:class:`PassBurst` lets the first message of a pass go at once (a lone message waits for
nothing) and holds the rest until the pass ends; :func:`batch_frames` then packs them into
as few :class:`protocol.batch.FrameBatch` frames as the frame limit allows.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from protocol.batch import FRAME_BATCH_MESSAGES_MAX, FrameBatch
from protocol.codec import encode

# What a FrameBatch adds around its frames, at most: its tag and field name, and a msgpack
# bin header (5 bytes) per frame.
_BATCH_OVERHEAD_BYTES = 64
_FRAME_OVERHEAD_BYTES = 5


class PassBurst:
    """Holds the frames sent after the first one of an event-loop pass, and hands them to
    *flush* (in the order they were held) once the pass ends."""

    __slots__ = ("_flush", "_held")

    def __init__(self, flush: Callable[[list[bytes]], None]) -> None:
        self._flush = flush
        self._held: list[bytes] | None = None

    def hold(self, frame: bytes) -> bool:
        """Hold *frame* if a burst is open (True); False means send it now yourself, and
        call :meth:`open` if you did."""
        if self._held is None:
            return False
        self._held.append(frame)
        return True

    def open(self) -> None:
        """Start holding what is sent for the rest of this pass."""
        self._held = []
        asyncio.get_running_loop().call_soon(self._end)

    def _end(self) -> None:
        held, self._held = self._held, None
        if held:
            self._flush(held)


def batch_frames(frames: list[bytes], limit: int) -> list[tuple[bytes, int]]:
    """*frames* packed for writing in order: (frame, how many messages it holds) for each,
    a FrameBatch of several wherever they fit in *limit* bytes, a frame alone otherwise."""
    out = []
    start = 0
    while start < len(frames):
        size = _BATCH_OVERHEAD_BYTES
        end = start
        while end < len(frames) and end - start < FRAME_BATCH_MESSAGES_MAX:
            size += len(frames[end]) + _FRAME_OVERHEAD_BYTES
            if size > limit and end > start:
                break
            end += 1
        if end == start + 1:
            out.append((frames[start], 1))
        else:
            out.append((encode(FrameBatch(frames=tuple(frames[start:end]))), end - start))
        start = end
    return out


def send_eagerly(send: Coroutine[Any, Any, None]) -> asyncio.Task[None] | None:
    """Run *send* (a WebSocket ``send_bytes``) now, up to its first wait: without
    compression aiohttp writes the frame at once and only then may wait for the socket to
    drain. That wait, if any, finishes in the task returned (None if it completed). What
    the send raises before its first wait is raised here."""
    try:
        pending = send.send(None)
    except StopIteration:
        return None
    return asyncio.get_running_loop().create_task(finish_send(send, pending))


async def finish_send(send: Coroutine[Any, Any, None], pending: Any) -> None:
    """Drive a send coroutine that was started eagerly (run up to its first wait, as
    asyncio's eager tasks do from Python 3.12 on) and is now waiting on *pending*."""
    while True:
        try:
            if pending is None:
                await asyncio.sleep(0)  # a bare yield: just let the loop run once
            else:
                # A future yielded to a task is marked blocking until the task takes it;
                # nobody took this one, so take it here (as Task.__step does) and await it.
                pending._asyncio_future_blocking = False
                await pending
        except BaseException as exc:  # hand cancellation and errors to the coroutine
            try:
                pending = send.throw(exc)
            except StopIteration:
                return
            continue
        try:
            pending = send.send(None)
        except StopIteration:
            return
