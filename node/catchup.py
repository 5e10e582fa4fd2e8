"""Catching a member's chain up to a Raft snapshot, over a block delivery stream from a peer.

The ordering service's snapshot is only a :class:`protocol.ordering.ChainPoint` (height and
tip hash). A member that receives one opens a WebSocket to a peer's p2p endpoint
``GET /p2p/v1/deliver?start=N&stop=M`` (mutual TLS, members only), which streams the
canonical bytes of blocks N..M-1 it holds, one binary frame per block, then closes. The
member verifies every block (hash link, data hash, a member node's signature under the
configuration in force at that block) and that the last one is the snapshot's tip, and
commits each through its own validating commit path as it arrives. A stream that ends
early is resumed from the next peer. Blocks are self-authenticating, so any member may
serve them.
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
from protocol import limits
from protocol.block import Block
from protocol.codec import decode
from protocol.config import NetworkConfig
from protocol.errors import CertificateError, IntegrityError, MedledgerError, RemoteError
from protocol.ordering import ChainPoint
from storage.ledger import Stores

log = logging.getLogger("medledger.catchup")

DELIVER_PATH = "/p2p/v1/deliver"
FRAME_TIMEOUT_S = 30.0  # one block of at most BLOCK_BYTES_MAX over loopback or LAN
_FRAME_BYTES_MAX = limits.BLOCK_BYTES_MAX + limits.KIB


class CatchUpFailed(MedledgerError):
    """No peer could serve the blocks a snapshot needs; Raft will send the snapshot again."""


def add_delivery_route(
    app: web.Application, stores: Stores, auth: Callable[[], PeerAuthenticator]
) -> None:
    """Stream consecutive blocks to authenticated members on *app* (the p2p application);
    *auth* gives the current members' authenticator, which changes with the membership."""

    async def deliver(request: web.Request) -> web.StreamResponse:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        try:
            auth().authenticate(peer_certificate_der(ssl_object), Purpose.TLS_CLIENT)
        except CertificateError:
            return web.json_response({"error": "members only"}, status=403)
        try:
            start = int(request.query["start"])
            stop = int(request.query["stop"])
        except (KeyError, ValueError):
            return web.json_response({"error": "start and stop must be integers"}, status=400)
        if not 0 <= start <= stop:
            return web.json_response({"error": "need 0 <= start <= stop"}, status=400)
        ws = web.WebSocketResponse(max_msg_size=limits.KIB)
        await ws.prepare(request)
        sent = 0
        for number in range(start, min(stop, stores.blocks.height)):
            raw = stores.blocks.get_raw(number)
            if raw is None or ws.closed:
                break
            await ws.send_bytes(raw)  # waits for the peer to drain: a bounded buffer
            sent += 1
        await ws.close()
        event(log, logging.INFO, "catchup.served", start=start, blocks=sent)
        return ws

    app.router.add_get(DELIVER_PATH, deliver)


async def catch_up(
    stores: Stores,
    point: ChainPoint,
    peers: Sequence[tuple[str, str, int]],
    *,
    client_ctx: ssl.SSLContext,
    trust: Callable[[], TrustStore],
    network: Callable[[], NetworkConfig],
    commit: Callable[[Block], object],
) -> int:
    """Receive and commit blocks until the chain reaches *point*; returns how many were added.

    *peers* are (node_id, host, p2p_port), tried in order until one has streamed what is
    missing; *trust* and *network* are read per block, since a committed configuration
    block may add the organisation whose node signed the next ones; *commit* validates and
    commits one verified block (the ordering node's own commit path).
    """
    height = stores.blocks.height
    if height >= point.height:
        block = stores.blocks.get(point.height - 1)
        if block is None or block.hash() != point.tip:
            raise IntegrityError("the snapshot's tip is not the block we hold at its height")
        return 0
    start_height = height
    async with aiohttp.ClientSession() as session:
        for node_id, host, port in peers:
            url = f"https://{host}:{port}{DELIVER_PATH}?start={height}&stop={point.height}"
            try:
                async with session.ws_connect(
                    url,
                    ssl=client_ctx,
                    max_msg_size=_FRAME_BYTES_MAX,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=FRAME_TIMEOUT_S),
                ) as ws:
                    async for msg in ws:
                        if msg.type != aiohttp.WSMsgType.BINARY:
                            break
                        height = _commit_next(
                            stores, msg.data, height, point, trust(), network(), commit
                        )
                        if height >= point.height:
                            break
            except (aiohttp.ClientError, OSError, TimeoutError, RemoteError) as e:
                event(
                    log,
                    logging.WARNING,
                    "catchup.peer_failed",
                    peer=node_id,
                    error=type(e).__name__,
                )
            if height >= point.height:
                break
    if height < point.height:
        raise CatchUpFailed(f"no member could stream blocks from {height}")
    added = height - start_height
    event(log, logging.INFO, "catchup.done", height=height, added=added)
    return added


def _commit_next(
    stores: Stores,
    raw: bytes,
    height: int,
    point: ChainPoint,
    trust: TrustStore,
    network: NetworkConfig,
    commit: Callable[[Block], object],
) -> int:
    """Verify and commit the block streamed at *height*; the new height."""
    block = decode(raw, Block)
    check_block(block, height, stores.blocks.tip_hash or b"", trust, network)
    if height == point.height - 1 and block.hash() != point.tip:
        raise IntegrityError("the block at the snapshot's height is not its tip")
    failpoints.hit("snapshot-mid-install")
    commit(block)
    return height + 1
