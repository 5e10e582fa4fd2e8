"""Committed-transaction events: one JSON message per committed block, to WebSocket listeners.

``GET /v1/events?from=N`` (a WebSocket) first replays blocks N.. from this node's chain,
then follows new blocks as they commit, without a gap or a repeat: a listener subscribes
before the replay and skips live blocks the replay already sent. Each message is a block
number and its transactions as :func:`node.ledger_view.describe_tx` describes them, plus
the contract events of the valid ones (name and payload hex), which only reach listeners
once their transaction committed.

A listener that falls more than :data:`LISTENER_QUEUE_BLOCKS` blocks behind is closed
with a message naming the block to resume from, rather than holding the node's memory.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import WSCloseCode, web

from node.ledger_view import describe_tx
from node.logs import event
from protocol.block import Block
from storage.blocks import BlockStore

log = logging.getLogger("medledger.events")

LISTENER_QUEUE_BLOCKS = 1024
LISTENERS_MAX = 256
ENCODED_BLOCKS_KEPT = 64


def block_message(block: Block, endorsers: Mapping[bytes, str] | None = None) -> dict[str, Any]:
    """The event message of one committed block (endorsers named as ``describe_tx`` does)."""
    return {
        "block": block.number,
        "transactions": [
            describe_tx(block, index, with_events=True, endorsers=endorsers)
            for index in range(len(block.transactions))
        ],
    }


class _Listener:
    def __init__(self) -> None:
        self.queue: asyncio.Queue[Block] = asyncio.Queue(LISTENER_QUEUE_BLOCKS)
        self.overflowed_at: int | None = None


class EventHub:
    """Fans committed blocks out to the WebSocket listeners of this node."""

    def __init__(
        self, blocks: BlockStore, endorsers: Callable[[], Mapping[bytes, str]] = dict
    ) -> None:
        self.blocks = blocks
        self._endorsers = endorsers  # node ids by certificate hash, under the current config
        self._listeners: set[_Listener] = set()
        # The JSON of the latest blocks sent, so listeners in step share one encoding.
        self._encoded: OrderedDict[int, str] = OrderedDict()

    def _json(self, block: Block) -> str:
        text = self._encoded.get(block.number)
        if text is None:
            text = self._encoded[block.number] = json.dumps(block_message(block, self._endorsers()))
            if len(self._encoded) > ENCODED_BLOCKS_KEPT:
                self._encoded.popitem(last=False)
        return text

    def publish(self, block: Block) -> None:
        """Called once a block is committed (in chain order); never blocks."""
        for listener in self._listeners:
            if listener.overflowed_at is not None:
                continue
            try:
                listener.queue.put_nowait(block)
            except asyncio.QueueFull:
                listener.overflowed_at = block.number

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """The ``/v1/events`` WebSocket handler."""
        try:
            start = int(request.query.get("from", str(self.blocks.height)))
        except ValueError:
            return web.json_response({"error": "from must be a block number"}, status=400)
        if start < 0:
            return web.json_response({"error": "from must be a block number"}, status=400)
        if len(self._listeners) >= LISTENERS_MAX:
            return web.json_response({"error": "too many event listeners"}, status=503)
        ws = web.WebSocketResponse(heartbeat=30.0)
        listener = _Listener()
        self._listeners.add(listener)  # before any await: no block can slip between
        try:
            await ws.prepare(request)
            await self._stream(ws, listener, start)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._listeners.discard(listener)
            if not ws.closed:
                await ws.close()
        return ws

    async def _stream(self, ws: web.WebSocketResponse, listener: _Listener, start: int) -> None:
        next_number = start
        replay_end = self.blocks.height  # blocks below were committed before we subscribed
        while next_number < replay_end:
            block = self.blocks.get(next_number)
            if block is None:
                break
            await ws.send_str(self._json(block))
            next_number += 1
        reader = asyncio.ensure_future(ws.receive())  # notices the listener closing
        try:
            while True:
                getter = asyncio.ensure_future(listener.queue.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if reader in done:
                    getter.cancel()
                    return
                block = getter.result()
                if block.number >= next_number:  # else the replay sent it already
                    await ws.send_str(self._json(block))
                    next_number = block.number + 1
                if listener.overflowed_at is not None and listener.queue.empty():
                    event(log, logging.INFO, "events.listener_behind", resume=next_number)
                    await ws.close(
                        code=WSCloseCode.TRY_AGAIN_LATER,
                        message=f"fell behind; resume from block {next_number}".encode(),
                    )
                    return
        finally:
            reader.cancel()
