"""The client stream (node.client_stream) over a real aiohttp server on 127.0.0.1, with
operations standing in for the node's: requests in flight at once are answered by id in the
order they finish; an unknown kind, an id already in flight and one request too many are
answered with their own status while the stream goes on; a frame that breaks the protocol
closes the stream with a reason and is logged without its bytes; closing the stream cancels
what is in flight; an operation that fails is a 500."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import WSCloseCode, web

from node import client_stream as stream_module
from node.client_stream import ClientStreamServer, StreamClient, StreamRefused
from node.metrics import Metrics
from protocol.client_stream import ClientAnswer, ClientRequest
from protocol.codec import decode, encode
from tests.unit.loopback import serving

SENTINEL = b"PATIENT Jane Q. Doe NID 850101-1234567"


class Fake:
    """Operations whose answers the test releases: ``echo`` answers at once, ``hold``
    waits until the test releases its body, ``boom`` raises."""

    def __init__(self) -> None:
        self.released: dict[bytes, asyncio.Event] = {}
        self.cancelled: list[bytes] = []

    def release(self, body: bytes) -> None:
        self.released.setdefault(body, asyncio.Event()).set()

    async def echo(self, body: bytes) -> tuple[int, bytes]:
        return 200, b"echo:" + body

    async def hold(self, body: bytes) -> tuple[int, bytes]:
        try:
            await self.released.setdefault(body, asyncio.Event()).wait()
        except asyncio.CancelledError:
            self.cancelled.append(body)
            raise
        return 200, b"held:" + body

    async def boom(self, body: bytes) -> tuple[int, bytes]:
        raise RuntimeError("a bug")


class Served:
    def __init__(self, fake: Fake, metrics: Metrics, url: str) -> None:
        self.fake, self.metrics, self.url = fake, metrics, url


@pytest_asyncio.fixture
async def served() -> AsyncIterator[Served]:
    fake, metrics = Fake(), Metrics()
    server = ClientStreamServer({"echo": fake.echo, "hold": fake.hold, "boom": fake.boom}, metrics)
    app = web.Application()
    server.add_routes(app)
    async with serving(app) as url:
        yield Served(fake, metrics, url)


async def _raw(served: Served) -> tuple[aiohttp.ClientSession, aiohttp.ClientWebSocketResponse]:
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(served.url + stream_module.STREAM_PATH)
    return session, ws


async def _answer(ws: aiohttp.ClientWebSocketResponse) -> ClientAnswer:
    msg = await ws.receive(timeout=5)
    assert msg.type == aiohttp.WSMsgType.BINARY, msg
    return decode(msg.data, ClientAnswer)


@pytest.mark.asyncio
async def test_requests_in_flight_are_answered_by_id_as_they_finish(served: Served) -> None:
    client = StreamClient(served.url, None)
    try:
        held = [asyncio.ensure_future(client.request("hold", b"%d" % i)) for i in range(20)]
        quick = await client.request("echo", b"now")
        assert quick == (200, b"echo:now")  # not stuck behind the 20 still in flight
        for i in reversed(range(20)):  # released last first: answers come out of order
            served.fake.release(b"%d" % i)
        assert await asyncio.gather(*held) == [(200, b"held:%d" % i) for i in range(20)]
    finally:
        await client.close()
    assert served.metrics.value("client_stream_answered") == 21
    assert served.metrics.value("client_streams_opened") == 1  # the first 20 shared one dial


@pytest.mark.asyncio
async def test_unknown_kind_duplicate_id_and_one_too_many_get_their_own_status(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_module, "IN_FLIGHT_MAX", 2)
    session, ws = await _raw(served)
    try:
        await ws.send_bytes(encode(ClientRequest(request_id=7, kind="nope", body=b"")))
        answer = await _answer(ws)
        assert (answer.request_id, answer.status) == (7, 404)
        assert answer.body == b"unknown request kind 'nope'"

        for rid in (1, 2):
            await ws.send_bytes(encode(ClientRequest(request_id=rid, kind="hold", body=b"x")))
        await ws.send_bytes(encode(ClientRequest(request_id=1, kind="echo", body=b"y")))
        again = await _answer(ws)
        assert (again.request_id, again.status) == (1, 409)
        await ws.send_bytes(encode(ClientRequest(request_id=3, kind="echo", body=b"z")))
        busy = await _answer(ws)
        assert (busy.request_id, busy.status) == (3, 429)

        served.fake.release(b"x")  # both held requests finish, and the stream goes on
        finished = [(await _answer(ws)).request_id, (await _answer(ws)).request_id]
        assert sorted(finished) == [1, 2]
        await ws.send_bytes(encode(ClientRequest(request_id=3, kind="echo", body=b"z")))
        assert (await _answer(ws)).body == b"echo:z"
    finally:
        await ws.close()
        await session.close()
    assert served.metrics.value("client_stream_busy") == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    "frame",
    [
        SENTINEL,  # not msgpack
        encode(ClientAnswer(request_id=1, status=200, body=SENTINEL)),  # another message kind
        "text " + SENTINEL.decode(),  # a text frame
    ],
    ids=["garbage", "wrong-kind", "text"],
)
async def test_a_frame_that_breaks_the_protocol_closes_the_stream_without_logging_it(
    served: Served, frame: bytes | str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    session, ws = await _raw(served)
    try:
        await ws.send_bytes(encode(ClientRequest(request_id=1, kind="hold", body=b"h")))
        await asyncio.sleep(0.05)
        if isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_bytes(frame)
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == WSCloseCode.UNSUPPORTED_DATA
        assert msg.extra and ("not a client request" in msg.extra or "text frame" in msg.extra)
    finally:
        await session.close()
    await asyncio.sleep(0.05)
    assert served.fake.cancelled == [b"h"]  # what was in flight is cancelled with the stream
    assert served.metrics.value("client_stream_refused_frames") == 1
    assert SENTINEL.decode() not in caplog.text
    assert "client_stream.refused" in caplog.text


@pytest.mark.asyncio
async def test_an_oversize_frame_closes_the_stream_with_1009(served: Served) -> None:
    session, ws = await _raw(served)
    try:
        await ws.send_bytes(b"\0" * (stream_module.FRAME_BYTES_MAX + 1))
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == WSCloseCode.MESSAGE_TOO_BIG
    finally:
        await session.close()


@pytest.mark.asyncio
async def test_a_failing_operation_is_a_500_and_a_closed_stream_fails_what_waits(
    served: Served,
) -> None:
    client = StreamClient(served.url, None)
    try:
        assert await client.request("boom", b"") == (500, b"internal error")
        with pytest.raises(StreamRefused) as refused:
            await client.endorse(b"p")  # the fake serves no "endorse"
        assert refused.value.status == 404
        waiting = asyncio.ensure_future(client.request("hold", b"never"))
        await asyncio.sleep(0.05)
        server_side = next(iter(served.fake.released))  # the held request arrived
        assert server_side == b"never"
        await client.close()
        with pytest.raises(ConnectionError):
            await waiting
    finally:
        await client.close()
    await asyncio.sleep(0.05)
    assert served.fake.cancelled == [b"never"]
