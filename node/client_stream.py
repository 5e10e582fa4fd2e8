"""The client stream: submit and endorse requests multiplexed on one WebSocket.

``GET /v1/stream`` upgrades to a WebSocket over the same TLS as the rest of the client API.
The client sends :class:`protocol.client_stream.ClientRequest` frames and may have up to
:data:`IN_FLIGHT_MAX` of them unanswered at once; each gets one ClientAnswer with its id, as
soon as it is done (a submit, once its block is committed here), so a busy client (an
integration engine, a load generator) keeps one connection instead of one per request in
flight, and each request costs the node a WebSocket frame each way instead of an HTTP
request and response (measured on this machine with a 3-member ordering service at 64
clients: about 15% less cluster CPU per envelope than ``POST /v1/envelopes``).

The operations are the HTTPS routes' (:mod:`node.api` hands them in), with the same checks,
status codes and one-line reasons. What the stream itself refuses:

* more than :data:`IN_FLIGHT_MAX` requests in flight: that request is answered 429 at once;
* an id that is already in flight: answered 409 at once (the first request keeps its id);
* an unknown ``kind``: answered 404;
* a frame that is not binary or does not decode as a ClientRequest, or one over
  :data:`FRAME_BYTES_MAX` (aiohttp closes with 1009 before buffering it): the stream is
  closed with a reason, since the client's framing can no longer be trusted. The log line
  names the reason and size, never the frame's bytes.

When the stream closes, requests still in flight are cancelled (a submit already forwarded
may still commit; resubmitting the same envelope is safe, as over HTTPS). On shutdown the
node closes every stream with 1001 (going away).

:class:`StreamClient` is the client side, for the load generators and anyone in Python.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web

from node.logs import event
from node.metrics import Metrics
from protocol import limits
from protocol.client_stream import (
    ENDORSE,
    SUBMIT,
    ClientAnswer,
    ClientRequest,
    CommitReceipt,
)
from protocol.codec import decode, encode
from protocol.errors import RemoteError

log = logging.getLogger("medledger.client_stream")

STREAM_PATH = "/v1/stream"
IN_FLIGHT_MAX = 1_024  # unanswered requests on one stream
FRAME_BYTES_MAX = limits.ENVELOPE_BYTES_MAX + limits.KIB  # a request and its framing
HEARTBEAT_S = 30.0
STREAMS_MAX = 256  # open client streams on one node

# An operation: the request's body -> (HTTP-style status, answer body).
Operation = Callable[[bytes], Awaitable[tuple[int, bytes]]]


class ClientStreamServer:
    """Serves ``/v1/stream`` with the given operations by kind (``submit``, ``endorse``)."""

    def __init__(self, operations: Mapping[str, Operation], metrics: Metrics) -> None:
        self._operations = dict(operations)
        self.metrics = metrics
        self._streams: set[web.WebSocketResponse] = set()

    def add_routes(self, app: web.Application) -> None:
        """Mount the stream on *app* and close open streams when it shuts down."""
        app.router.add_get(STREAM_PATH, self.serve)
        app.on_shutdown.append(self._close_all)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        """The WebSocket handler: read requests, run each in its own task, answer each."""
        if len(self._streams) >= STREAMS_MAX:
            return web.json_response({"error": "too many client streams"}, status=503)
        ws = web.WebSocketResponse(max_msg_size=FRAME_BYTES_MAX, heartbeat=HEARTBEAT_S)
        await ws.prepare(request)
        self._streams.add(ws)
        self.metrics.inc("client_streams_opened")
        in_flight: dict[int, asyncio.Task[None]] = {}
        try:
            await self._read(ws, in_flight)
        finally:
            self._streams.discard(ws)
            for task in in_flight.values():
                task.cancel()
            if not ws.closed:
                await ws.close()
        return ws

    async def _read(
        self, ws: web.WebSocketResponse, in_flight: dict[int, asyncio.Task[None]]
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            msg = await ws.receive()
            if msg.type is not WSMsgType.BINARY:
                if msg.type is WSMsgType.TEXT:
                    await self._refuse(
                        ws, "text frame; the stream takes binary frames", len(msg.data)
                    )
                elif msg.type is WSMsgType.ERROR:
                    self.metrics.inc("client_stream_refused_frames")
                    event(log, logging.INFO, "client_stream.closed", reason="protocol error")
                return  # CLOSE and friends: the client is done
            try:
                request = decode(msg.data, ClientRequest)
            except RemoteError as e:
                await self._refuse(ws, f"not a client request ({type(e).__name__})", len(msg.data))
                return
            rid = request.request_id
            operation = self._operations.get(request.kind)
            if operation is None:
                await self._answer(ws, rid, 404, f"unknown request kind {request.kind!r}")
            elif rid in in_flight:
                await self._answer(ws, rid, 409, "a request with this id is still in flight")
            elif len(in_flight) >= IN_FLIGHT_MAX:
                self.metrics.inc("client_stream_busy")
                await self._answer(
                    ws, rid, 429, f"{IN_FLIGHT_MAX} requests in flight on this stream; wait"
                )
            else:
                task = loop.create_task(self._run(ws, rid, operation, request.body))
                in_flight[rid] = task
                task.add_done_callback(lambda _, rid=rid: in_flight.pop(rid, None))

    async def _run(
        self, ws: web.WebSocketResponse, rid: int, operation: Operation, body: bytes
    ) -> None:
        try:
            status, answer = await operation(body)
        except Exception as e:  # a bug behind the operation: 500, as aiohttp answers over HTTPS
            # Its type only: an exception's text may quote what the request carried.
            event(log, logging.ERROR, "client_stream.operation_failed", error=type(e).__name__)
            status, answer = 500, b"internal error"
        self.metrics.inc("client_stream_answered")
        with contextlib.suppress(ConnectionError):
            if not ws.closed:
                await ws.send_bytes(
                    encode(ClientAnswer(request_id=rid, status=status, body=answer))
                )

    async def _answer(self, ws: web.WebSocketResponse, rid: int, status: int, reason: str) -> None:
        with contextlib.suppress(ConnectionError):
            await ws.send_bytes(
                encode(ClientAnswer(request_id=rid, status=status, body=reason.encode()))
            )

    async def _refuse(self, ws: web.WebSocketResponse, reason: str, size: int) -> None:
        """Close *ws* over a frame that breaks the protocol (its bytes are never logged)."""
        self.metrics.inc("client_stream_refused_frames")
        event(log, logging.INFO, "client_stream.refused", reason=reason, size=size)
        await ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=reason.encode()[:120])

    async def _close_all(self, _app: web.Application) -> None:
        for ws in list(self._streams):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"node stopping")


class StreamRefused(Exception):
    """The node answered a request with a status other than 200."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status}: {reason}")
        self.status = status
        self.reason = reason


