"""Closed-loop load against the ordering service: N clients, each submitting one envelope at a
time and waiting for its commit before the next, as the integration tests and benchmarks do.

Every client signs its own envelopes with an admin identity (signing happens before the
clock starts for that request; with ``presigned=N`` the first N envelopes are signed before
the run starts, so a benchmark's load generator spends its CPU in the measured window on
requests, not on ECDSA), picks a node round-robin, and retries on 503/504 and
connection errors with the *same* envelope, so an envelope is acknowledged at most once
however often it was sent. The result lists every acknowledged tx_id with its block and
index, and each request's latency.

Requests go, with ``api="http"`` (the default), over :class:`HttpConnection`: keep-alive
HTTP/1.1 written straight onto asyncio streams (TLS here; plain for etcd in
``bench/etcd_loadgen.py``), one connection per client per node, all opened before the clock
starts. A preformatted request head and a response parsed only as far as status and length
keep the load generator's CPU small, so it leaves the cores to the cluster it measures; an
HTTP client library costs several times as much per request. With ``api="stream"`` they go
over the nodes' client stream (:mod:`node.client_stream`): one WebSocket per node, shared
by all clients, each request a frame each way.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from urllib.parse import urlsplit

import aiohttp

from identity.keys import SigningKey
from node.client_stream import StreamClient
from node.envelopes import opaque_envelope
from protocol.client_stream import SUBMIT, CommitReceipt
from protocol.codec import decode, encode
from protocol.errors import RemoteError

RETRY_PAUSE_S = 0.05
REQUEST_TIMEOUT_S = 15.0
ATTEMPTS_MAX = 200  # a request retried this often means the cluster is down, not recovering
SUBMIT_PATH = "/v1/envelopes"


class HttpConnection:
    """One keep-alive HTTP/1.1 connection for POSTs to one path; reopened after an error."""

    def __init__(
        self,
        host: str,
        port: int,
        path: str,
        content_type: str,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.head = (
            f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: "
        ).encode()

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(
            self.host, self.port, ssl=self.ssl_context
        )

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """Send *body*; the response's status and payload."""
        if self.writer is None:
            await self.open()
        reader, writer = self.reader, self.writer
        if reader is None or writer is None:
            raise ConnectionError("connection closed while opening")
        writer.write(b"%s%d\r\n\r\n%s" % (self.head, len(body), body))
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lower = head.lower()
        at = lower.find(b"\r\ncontent-length:")
        if at >= 0:
            end = lower.index(b"\r\n", at + 2)
            payload = await reader.readexactly(int(lower[at + 17 : end]))
        elif b"\r\ntransfer-encoding: chunked" in lower:
            payload = await _read_chunked(reader)
        else:
            raise ConnectionError("response without a length")
        if b"\r\nconnection: close" in lower:
            self.close()
        return status, payload


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(parts)
        parts.append(await reader.readexactly(size))
        await reader.readexactly(2)


class StreamPoster:
    """Requests of one kind over a client stream that many clients share: the
    ``api="stream"`` counterpart of :class:`HttpConnection`, with the same ``post``."""

    def __init__(self, stream: StreamClient, kind: str) -> None:
        self.stream = stream
        self.kind = kind

    async def open(self) -> None:
        await self.stream.connect()

    def close(self) -> None:
        """Nothing to do after an error: a broken stream reconnects at the next request."""

    async def post(self, body: bytes) -> tuple[int, bytes]:
        """Send *body*; the answer's status and body (for a 200 submit, a CommitReceipt's
        bytes)."""
        return await self.stream.request(self.kind, body)


# What a failed request raises: connection trouble, a cut response, a garbled status line, a
# refused WebSocket upgrade.
REQUEST_ERRORS = (
    OSError,
    asyncio.IncompleteReadError,
    ValueError,
    TimeoutError,
    aiohttp.ClientError,
    RemoteError,
)


@dataclasses.dataclass(frozen=True, slots=True)
class Ack:
    """One acknowledged envelope."""

    tx_id: str
    block: int
    index: int
    latency_s: float
    attempts: int


@dataclasses.dataclass(slots=True)
class LoadResult:
    """What a run produced."""

    acks: list[Ack]
    failures: list[str]
    elapsed_s: float

    @property
    def throughput_per_s(self) -> float:
        return len(self.acks) / self.elapsed_s if self.elapsed_s else 0.0

    def latency_ms(self, quantile: float) -> float:
        """The latency quantile (0..1) over acknowledged requests, in ms."""
        if not self.acks:
            return float("nan")
        ordered = sorted(a.latency_s for a in self.acks)
        return ordered[min(len(ordered) - 1, int(quantile * len(ordered)))] * 1000


