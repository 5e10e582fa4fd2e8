"""Node-to-node transport: long-lived WebSocket streams over mutual TLS, msgpack frames.

Each member dials every other member once and keeps that **outbound** stream for its own
messages to that peer; it receives the peer's messages on the peer's outbound stream, which
is **inbound** here. So between two members there are two streams, one per direction, and
each side owns the one it writes to (as etcd's rafthttp does). The transport knows nothing
of Raft: :meth:`Transport.send` routes a registered message by its ``recipient``, and every
message accepted from a peer is handed to the synchronous ``on_message(sender, msg)``
callback on the event loop.

Inbound (server side, ``GET`` :data:`STREAM_PATH`):

* OpenSSL has already checked the chain (see :mod:`node.tls`); before upgrading, the
  :class:`~node.tls.PeerAuthenticator` must recognise the certificate as a current member's
  node certificate, or the request gets 403 and is counted as ``p2p_in_refused_unknown_peer``.
  A member connecting again replaces its older inbound stream.
* An open stream is not trusted forever: :meth:`Transport.recheck_streams` authenticates
  every open stream's peer again (every :data:`RECHECK_S`, when the node applies a block
  that changed the revocation list, and after a membership change) and closes, counting
  ``p2p_streams_closed_not_accepted``, those whose certificate has been revoked, has
  expired or is no longer a member's.
* Frames are binary, at most :data:`protocol.limits.MESSAGE_BYTES_MAX` (aiohttp's
  ``max_msg_size``; permessage-deflate is off), decoded with :func:`protocol.codec.decode`.
  A frame is dropped, counted as ``p2p_in_dropped_<reason>`` (see :data:`DROP_REASONS`) and
  logged at warning level with the peer id, reason and size only, never its bytes, when it
  is not binary, does not decode, names no ``sender``/``recipient``, claims a sender other
  than the authenticated peer, or is addressed to another node. These are the shapes that
  crashed Fabric orderers (CVE-2021-43669 nil fields, CVE-2021-43667 malformed frames,
  CVE-2022-31121 unexpected message content).
* The stream stays open after a dropped frame: a member running a newer version may send a
  kind we do not know yet. After :data:`FRAME_DROPS_PER_STREAM_MAX` drops on one stream we
  close it (policy violation, counted as ``p2p_in_closed_abuse``), which bounds the log
  volume and CPU one stream can cost; the peer's reconnect backoff rate-limits it after that.
  A frame over the size limit always ends the stream: aiohttp closes it with 1009 (message
  too big) as soon as the frame's header announces the size, before buffering it.

Batches (:mod:`node.bursts`): the first message a member sends a peer in a pass of its
event loop is written at once; the others it sends that peer in the same pass go together,
at the end of the pass, in one :class:`protocol.batch.FrameBatch` frame. Each message in a
batch is checked and delivered, or dropped and counted, exactly as if it had come alone; a
batch within a batch names no sender and is dropped as ``unroutable``.

Outbound (client side): one task per peer with a bounded :class:`_Outbox`; when it is full
the **oldest** frame is dropped and counted (``p2p_out_dropped_queue_full``): Raft
retransmits, and a newer message supersedes an older one (a later heartbeat or append
carries the leader's newer commit index). The task dials with exponential backoff and full
jitter (:data:`BACKOFF_MS_MIN` doubling up to :data:`BACKOFF_MS_MAX`), checks the server's
certificate is the member it meant to reach, then writes frames as they come. A frame being
written when the stream breaks is lost (``p2p_out_lost``).

Lifecycle: :meth:`Transport.start` opens the client session and the peer tasks;
:meth:`Transport.serve` runs its own TLS site, or :meth:`Transport.add_routes` mounts the
stream into an application the daemon owns (then :func:`start_tls_site` serves it);
:meth:`Transport.stop` cancels the tasks, closes every stream, the site and the session.

Metrics (names in :class:`node.metrics.Metrics`; ``p2p_out_sent`` and ``p2p_in_delivered``
count messages, ``p2p_out_batches`` and ``p2p_in_batches`` the frames that carried several):
``p2p_in_delivered``, ``p2p_in_batches``, ``p2p_out_batches``,
``p2p_in_dropped_<reason>``, ``p2p_in_refused_unknown_peer``, ``p2p_in_closed_abuse``,
``p2p_in_streams_opened``, ``p2p_out_sent``, ``p2p_out_dropped_queue_full``,
``p2p_out_dropped_unknown_peer``, ``p2p_out_lost``, ``p2p_out_connect_failed``,
``p2p_out_refused_unknown_peer`` (the server is not the member we dialled),
``p2p_out_refused_by_peer`` (it answered 403), ``p2p_out_streams_opened``,
``p2p_streams_closed_not_accepted``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import functools
import logging
import random
import ssl
import time
from collections.abc import Callable, Mapping

import aiohttp
from aiohttp import WSCloseCode, WSMsgType, web
from yarl import URL

from identity.validate import Purpose
from node.bursts import PassBurst, batch_frames, send_eagerly
from node.logs import event
from node.metrics import Metrics
from node.tls import PeerAuthenticator, peer_certificate_der
from protocol import codec, limits
from protocol.batch import FrameBatch
from protocol.errors import (
    CertificateError,
    FieldError,
    LocalError,
    OversizeError,
    RemoteError,
    UnknownTypeError,
)

log = logging.getLogger("medledger.p2p")

STREAM_PATH = "/p2p/v1/stream"

# --- limits ---------------------------------------------------------------------------------
# Frames queued for one peer. Raft keeps at most a few hundred messages in flight per follower
# (etcd's rafthttp buffers 4096 on its message stream with a much larger cluster in mind); a
# peer that is down longer than this many messages will be caught up by Raft itself
# (retransmission, then a snapshot), so older frames are worth nothing.
OUTBOX_MESSAGES_MAX = 1024
# Bytes queued for one peer: room for two maximum frames (two full blocks), so memory per
# peer stays bounded (64 members x 20 MiB) however large the messages are.
OUTBOX_BYTES_MAX = 2 * limits.MESSAGE_BYTES_MAX
# Reconnect backoff: 50 ms is a few loopback handshakes; 2 s is well under an election
# timeout measured in seconds, so a restarted member is reached again before it matters.
BACKOFF_MS_MIN = 50
BACKOFF_MS_MAX = 2_000
# TCP connect + TLS handshake + WebSocket upgrade; loopback needs milliseconds, a WAN link
# between hospitals a few round trips.
HANDSHAKE_TIMEOUT_S = 5.0
# WebSocket ping interval; a peer that misses its pong for half of it is declared gone, so a
# silently dead link (no RST) is noticed within seconds.
HEARTBEAT_S = 5.0
# How often every open stream's peer is authenticated again (recheck_streams): a certificate
# that expired while its stream was open loses the stream within this long.
RECHECK_S = 60.0
# Closing handshake of a stream on stop or replacement.
CLOSE_TIMEOUT_S = 1.0
# Bad frames tolerated on one inbound stream before it is closed (see the module docstring).
FRAME_DROPS_PER_STREAM_MAX = 32

DROP_REASONS = (
    "malformed",  # not msgpack, not canonical, not [tag, fields]
    "unknown_type",  # a type tag that names no message kind
    "bad_field",  # a missing, nil, extra, ill-typed or out-of-range field
    "oversize",  # over MESSAGE_BYTES_MAX (ends the stream)
    "non_binary",  # a text frame
    "unroutable",  # a message kind without sender and recipient
    "wrong_sender",  # sender is not the authenticated peer
    "wrong_recipient",  # addressed to another node
    "protocol_error",  # a WebSocket protocol violation (ends the stream)
)

OnMessage = Callable[[str, object], None]


class _Outbox:
    """A FIFO of encoded frames bounded in count and bytes; full means the oldest goes."""

    __slots__ = ("_bytes", "_bytes_max", "_frames", "_messages_max", "_ready")

    def __init__(self, messages_max: int, bytes_max: int) -> None:
        if messages_max < 1 or bytes_max < limits.MESSAGE_BYTES_MAX:
            raise LocalError("an outbox must hold at least one frame of the maximum size")
        self._frames: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._messages_max = messages_max
        self._bytes_max = bytes_max
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def put(self, frame: bytes) -> int:
        """Queue *frame*; returns how many older frames were dropped to make room."""
        self._frames.append(frame)
        self._bytes += len(frame)
        dropped = 0
        while len(self._frames) > self._messages_max or self._bytes > self._bytes_max:
            self._bytes -= len(self._frames.popleft())
            dropped += 1
        self._ready.set()
        return dropped

    async def get(self) -> bytes:
        while not self._frames:
            self._ready.clear()
            await self._ready.wait()
        frame = self._frames.popleft()
        self._bytes -= len(frame)
        return frame


@dataclasses.dataclass(slots=True)
class _Peer:
    node_id: str
    host: str
    port: int
    outbox: _Outbox
    task: asyncio.Task[None] | None = None
    stream: aiohttp.ClientWebSocketResponse | None = None
    cert_der: bytes | None = None  # the certificate the peer presented on ``stream``
    sending: int = 0  # writes under way on the stream (the writer task's, or an eager one's)
    burst: PassBurst = dataclasses.field(init=False)  # set by Transport._new_peer


class Transport:
    """Streams to and from the other members; see the module docstring.

    *members* maps every member's node id (this node's may be included; it is skipped) to
    the ``(host, p2p_port)`` it listens on. *rng* jitters the reconnect backoff (inject a
    seeded one for reproducible tests).
    """

    def __init__(
        self,
        node_id: str,
        members: Mapping[str, tuple[str, int]],
        *,
        server_ctx: ssl.SSLContext,
        client_ctx: ssl.SSLContext,
        authenticator: PeerAuthenticator,
        on_message: OnMessage,
        metrics: Metrics | None = None,
        rng: random.Random | None = None,
        backoff_ms_min: int = BACKOFF_MS_MIN,
        backoff_ms_max: int = BACKOFF_MS_MAX,
    ) -> None:
        if not 0 < backoff_ms_min <= backoff_ms_max:
            raise LocalError("backoff bounds must satisfy 0 < min <= max")
        self.node_id = node_id
        self.metrics = metrics if metrics is not None else Metrics()
        self._server_ctx = server_ctx
        self._client_ctx = client_ctx
        self._auth = authenticator
        self._on_message = on_message
        # Fault injection for partition tests (see node.daemon): drop every frame both ways.
        self.isolated = False
        self._rng = rng if rng is not None else random.Random()
        self._backoff_ms_min = backoff_ms_min
        self._backoff_ms_max = backoff_ms_max
        self._peers: dict[str, _Peer] = {
            peer_id: self._new_peer(peer_id, host, port)
            for peer_id, (host, port) in members.items()
            if peer_id != node_id
        }
        self._inbound: dict[str, web.WebSocketResponse] = {}
        self._inbound_certs: dict[str, bytes] = {}  # the certificate each inbound peer showed
        self._closing: set[asyncio.Task[bool]] = set()
        self._recheck_task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._runner: web.AppRunner | None = None
        self._started = False
        self._stopping = False

    # --- public API ---------------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Mount the stream endpoint into *app*; its shutdown closes the inbound streams."""
        app.router.add_get(STREAM_PATH, self._handle_stream)
        app.on_shutdown.append(self._on_app_shutdown)

    async def serve(self, host: str, port: int) -> None:
        """Serve the stream endpoint on (*host*, *port*) with the server TLS context."""
        if self._runner is not None:
            raise LocalError("the transport already serves")
        app = web.Application()
        self.add_routes(app)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=CLOSE_TIMEOUT_S)
        await runner.setup()
        self._runner = runner
        await start_tls_site(runner, host, port, self._server_ctx)

    async def start(self) -> None:
        """Open the client session and one outbound task per peer."""
        if self._started:
            raise LocalError("the transport was already started")
        self._started = True
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=HANDSHAKE_TIMEOUT_S),
            # One connection per peer, opened once: no pooling across peers to speak of.
            connector=aiohttp.TCPConnector(limit=0, ssl=self._client_ctx),
        )
        for peer in self._peers.values():
            peer.task = asyncio.create_task(self._run_peer(peer), name=f"p2p-out-{peer.node_id}")
            peer.task.add_done_callback(_log_task_failure)
        self._recheck_task = asyncio.create_task(self._recheck_periodically(), name="p2p-recheck")
        self._recheck_task.add_done_callback(_log_task_failure)

    def update_members(
        self, members: Mapping[str, tuple[str, int]], authenticator: PeerAuthenticator
    ) -> None:
        """Follow a membership change: dial new members, drop removed ones, and authenticate
        inbound streams with *authenticator* from now on."""
        self._auth = authenticator
        wanted = {pid: hp for pid, hp in members.items() if pid != self.node_id}
        for peer_id in sorted(set(self._peers) - set(wanted)):
            peer = self._peers.pop(peer_id)
            if peer.task is not None:
                peer.task.cancel()
            ws = self._inbound.pop(peer_id, None)
            self._inbound_certs.pop(peer_id, None)
            if ws is not None and not ws.closed:
                asyncio.get_running_loop().create_task(ws.close())
        for peer_id in sorted(set(wanted) - set(self._peers)):
            host, port = wanted[peer_id]
            peer = self._new_peer(peer_id, host, port)
            self._peers[peer_id] = peer
            if self._started and not self._stopping:
                peer.task = asyncio.create_task(self._run_peer(peer), name=f"p2p-out-{peer_id}")
                peer.task.add_done_callback(_log_task_failure)
        self.recheck_streams()  # a member's configured certificate may have changed

    def _new_peer(self, peer_id: str, host: str, port: int) -> _Peer:
        peer = _Peer(peer_id, host, port, _Outbox(OUTBOX_MESSAGES_MAX, OUTBOX_BYTES_MAX))
        peer.burst = PassBurst(functools.partial(self._end_burst, peer))
        return peer

    def recheck_streams(self) -> int:
        """Authenticate every open stream's peer again, as a new connection would be now,
        and close the streams whose certificate is no longer accepted (revoked since the
        stream opened, expired, or no longer the member's configured one). The peer's next
        dial is refused. Returns how many streams were closed."""
        doomed: list[web.WebSocketResponse | aiohttp.ClientWebSocketResponse] = []
        for peer_id, ws in list(self._inbound.items()):
            if not ws.closed and not self._accepts(
                peer_id, self._inbound_certs.get(peer_id), Purpose.TLS_CLIENT
            ):
                del self._inbound[peer_id]
                del self._inbound_certs[peer_id]
                doomed.append(ws)
        for peer in self._peers.values():
            ws_out = peer.stream
            if (
                ws_out is not None
                and _is_open(ws_out)
                and not self._accepts(peer.node_id, peer.cert_der, Purpose.TLS_SERVER)
            ):
                doomed.append(ws_out)
        if not doomed:
            return 0
        for ws in doomed:
            task = asyncio.get_running_loop().create_task(
                ws.close(code=WSCloseCode.POLICY_VIOLATION, message=b"certificate not accepted")
            )
            self._closing.add(task)  # held until done: the loop keeps only a weak reference
            task.add_done_callback(self._closing.discard)
        self.metrics.inc("p2p_streams_closed_not_accepted", len(doomed))
        event(log, logging.WARNING, "p2p.streams_closed_not_accepted", count=len(doomed))
        return len(doomed)

    async def _recheck_periodically(self) -> None:
        while True:
            await asyncio.sleep(RECHECK_S)
            self.recheck_streams()

    def _accepts(self, peer_id: str, cert_der: bytes | None, purpose: Purpose) -> bool:
        try:
            identity = self._auth.authenticate(cert_der, purpose)
        except CertificateError:
            return False
        return identity.subject_id == peer_id

    async def stop(self) -> None:
        """Cancel the outbound tasks and close every stream, the site and the session."""
        self._stopping = True
        tasks = [p.task for p in self._peers.values() if p.task is not None]
        if self._recheck_task is not None:
            tasks.append(self._recheck_task)
            self._recheck_task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for peer in self._peers.values():
            peer.task = None
        await self._close_inbound()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def send(self, msg: object) -> None:
        """Queue *msg* for ``msg.recipient`` (never blocks; drops and counts when it must).

        A message to a node that is not a peer is dropped and counted: membership may have
        changed under the caller. A message that is not ours to send (another sender) or
        does not fit in a frame is the caller's bug: LocalError.
        """
        sender = getattr(msg, "sender", None)
        if sender != self.node_id:
            raise LocalError("send: the message's sender is not this node")
        if self.isolated:
            self.metrics.inc("p2p_out_dropped_isolated")
            return
        peer = self._peers.get(getattr(msg, "recipient", None))  # type: ignore[arg-type]
        if peer is None:
            self.metrics.inc("p2p_out_dropped_unknown_peer")
            return
        frame = codec.encode(msg)
        if len(frame) > limits.MESSAGE_BYTES_MAX:
            raise LocalError(f"send: a frame of {len(frame)} bytes is over MESSAGE_BYTES_MAX")
        if peer.burst.hold(frame):
            return  # goes with the others of this pass, in one frame
        if not peer.outbox and not peer.sending and _is_open(peer.stream):
            self._write_now(peer, peer.stream, frame)  # type: ignore[arg-type]
            peer.burst.open()
            return
        self._queue(peer, frame)

    def _queue(self, peer: _Peer, frame: bytes) -> None:
        dropped = peer.outbox.put(frame)
        if dropped:
            self.metrics.inc("p2p_out_dropped_queue_full", dropped)

    def _end_burst(self, peer: _Peer, frames: list[bytes]) -> None:
        """Send what this pass sent *peer* after its first message, batched (node.bursts);
        if the stream is busy or down by now, queue the rest one by one as usual."""
        done = 0
        for data, messages in batch_frames(frames, limits.MESSAGE_BYTES_MAX):
            if peer.outbox or peer.sending or not _is_open(peer.stream):
                for frame in frames[done:]:
                    self._queue(peer, frame)
                return
            self._write_now(peer, peer.stream, data, messages)  # type: ignore[arg-type]
            done += messages

    def _write_now(
        self, peer: _Peer, ws: aiohttp.ClientWebSocketResponse, frame: bytes, messages: int = 1
    ) -> None:
        """Write *frame* (holding *messages* messages) on the idle stream now instead of one
        event-loop pass later.

        Under load that pass is several milliseconds of other work, paid on every Raft hop.
        The send runs eagerly (:func:`node.bursts.send_eagerly`); a wait for the socket to
        drain finishes in a task, and frames queue behind it.
        """
        if messages > 1:
            self.metrics.inc("p2p_out_batches")
        try:
            task = send_eagerly(ws.send_bytes(frame))
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            self.metrics.inc("p2p_out_lost", messages)  # the stream is broken; its pump reconnects
            return
        if task is None:
            self.metrics.inc("p2p_out_sent", messages)
            return
        peer.sending += 1

        def done(task: asyncio.Task[None]) -> None:
            peer.sending -= 1
            failed = task.cancelled() or task.exception() is not None
            self.metrics.inc("p2p_out_lost" if failed else "p2p_out_sent", messages)

        task.add_done_callback(done)

    @property
    def authenticator(self) -> PeerAuthenticator:
        """Who may connect now (follows :meth:`update_members`)."""
        return self._auth

    def connected_peers(self) -> frozenset[str]:
        """Peers with a live outbound or inbound stream ("reachable peers")."""
        outbound = {p.node_id for p in self._peers.values() if _is_open(p.stream)}
        inbound = {peer_id for peer_id, ws in self._inbound.items() if not ws.closed}
        return frozenset(outbound | inbound)

    def queued(self, peer_id: str) -> tuple[int, int]:
        """(frames, bytes) waiting for *peer_id*."""
        outbox = self._peers[peer_id].outbox
        return len(outbox), outbox.size_bytes

    # --- inbound ------------------------------------------------------------------------------

    def _authenticate_inbound(self, request: web.Request) -> tuple[str, bytes]:
        ssl_object = request.transport.get_extra_info("ssl_object") if request.transport else None
        cert_der = peer_certificate_der(ssl_object)
        try:
            identity = self._auth.authenticate(cert_der, Purpose.TLS_CLIENT)
            if identity.subject_id == self.node_id:
                raise CertificateError("the peer presented this node's own certificate")
        except CertificateError as exc:
            self.metrics.inc("p2p_in_refused_unknown_peer")
            event(log, logging.WARNING, "p2p.peer_refused", remote=request.remote, reason=str(exc))
            raise web.HTTPForbidden(text="not a member node\n") from None
        assert cert_der is not None  # authenticate refuses a missing certificate
        return identity.subject_id, cert_der

    async def _handle_stream(self, request: web.Request) -> web.StreamResponse:
        if self._stopping:
            raise web.HTTPServiceUnavailable(text="stopping\n")
        peer_id, cert_der = self._authenticate_inbound(request)
        ws = web.WebSocketResponse(
            max_msg_size=limits.MESSAGE_BYTES_MAX,
            compress=False,
            heartbeat=HEARTBEAT_S,
            timeout=CLOSE_TIMEOUT_S,
        )
        await ws.prepare(request)
        older = self._inbound.get(peer_id)
        self._inbound[peer_id] = ws
        self._inbound_certs[peer_id] = cert_der
        self.metrics.inc("p2p_in_streams_opened")
        if older is not None:
            await older.close(code=WSCloseCode.GOING_AWAY, message=b"replaced")
        try:
            await self._read_stream(peer_id, ws)
        finally:
            if self._inbound.get(peer_id) is ws:
                del self._inbound[peer_id]
                del self._inbound_certs[peer_id]
        return ws

    async def _read_stream(self, peer_id: str, ws: web.WebSocketResponse) -> None:
        drops = 0
        while True:
            msg = await ws.receive()
            if msg.type is WSMsgType.BINARY:
                refused = self._accept_data(peer_id, msg.data)
            elif msg.type is WSMsgType.TEXT:
                refused = [("non_binary", len(msg.data))]
            elif msg.type is WSMsgType.ERROR:
                # aiohttp has already closed the stream: an oversize frame (1009) or another
                # protocol violation.
                exc = ws.exception()
                code = getattr(exc, "code", None)
                reason = "oversize" if code == WSCloseCode.MESSAGE_TOO_BIG else "protocol_error"
                self._count_drop(peer_id, reason, size=None)
                return
            else:  # CLOSE, CLOSING, CLOSED: the stream is over
                return
            for reason, size in refused:  # a batch may carry several
                self._count_drop(peer_id, reason, size=size)
                drops += 1
                if drops >= FRAME_DROPS_PER_STREAM_MAX:
                    self.metrics.inc("p2p_in_closed_abuse")
                    event(
                        log, logging.WARNING, "p2p.stream_closed_abuse", peer=peer_id, drops=drops
                    )
                    await ws.close(
                        code=WSCloseCode.POLICY_VIOLATION, message=b"too many bad frames"
                    )
                    return

    def _accept_data(self, peer_id: str, data: bytes) -> list[tuple[str, int]]:
        """Deliver one binary frame's message, or each message of a :class:`FrameBatch` in
        order; returns (reason, size) of each message dropped."""
        if self.isolated:
            self.metrics.inc("p2p_in_dropped_isolated")  # an injected fault, not the peer's
            return []
        try:
            msg = codec.decode(data)
        except RemoteError as e:
            return [(_drop_reason(e), len(data))]
        if type(msg) is not FrameBatch:
            reason = self._deliver(peer_id, msg)
            return [] if reason is None else [(reason, len(data))]
        self.metrics.inc("p2p_in_batches")
        refused = []
        for frame in msg.frames:
            reason = self._accept_frame(peer_id, frame)
            if reason is not None:
                refused.append((reason, len(frame)))
        return refused

    def _accept_frame(self, peer_id: str, data: bytes) -> str | None:
        """Deliver one message of a batch; returns the drop reason, or None if it was
        delivered. (A batch inside a batch names no sender: unroutable.)"""
        try:
            msg = codec.decode(data)
        except RemoteError as e:
            return _drop_reason(e)
        return self._deliver(peer_id, msg)

    def _deliver(self, peer_id: str, msg: object) -> str | None:
        sender = getattr(msg, "sender", None)
        recipient = getattr(msg, "recipient", None)
        if type(sender) is not str or type(recipient) is not str:
            return "unroutable"
        if sender != peer_id:
            return "wrong_sender"
        if recipient != self.node_id:
            return "wrong_recipient"
        self.metrics.inc("p2p_in_delivered")
        self._on_message(peer_id, msg)
        return None

    def _count_drop(self, peer_id: str, reason: str, *, size: int | None) -> None:
        self.metrics.inc(f"p2p_in_dropped_{reason}")
        # Never the frame itself: peer id, reason and size only.
        event(log, logging.WARNING, "p2p.frame_dropped", peer=peer_id, reason=reason, size=size)

    async def _close_inbound(self) -> None:
        streams = list(self._inbound.values())
        self._inbound.clear()
        for ws in streams:
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"stopping")

    async def _on_app_shutdown(self, app: web.Application) -> None:
        self._stopping = True
        await self._close_inbound()

    # --- outbound -----------------------------------------------------------------------------

    def _backoff_s(self, attempt: int) -> float:
        ceiling_ms = min(self._backoff_ms_max, self._backoff_ms_min * 2 ** min(attempt, 30))
        # Full jitter, but never below the minimum: members restarted together spread out.
        return self._rng.uniform(self._backoff_ms_min, ceiling_ms) / 1000

    async def _run_peer(self, peer: _Peer) -> None:
        attempt = 0
        failing = False
        while True:
            try:
                ws = await self._connect(peer)
            except CertificateError as exc:
                self.metrics.inc("p2p_out_refused_unknown_peer")
                event(log, logging.WARNING, "p2p.peer_refused", peer=peer.node_id, reason=str(exc))
            except aiohttp.WSServerHandshakeError as exc:
                # 403: the peer does not take us for a member (revoked, or configurations
                # that disagree); anything else is a peer that is not (yet) serving streams.
                name = "p2p_out_refused_by_peer" if exc.status == 403 else "p2p_out_connect_failed"
                self.metrics.inc(name)
                if not failing:
                    failing = True
                    event(
                        log,
                        logging.WARNING,
                        "p2p.refused_by_peer",
                        peer=peer.node_id,
                        status=exc.status,
                    )
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                self.metrics.inc("p2p_out_connect_failed")
                if not failing:  # log the first failure of a run, not every retry
                    failing = True
                    event(
                        log,
                        logging.INFO,
                        "p2p.connect_failed",
                        peer=peer.node_id,
                        error=type(exc).__name__,
                    )
            else:
                failing = False
                self.metrics.inc("p2p_out_streams_opened")
                opened_s = time.monotonic()
                peer.stream = ws
                try:
                    await self._pump(peer, ws)
                finally:
                    peer.stream = None
                    with contextlib.suppress(Exception):
                        await ws.close()
                # A stream that lived a while resets the backoff; one that dies at once does not.
                if time.monotonic() - opened_s >= self._backoff_ms_max / 1000:
                    attempt = 0
            await asyncio.sleep(self._backoff_s(attempt))
            attempt += 1

    async def _connect(self, peer: _Peer) -> aiohttp.ClientWebSocketResponse:
        if self._session is None:
            raise LocalError("the transport is not started")
        url = URL.build(scheme="wss", host=peer.host, port=peer.port, path=STREAM_PATH)
        async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
            ws = await self._session.ws_connect(
                url,
                ssl=self._client_ctx,
                max_msg_size=limits.MESSAGE_BYTES_MAX,
                compress=0,
                heartbeat=HEARTBEAT_S,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_TIMEOUT_S),
            )
        cert_der = peer_certificate_der(ws.get_extra_info("ssl_object"))
        try:
            identity = self._auth.authenticate(cert_der, Purpose.TLS_SERVER)
            if identity.subject_id != peer.node_id:
                raise CertificateError("the server is another member than the one dialled")
        except BaseException:
            await ws.close()
            raise
        peer.cert_der = cert_der
        return ws

    async def _pump(self, peer: _Peer, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Write queued frames until the stream ends (the reader sees it close)."""
        writer = asyncio.create_task(self._write_frames(peer, ws))
        reader = asyncio.create_task(_drain(ws))
        try:
            await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (writer, reader):
                task.cancel()
            await asyncio.gather(writer, reader, return_exceptions=True)

    async def _write_frames(self, peer: _Peer, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            frame = await peer.outbox.get()
            peer.sending += 1
            try:
                await ws.send_bytes(frame)
            except (aiohttp.ClientError, ConnectionError, RuntimeError):
                self.metrics.inc("p2p_out_lost")
                return
            finally:
                peer.sending -= 1
            self.metrics.inc("p2p_out_sent")


def _drop_reason(error: RemoteError) -> str:
    """The DROP_REASONS entry for a frame that failed to decode with *error*."""
    if isinstance(error, OversizeError):
        return "oversize"
    if isinstance(error, UnknownTypeError):
        return "unknown_type"
    if isinstance(error, FieldError):
        return "bad_field"
    return "malformed"  # DecodeError, or another RemoteError from a message's own check()


async def _drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Read the outbound stream until it closes; the server sends nothing but control frames."""
    while True:
        msg = await ws.receive()
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
            return


def _log_task_failure(task: asyncio.Task[None]) -> None:
    """An outbound task only ends by cancellation; anything else is a bug worth shouting."""
    if not task.cancelled() and task.exception() is not None:
        log.error("p2p.task_failed", exc_info=task.exception())


def _is_open(ws: aiohttp.ClientWebSocketResponse | None) -> bool:
    return ws is not None and not ws.closed


async def start_tls_site(
    runner: web.AppRunner, host: str, port: int, ssl_context: ssl.SSLContext
) -> web.TCPSite:
    """Start a TLS site for *runner* on (*host*, *port*) (the runner must be set up)."""
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    return site
