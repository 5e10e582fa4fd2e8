"""Catching a member's chain up to a Raft snapshot, by pulling blocks from its peers.

The ordering service's snapshot is only a :class:`protocol.ordering.ChainPoint` (height and
tip hash). A member that receives one pulls the blocks it lacks in :class:`BlockBatch`es
from the members' p2p endpoint ``GET /p2p/v1/blocks?start=N&count=K`` (mutual TLS, members
only), verifies every block (hash link, data hash, a member node's signature) and that the
last one is the snapshot's tip, and commits each through the member's own validating commit
path. Blocks are self-authenticating, so any member may serve them.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Sequence

import aiohttp
from aiohttp import web

from identity.validate import Purpose, TrustStore
from node import failpoints
from node.chain_audit import check_block
from node.logs import event
from node.tls import PeerAuthenticator, peer_certificate_der
from protocol.block import Block
from protocol.codec import decode, encode
from protocol.config import NetworkConfig
from protocol.errors import CertificateError, IntegrityError, MedledgerError, RemoteError
from protocol.ordering import BLOCK_BATCH_BYTES_MAX, BLOCK_BATCH_MAX, BlockBatch, ChainPoint
from storage.ledger import Stores

log = logging.getLogger("medledger.catchup")

BLOCKS_PATH = "/p2p/v1/blocks"
FETCH_TIMEOUT_S = 30.0  # one batch of at most BLOCK_BATCH_BYTES_MAX over loopback or LAN


class CatchUpFailed(MedledgerError):
    """No peer could serve the blocks a snapshot needs; Raft will send the snapshot again."""


def add_block_routes(
    app: web.Application, stores: Stores, auth: Callable[[], PeerAuthenticator]
) -> None:
    """Serve consecutive blocks to authenticated members on *app* (the p2p application);
    *auth* gives the current members' authenticator, which changes with the membership."""

    async def blocks(request: web.Request) -> web.Response:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        try:
            auth().authenticate(peer_certificate_der(ssl_object), Purpose.TLS_CLIENT)
        except CertificateError:
            return web.json_response({"error": "members only"}, status=403)
        try:
            start = int(request.query.get("start", "0"))
            count = min(int(request.query.get("count", "1")), BLOCK_BATCH_MAX)
        except ValueError:
            return web.json_response({"error": "start and count must be integers"}, status=400)
        out: list[bytes] = []
        size = 0
        for number in range(max(start, 0), max(start, 0) + max(count, 0)):
            raw = stores.blocks.get_raw(number)
            if raw is None or (out and size + len(raw) > BLOCK_BATCH_BYTES_MAX):
                break
            out.append(raw)
            size += len(raw)
        return web.Response(
            body=encode(BlockBatch(start=max(start, 0), blocks=tuple(out))),
            content_type="application/msgpack",
        )

    app.router.add_get(BLOCKS_PATH, blocks)


async def catch_up(
    stores: Stores,
    point: ChainPoint,
    peers: Sequence[tuple[str, str, int]],
    *,
    client_ctx: ssl.SSLContext,
    trust: TrustStore,
    network: NetworkConfig,
    commit: Callable[[Block], object],
) -> int:
    """Pull and commit blocks until the chain reaches *point*; returns how many were added.

    *peers* are (node_id, host, p2p_port), tried in order for each batch; *commit* validates
    and commits one verified block (the ordering node's own commit path).
    """
    height = stores.blocks.height
    if height >= point.height:
        block = stores.blocks.get(point.height - 1)
        if block is None or block.hash() != point.tip:
            raise IntegrityError("the snapshot's tip is not the block we hold at its height")
        return 0
    previous = stores.blocks.tip_hash or b""
    added = 0
    timeout = aiohttp.ClientTimeout(total=FETCH_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while height < point.height:
            batch = await _fetch_any(session, peers, client_ctx, height, point.height - height)
            for raw in batch.blocks:
                block = decode(raw, Block)
                check_block(block, height, previous, trust, network)
                if height == point.height - 1 and block.hash() != point.tip:
                    raise IntegrityError("the block at the snapshot's height is not its tip")
                failpoints.hit("snapshot-mid-install")
                commit(block)
                previous = block.hash()
                height += 1
                added += 1
                if height >= point.height:
                    break
    event(log, logging.INFO, "catchup.done", height=height, added=added)
    return added


async def _fetch_any(
    session: aiohttp.ClientSession,
    peers: Sequence[tuple[str, str, int]],
    ctx: ssl.SSLContext,
    start: int,
    wanted: int,
) -> BlockBatch:
    count = min(wanted, BLOCK_BATCH_MAX)
    for node_id, host, port in peers:
        url = f"https://{host}:{port}{BLOCKS_PATH}?start={start}&count={count}"
        try:
            async with session.get(url, ssl=ctx) as response:
                if response.status != 200:
                    continue
                batch = decode(await response.read(), BlockBatch)
        except (aiohttp.ClientError, OSError, TimeoutError, RemoteError) as e:
            event(log, logging.WARNING, "catchup.peer_failed", peer=node_id, error=type(e).__name__)
            continue
        if batch.start == start and batch.blocks:
            return batch
    raise CatchUpFailed(f"no member could serve blocks from {start}")