async def run_load(
    urls: Sequence[str],
    ssl_context: ssl.SSLContext,
    *,
    network_id: str,
    key: SigningKey,
    cert_der: bytes,
    clients: int,
    total: int | None = None,
    duration_s: float | None = None,
    payload_bytes: int = 1024,
    before_start: Callable[[], Awaitable[None]] | None = None,
    presigned: int = 0,
    api: str = "http",
) -> LoadResult:
    """Run *clients* closed-loop clients until *total* envelopes are acknowledged or
    *duration_s* has passed (at least one bound must be given). *presigned* envelopes are
    signed first, then connections are opened; *before_start*, if given, is awaited then,
    and the clock starts after it. Clients take presigned envelopes while they last and
    sign their own after that. *api* is ``http`` or ``stream`` (see the module docstring)."""
    if total is None and duration_s is None:
        raise ValueError("give total or duration_s")
    if api not in ("http", "stream"):
        raise ValueError(f"api must be http or stream, not {api!r}")

    def sign(fill: int) -> bytes:
        return encode(
            opaque_envelope(
                bytes([fill]) * payload_bytes,
                network_id=network_id,
                key=key,
                cert_der=cert_der,
                timestamp_ms=int(time.time() * 1000),
            )
        )

    pool = collections.deque(sign(n % 256) for n in range(presigned))
    acks: list[Ack] = []
    failures: list[str] = []
    issued = 0
    endpoints = [urlsplit(u) for u in urls]
    streams = [StreamClient(u, ssl_context) for u in urls] if api == "stream" else []
    posters = [StreamPoster(s, SUBMIT) for s in streams]
    conns: list[list[HttpConnection]] | list[list[StreamPoster]] = (
        [posters] * clients
        if posters
        else [
            [
                HttpConnection(
                    str(e.hostname), e.port or 443, SUBMIT_PATH, "application/msgpack", ssl_context
                )
                for e in endpoints
            ]
            for _ in range(clients)
        ]
    )
    opening = posters or [c for mine in conns for c in mine]
    await asyncio.gather(*(c.open() for c in opening), return_exceptions=True)
    if before_start is not None:
        await before_start()
    start = time.perf_counter()
    deadline = start + duration_s if duration_s is not None else None

    def take() -> bool:
        nonlocal issued
        if total is not None and issued >= total:
            return False
        if deadline is not None and time.perf_counter() >= deadline:
            return False
        issued += 1
        return True

    async def client(number: int) -> None:
        mine = conns[number]
        turn = number
        while take():
            body = pool.popleft() if pool else sign(number % 256)
            sent = time.perf_counter()
            for attempt in range(1, ATTEMPTS_MAX + 1):
                conn = mine[turn % len(mine)]
                turn += 1
                try:
                    # A timeout context, not wait_for: no task per request.
                    async with asyncio.timeout(REQUEST_TIMEOUT_S):
                        status, answer = await conn.post(body)
                except REQUEST_ERRORS:
                    conn.close()
                else:
                    if status == 200:
                        tx_id, block, index = _where(answer, api)
                        acks.append(Ack(tx_id, block, index, time.perf_counter() - sent, attempt))
                        break
                    if status in (400, 413):
                        failures.append(f"refused: {answer[:200].decode(errors='replace')}")
                        break
                await asyncio.sleep(RETRY_PAUSE_S)
            else:
                failures.append(f"gave up after {ATTEMPTS_MAX} attempts")

    try:
        await asyncio.gather(*(client(i) for i in range(clients)))
    finally:
        for mine in conns:
            for c in mine:
                c.close()
        await asyncio.gather(*(s.close() for s in streams))
    return LoadResult(acks, failures, time.perf_counter() - start)


def _where(answer: bytes, api: str) -> tuple[str, int, int]:
    """(tx_id hex, block, index) from a 200 answer of *api*."""
    if api == "stream":
        receipt = decode(answer, CommitReceipt)
        return receipt.tx_id.hex(), receipt.block, receipt.index
    doc = json.loads(answer)
    return doc["tx_id"], doc["block"], doc["index"]
