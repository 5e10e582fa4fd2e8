"""The committed-block event stream (node.events) over a real aiohttp server on 127.0.0.1:
a listener gets the replay from its start block and then live blocks with no gap and no
repeat; a listener that falls too far behind is closed with the block to resume from; a
bad start is a 400."""

from __future__ import annotations

import json
import random
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web

from node import events as events_module
from node.events import EventHub
from storage.memory import MemoryKV
from storage.schema import open_store
from tests.contract.blocks_factory import ChainBuilder
from tests.unit.loopback import serving


class Served:
    def __init__(self, hub: EventHub, chain: ChainBuilder, url: str) -> None:
        self.hub, self.chain, self.url = hub, chain, url

    def commit(self, count: int) -> None:
        for block in self.chain.blocks(count, txs_per_block=1):
            self.hub.blocks.append(block)
            self.hub.publish(block)


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Served]:
    stores = open_store(MemoryKV())
    hub = EventHub(stores.blocks)
    app = web.Application()
    app.router.add_get("/v1/events", hub.serve)
    async with serving(app) as url:
        yield Served(hub, ChainBuilder(random.Random(5)), url + "/v1/events")


async def _numbers(ws: aiohttp.ClientWebSocketResponse, count: int) -> list[int]:
    out = []
    for _ in range(count):
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.TEXT, msg
        out.append(json.loads(msg.data)["block"])
    return out


@pytest.mark.asyncio
async def test_replay_then_live_without_gap_or_repeat(served: Served) -> None:
    served.commit(5)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(served.url + "?from=2") as ws,
    ):
        served.commit(3)  # committed while the replay may still be running
        assert await _numbers(ws, 6) == [2, 3, 4, 5, 6, 7]
        served.commit(1)
        message = json.loads((await ws.receive(timeout=5)).data)
        assert message["block"] == 8
        (tx,) = message["transactions"]
        assert tx["status"] == "VALID" and tx["events"] == []
        assert "args" in tx and all(isinstance(a, int) for a in tx["args"])  # sizes only


@pytest.mark.asyncio
async def test_a_listener_too_far_behind_is_told_where_to_resume(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_module, "LISTENER_QUEUE_BLOCKS", 2)
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(served.url + "?from=0") as ws,
    ):
        served.commit(6)  # nobody reads meanwhile: the queue of 2 overflows
        numbers = []
        while True:
            msg = await ws.receive(timeout=5)
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            numbers.append(json.loads(msg.data)["block"])
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert numbers == list(range(len(numbers)))  # in order, no gap
        assert 0 < len(numbers) < 6
        assert msg.extra == f"fell behind; resume from block {len(numbers)}"
    assert served.hub._listeners == set()


@pytest.mark.asyncio
async def test_a_bad_start_is_refused(served: Served) -> None:
    async with aiohttp.ClientSession() as session:
        for query in ("?from=x", "?from=-1"):
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(served.url + query)
            assert refused.value.status == 400
