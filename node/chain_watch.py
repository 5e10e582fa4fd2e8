"""Waiting, bounded, until this node's chain is as long as another member's.

A gateway answers its client once a block is in its own chain, and the client's next
proposal may depend on that block (register a doctor, then enrol her). The other endorsers
apply the same block a moment later, each when the leader's commit reaches it: one that
simulates before then reads the older state, its response differs from the rest, and with
too few fresh endorsers the proposal fails. So the gateway sends its chain height with each
request (:class:`protocol.ordering.EndorseRequest` ``chain_height``, or ``?chain_height=``
on ``POST /v1/endorse``), and an endorser that has fewer blocks waits for them with
:meth:`ChainWatch.reach` before it simulates, at most :data:`CHAIN_WAIT_S`; a member still
behind then refuses, saying so, and the gateway counts it as not agreeing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from node.metrics import Metrics

# Long enough for a member a few blocks behind (a commit reaches every member within a
# Raft round trip or a heartbeat, 50 ms), well inside the gateway's deadline (5 s).
CHAIN_WAIT_S = 1.0
WAITERS_MAX = 1_024  # requests waiting at once; more are refused as behind at once


class ChainWatch:
    """Futures completed when the chain (as *height* reads it) reaches their height."""

    def __init__(self, height: Callable[[], int]) -> None:
        self._height = height
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []

    @property
    def height(self) -> int:
        """Blocks in this node's chain now."""
        return self._height()

    def advanced(self) -> None:
        """Call after each block applied: wake the waiters whose height is reached."""
        if not self._waiters:
            return
        height = self._height()
        left = []
        for target, waiter in self._waiters:
            if target <= height:
                if not waiter.done():
                    waiter.set_result(None)
            else:
                left.append((target, waiter))
        self._waiters = left

    async def reach(self, height: int, timeout_s: float | None = None) -> bool:
        """Whether the chain holds *height* blocks, now or within *timeout_s* (default
        :data:`CHAIN_WAIT_S`)."""
        if self._height() >= height:
            return True
        if len(self._waiters) >= WAITERS_MAX:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (height, waiter)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(CHAIN_WAIT_S if timeout_s is None else timeout_s):
                await waiter
        except TimeoutError:
            return False
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
        return True


def must_wait(chain: ChainWatch, height: int, metrics: Metrics) -> bool:
    """Whether a request for *height* blocks must wait for *chain* (counted, as
    ``endorser_waited_for_chain``, when it arrives: by then the chain may catch up)."""
    if chain.height >= height:
        return False
    metrics.inc("endorser_waited_for_chain")
    return True


async def catch_up(chain: ChainWatch, height: int, metrics: Metrics) -> str | None:
    """None once *chain* holds *height* blocks; else, after :data:`CHAIN_WAIT_S`, the
    endorser's refusal (counted as ``endorser_behind_chain``)."""
    if await chain.reach(height):
        return None
    metrics.inc("endorser_behind_chain")
    return (
        f"this endorser's chain has {chain.height} blocks, the gateway's {height};"
        f" it did not catch up within {CHAIN_WAIT_S:g} s"
    )