class StreamClient:
    """One client stream to a node: send requests, await their answers, many at a time."""

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None) -> None:
        """*url* is the node's API base (``https://host:port``)."""
        self.url = url.rstrip("/") + STREAM_PATH
        self._ssl = ssl_context if ssl_context is not None else False
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count()
        self._pending: dict[int, asyncio.Future[tuple[int, bytes]]] = {}
        self._dialing = asyncio.Lock()

    @property
    def open(self) -> bool:
        return self._ws is not None and not self._ws.closed

    async def connect(self) -> None:
        """Open the stream (a no-op while it is open; callers at once share one dial)."""
        async with self._dialing:
            if self.open:
                return
            if self._session is None:
                self._session = aiohttp.ClientSession()
            self._ws = await self._session.ws_connect(
                self.url, ssl=self._ssl, heartbeat=HEARTBEAT_S, max_msg_size=FRAME_BYTES_MAX
            )
            self._reader = asyncio.get_running_loop().create_task(self._read(self._ws))

    async def close(self) -> None:
        """Close the stream and its session; requests in flight fail with ConnectionError."""
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._session is not None:
            await self._session.close()
        self._ws = self._reader = self._session = None

    async def request(self, kind: str, body: bytes) -> tuple[int, bytes]:
        """Send one request; its (status, body). ConnectionError if the stream breaks first."""
        if not self.open:
            await self.connect()
        ws = self._ws
        assert ws is not None
        rid = next(self._ids)
        answer: asyncio.Future[tuple[int, bytes]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = answer
        try:
            await ws.send_bytes(encode(ClientRequest(request_id=rid, kind=kind, body=body)))
            return await answer
        finally:
            self._pending.pop(rid, None)

    async def submit(self, envelope: bytes) -> CommitReceipt:
        """Submit an envelope; where it committed (StreamRefused if the node refused it)."""
        status, body = await self.request(SUBMIT, envelope)
        if status != 200:
            raise StreamRefused(status, body.decode(errors="replace"))
        return decode(body, CommitReceipt)

    async def endorse(self, signed_proposal: bytes) -> bytes:
        """The prepared Transaction's bytes for a signed proposal (StreamRefused if refused)."""
        status, body = await self.request(ENDORSE, signed_proposal)
        if status != 200:
            raise StreamRefused(status, body.decode(errors="replace"))
        return body

    async def _read(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        reason = "the stream closed"
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.BINARY:
                    continue
                answer = decode(msg.data, ClientAnswer)
                waiting = self._pending.get(answer.request_id)
                if waiting is not None and not waiting.done():
                    waiting.set_result((answer.status, answer.body))
            if ws.close_code is not None:
                reason = f"the node closed the stream ({ws.close_code})"
        except RemoteError as e:
            reason = f"the node sent a bad answer ({type(e).__name__})"
            await ws.close()
        finally:
            for waiting in self._pending.values():
                if not waiting.done():
                    waiting.set_exception(ConnectionError(reason))
