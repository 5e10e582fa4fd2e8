"""Closed-loop load against the ordering service: N clients, each submitting one envelope at a
time and waiting for its commit before the next, as the integration tests and benchmarks do.

Every client signs its own envelopes with an admin identity (signing happens before the
clock starts for that request), picks a node round-robin, and retries on 503/504 and
connection errors with the *same* envelope, so an envelope is acknowledged at most once
however often it was sent. The result lists every acknowledged tx_id with its block and
index, and each request's latency.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import time
from collections.abc import Sequence

import aiohttp

from identity.keys import SigningKey
from node.envelopes import opaque_envelope
from protocol.codec import encode

RETRY_PAUSE_S = 0.05
REQUEST_TIMEOUT_S = 15.0
ATTEMPTS_MAX = 200  # a request retried this often means the cluster is down, not recovering


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
) -> LoadResult:
    """Run *clients* closed-loop clients until *total* envelopes are acknowledged or
    *duration_s* has passed (at least one bound must be given)."""
    if total is None and duration_s is None:
        raise ValueError("give total or duration_s")
    acks: list[Ack] = []
    failures: list[str] = []
    issued = 0
    start = time.perf_counter()
    deadline = start + duration_s if duration_s is not None else None
    connector = aiohttp.TCPConnector(ssl=ssl_context, limit=0)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)

    def take() -> bool:
        nonlocal issued
        if total is not None and issued >= total:
            return False
        if deadline is not None and time.perf_counter() >= deadline:
            return False
        issued += 1
        return True

    async def client(number: int, session: aiohttp.ClientSession) -> None:
        turn = number
        payload = bytes([number % 256]) * payload_bytes
        while take():
            body = encode(
                opaque_envelope(
                    payload,
                    network_id=network_id,
                    key=key,
                    cert_der=cert_der,
                    timestamp_ms=int(time.time() * 1000),
                )
            )
            sent = time.perf_counter()
            for attempt in range(1, ATTEMPTS_MAX + 1):
                url = urls[turn % len(urls)] + "/v1/envelopes"
                turn += 1
                try:
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/msgpack"}
                    ) as response:
                        if response.status == 200:
                            doc = await response.json()
                            acks.append(
                                Ack(
                                    doc["tx_id"],
                                    doc["block"],
                                    doc["index"],
                                    time.perf_counter() - sent,
                                    attempt,
                                )
                            )
                            break
                        if response.status in (400, 413):
                            failures.append(f"refused: {(await response.text())[:200]}")
                            break
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass
                await asyncio.sleep(RETRY_PAUSE_S)
            else:
                failures.append(f"gave up after {ATTEMPTS_MAX} attempts")

    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await asyncio.gather(*(client(i, session) for i in range(clients)))
    return LoadResult(acks, failures, time.perf_counter() - start)
