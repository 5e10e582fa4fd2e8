"""Closed-loop put load against etcd's v3 JSON gRPC-gateway, shaped like ``node.loadgen``.

N clients, each with one request outstanding at a time: ``POST /v3/kv/put`` with a unique
base64 key and a 1 KiB value, then wait for the answer before the next. As in
``node.loadgen.run_load``, a client picks the member round-robin per request (starting at its
own number), a request is only started before the deadline and every started request is
waited for, a 5xx or connection error is retried after a pause and its latency counts from the
first send.

It speaks HTTP/1.1 keep-alive directly over asyncio streams (one connection per client per
member, all opened before the clock starts) through ``node.loadgen.HttpConnection``, the
same connection our own load generator uses, so both systems are driven at the same cost
per request.
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
) -> PutResult:
    """Run *clients* closed-loop put clients for *duration_s*; connections are opened first.

    *before_start*, if given, is awaited once every connection is up; the clock starts after.
    """
    latencies: list[float] = []
    failures: list[str] = []
    retries = 0
    numbers = range(first_client, first_client + clients)
    conns = {
        n: [HttpConnection(host, port, PATH, "application/json") for host, port in endpoints]
        for n in numbers
    }
    await asyncio.gather(*(c.open() for cs in conns.values() for c in cs))
    if before_start is not None:
        await before_start()
    start = time.perf_counter()
    deadline = start + duration_s
    value = base64.b64encode(bytes([0x61 + n % 26 for n in range(value_bytes)])).decode()

    async def client(number: int) -> None:
        nonlocal retries
        mine = conns[number]
        turn = number
        seq = 0
        body_start = b'{"value":"' + value.encode() + b'","key":"'
        last = ""
        while time.perf_counter() < deadline:
            seq += 1
            key = base64.b64encode(b"%s/%05d/%010d" % (key_prefix.encode(), number, seq))
            body = body_start + key + b'"}'
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
                    if status == 200 and payload.startswith(b'{"header"'):
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
        for cs in conns.values():
            for c in cs:
                c.close()
    return PutResult(latencies, failures, retries, time.perf_counter() - start)
