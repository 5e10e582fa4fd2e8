"""The transport's eager send: a frame is written at once, and a send that then has to wait
for the socket to drain is finished in a task (node.bursts.finish_send)."""

from __future__ import annotations

import asyncio

import pytest

from node.bursts import finish_send

pytestmark = pytest.mark.asyncio


async def test_a_send_that_waits_after_writing_is_finished_in_a_task() -> None:
    loop = asyncio.get_running_loop()
    drained = loop.create_future()
    steps: list[str] = []

    async def send() -> None:
        steps.append("written")
        await drained
        steps.append("drained")

    coro = send()
    pending = coro.send(None)  # what Transport._write_now does
    assert steps == ["written"]
    task = loop.create_task(finish_send(coro, pending))
    await asyncio.sleep(0)
    assert not task.done()
    drained.set_result(None)
    await task
    assert steps == ["written", "drained"]


async def test_cancelling_the_task_reaches_the_waiting_send() -> None:
    loop = asyncio.get_running_loop()
    never = loop.create_future()
    steps: list[str] = []

    async def send() -> None:
        try:
            await never
        finally:
            steps.append("cleaned up")

    coro = send()
    task = loop.create_task(finish_send(coro, coro.send(None)))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["cleaned up"]


async def test_an_error_while_draining_is_raised_from_the_task() -> None:
    loop = asyncio.get_running_loop()
    broken = loop.create_future()

    async def send() -> None:
        await broken

    coro = send()
    task = loop.create_task(finish_send(coro, coro.send(None)))
    broken.set_exception(ConnectionResetError("peer went away"))
    with pytest.raises(ConnectionResetError):
        await task
