"""Closed-loop put load against etcd, shaped like ``node.loadgen``.

N clients, each with one request outstanding at a time: a put of a unique key and a 1 KiB
value, then wait for the answer before the next. As in ``node.loadgen.run_load``, a client
picks the member round-robin per request (starting at its own number), a request is only
started before the deadline and every started request is waited for, a 5xx (or, over gRPC,
an unavailable member or a deadline) or a connection error is retried after a pause and
its latency counts from the first send.

Two ways in, matching our two client APIs:

- ``http``: etcd's v3 JSON gRPC-gateway, ``POST /v3/kv/put`` with base64 key and value,
  over HTTP/1.1 keep-alive directly on asyncio streams (one connection per client per
  member, all opened before the clock starts) through ``node.loadgen.HttpConnection``, the
  same connection our own load generator uses, so both systems are driven at the same cost
  per request.
- ``grpc``: etcd's native ``etcdserverpb.KV/Put`` over gRPC (grpcio's asyncio API), one
  HTTP/2 channel per member shared by every client, as etcd's own Go client multiplexes its
  requests; the counterpart of our client stream. The PutRequest is two protobuf fields
  (key = 1, value = 2), written here by hand rather than generated from etcd's .proto files.
"""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import time
from collections.abc import Awaitable, Callable, Sequence

from node.loadgen import (
    ATTEMPTS_MAX,
    REQUEST_ERRORS,
    REQUEST_TIMEOUT_S,
    RETRY_PAUSE_S,
    HttpConnection,
)

PATH = "/v3/kv/put"
PUT_METHOD = "/etcdserverpb.KV/Put"
APIS = ("http", "grpc")


@dataclasses.dataclass(slots=True)
class PutResult:
    """What a run produced: one latency (s) per acknowledged put."""

    latencies_s: list[float]
    failures: list[str]  # refused or given up; retried requests are only counted
    retries: int
    elapsed_s: float


async def run_put_load(
    endpoints: Sequence[tuple[str, int]],
    *,
    clients: int,
    duration_s: float,
    value_bytes: int = 1024,
    key_prefix: str = "bench",
    first_client: int = 0,
    before_start: Callable[[], Awaitable[None]] | None = None,
    api: str = "http",
) -> PutResult:
    """Run *clients* closed-loop put clients for *duration_s* over *api* (``http`` or
    ``grpc``); connections are opened first.

    *before_start*, if given, is awaited once every connection is up; the clock starts after.
    """
    if api not in APIS:
        raise ValueError(f"api must be one of {', '.join(APIS)}, not {api!r}")
    latencies: list[float] = []
    failures: list[str] = []
    retries = 0
    numbers = range(first_client, first_client + clients)
    conns: dict[int, list[HttpConnection]] | dict[int, list[GrpcPut]]
    if api == "grpc":
        shared = [GrpcPut(host, port) for host, port in endpoints]
        conns = {n: shared for n in numbers}
        opening: list[HttpConnection] | list[GrpcPut] = shared
    else:
        conns = {
            n: [HttpConnection(host, port, PATH, "application/json") for host, port in endpoints]
            for n in numbers
        }
        opening = [c for cs in conns.values() for c in cs]
    await asyncio.gather(*(c.open() for c in opening))
    if before_start is not None:
        await before_start()
    start = time.perf_counter()
    deadline = start + duration_s
    value = bytes([0x61 + n % 26 for n in range(value_bytes)])
    if api == "grpc":

        def put_body(key: bytes) -> bytes:
            return put_request(key, value)

        def acknowledged(payload: bytes) -> bool:
            return True  # a PutResponse: gRPC's own status said OK
    else:
        body_start = b'{"value":"' + base64.b64encode(value) + b'","key":"'

        def put_body(key: bytes) -> bytes:
            return body_start + base64.b64encode(key) + b'"}'

        def acknowledged(payload: bytes) -> bool:
            return payload.startswith(b'{"header"')

    async def client(number: int) -> None:
        nonlocal retries
        mine = conns[number]
        turn = number
        seq = 0
        last = ""
        while time.perf_counter() < deadline:
            seq += 1
            body = put_body(b"%s/%05d/%010d" % (key_prefix.encode(), number, seq))
            sent = time.perf_counter()
            for _attempt in range(ATTEMPTS_MAX):
                conn = mine[turn % len(mine)]
                turn += 1
                try:
                    # A timeout context, not wait_for: no task per request.
                    async with asyncio.timeout(REQUEST_TIMEOUT_S):
                        status, payload = await conn.post(body)
                except REQUEST_ERRORS as e:
                    conn.close()
                    retries += 1
                    last = type(e).__name__
                else:
                    if status == 200 and acknowledged(payload):
                        latencies.append(time.perf_counter() - sent)
                        break
                    if 400 <= status < 500:
                        failures.append(f"refused {status}: {payload[:200]!r}")
                        break
                    retries += 1
                    last = f"status {status}"
                await asyncio.sleep(RETRY_PAUSE_S)
            else:
                failures.append(f"gave up after {ATTEMPTS_MAX} attempts (last: {last})")

    try:
        await asyncio.gather(*(client(n) for n in numbers))
    finally:
        for c in opening:
            c.close()
        await asyncio.gather(*(c.shut() for c in opening if isinstance(c, GrpcPut)))
    return PutResult(latencies, failures, retries, time.perf_counter() - start)


def put_request(key: bytes, value: bytes) -> bytes:
    """etcd's PutRequest in protobuf wire format: key (field 1) and value (field 2), both
    length-delimited; every other field keeps its default, as in an ``etcdctl put``."""
    return b"\x0a" + _varint(len(key)) + key + b"\x12" + _varint(len(value)) + value


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


class GrpcPut:
    """``KV/Put`` calls on one gRPC channel to one member, with HttpConnection's post()
    shape: (200, the PutResponse bytes), 503 for what a retry may cure (the member is
    unavailable or too slow), 400 for a refusal."""

    RETRY = frozenset(
        {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED", "INTERNAL"}
    )

    def __init__(self, host: str, port: int) -> None:
        import grpc  # the benchmark's own dependency (dev extras), not the node's

        self._grpc = grpc
        self.channel = grpc.aio.insecure_channel(f"{host}:{port}")
        self._put = self.channel.unary_unary(
            PUT_METHOD, request_serializer=_same, response_deserializer=_same
        )

    async def open(self) -> None:
        async with asyncio.timeout(REQUEST_TIMEOUT_S):
            await self.channel.channel_ready()

    async def post(self, body: bytes) -> tuple[int, bytes]:
        try:
            reply: bytes = await self._put(body, timeout=REQUEST_TIMEOUT_S)
        except self._grpc.aio.AioRpcError as e:
            status = 503 if e.code().name in self.RETRY else 400
            return status, f"{e.code().name}: {e.details()}".encode()
        return 200, reply

    def close(self) -> None:
        """Nothing per request: the channel is shared and reconnects by itself."""

    async def shut(self) -> None:
        """Close the channel (once, after the run)."""
        await self.channel.close()


def _same(raw: bytes) -> bytes:
    return raw
