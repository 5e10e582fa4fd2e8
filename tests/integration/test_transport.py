"""The node-to-node transport over real mutual TLS on 127.0.0.1.

Proves: members exchange messages both ways over WebSocket streams, and a restarted member is
reached again (reconnect with backoff) with what was queued meanwhile; a certificate from
another network's root is refused by TLS in either direction; a certificate of the right root
that is not a current member's node certificate (an org admin's, a revoked member's) is
refused with 403 before the upgrade and counted; and every bad-frame shape that crashed
Fabric orderers (CVE-2021-43669, CVE-2021-43667, CVE-2022-31121) — malformed msgpack, a
frame over MESSAGE_BYTES_MAX, a text frame, a message claiming another sender, missing and nil
fields, an unknown type tag, and kin — is dropped, counted by reason and logged without its
payload, after which the node still delivers a valid message. The outbound queue of a peer
that is down stays within its bound and counts what it drops.

How: `network init` lays out the local profile in a tmp dir (conftest); each test starts
transports of some of its nodes on their configured p2p ports, with a test-only message kind
registered below; bad frames are hand-built with msgpack and sent from a raw aiohttp client
holding a member's (or an admin's, or a foreign) certificate. Each test is bounded by
asyncio.timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import msgpack
import pytest

import node.transport as transport_module
from identity.certs import CertificateAuthority, cert_to_der
from identity.crl import make_crl
from identity.keystore import read_cert, read_signing_key
from identity.validate import Purpose
from node.config import load_node_config
from node.membership import with_crl
from node.metrics import Metrics
from node.tls import PeerAuthenticator, client_context, node_tls_contexts
from node.transport import (
    FRAME_DROPS_PER_STREAM_MAX,
    OUTBOX_BYTES_MAX,
    OUTBOX_MESSAGES_MAX,
    STREAM_PATH,
    Transport,
)
from protocol import codec, limits
from protocol.batch import FrameBatch
from protocol.codec import field, message
from protocol.config import BatchConfig, NetworkConfig
from protocol.errors import CertificateError, ConfigError
from tests.integration.conftest import InitialisedNetwork, init_local_network

TEST_TIMEOUT_S = 10.0
SENTINEL = "PHI-SENTINEL-9c41d2"  # stands for payload bytes that must never reach a log


PING_TAG = "test_p2p_ping"


@message(PING_TAG)
class Ping:
    """A routable test message (Raft messages have the same sender/recipient fields)."""

    sender: str = field(max_len=limits.ID_CHARS_MAX)
    recipient: str = field(max_len=limits.ID_CHARS_MAX)
    payload: bytes = field(max_len=limits.MESSAGE_BYTES_MAX - limits.KIB)


# Tags are global, and the unit codec suite requires every registered kind to have a
# hypothesis strategy (tests/unit/strategies.py). So this test-only kind is registered only
# while a test of this module runs (the autouse fixture below), never at collection time.
# protocol.codec has no public way to unregister; this touches its registry on purpose.
del codec._KINDS[PING_TAG]


@pytest.fixture(autouse=True)
def ping_kind_registered() -> Iterator[None]:
    codec._KINDS[PING_TAG] = Ping
    try:
        yield
    finally:
        del codec._KINDS[PING_TAG]


def ping(sender: str, recipient: str, payload: bytes = b"hello") -> Ping:
    return Ping(sender=sender, recipient=recipient, payload=payload)


# --- helpers --------------------------------------------------------------------------------


class Member:
    """One node's transport under test, collecting what it is delivered."""

    def __init__(
        self,
        net: InitialisedNetwork,
        node_id: str,
        peers: Iterable[str],
        *,
        revoked: Callable[[], frozenset[int]] = frozenset,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        address_override: dict[str, tuple[str, int]] | None = None,
        network: NetworkConfig | None = None,
    ) -> None:
        config = load_node_config(net.node_dir(node_id) / "node.toml")
        network = network or net.config  # the configuration this member has applied
        contexts = node_tls_contexts(config, network)
        self.node_id = node_id
        self.host = config.listen.host
        self.port = config.listen.p2p_port
        self.inbox: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self.metrics = Metrics()
        members = {
            m.node_id: (m.host, m.p2p_port)
            for m in net.config.members
            if m.node_id in set(peers) | {node_id}
        }
        members.update(address_override or {})
        self.transport = Transport(
            node_id,
            members,
            server_ctx=contexts.server,
            client_ctx=contexts.client,
            authenticator=PeerAuthenticator.from_network(network, revoked=revoked, clock=clock),
            on_message=lambda sender, msg: self.inbox.put_nowait((sender, msg)),
            metrics=self.metrics,
            backoff_ms_max=500,
        )

    async def __aenter__(self) -> Member:
        await self.transport.serve(self.host, self.port)
        await self.transport.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.transport.stop()

    async def receive(self, timeout_s: float = 5.0) -> tuple[str, object]:
        async with asyncio.timeout(timeout_s):
            return await self.inbox.get()

    def count(self, name: str) -> int:
        return self.metrics.value(name)


async def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.01)


def member_client_ctx(net: InitialisedNetwork, node_id: str) -> ssl.SSLContext:
    return node_tls_contexts(
        load_node_config(net.node_dir(node_id) / "node.toml"), net.config
    ).client


def stream_url(member: Member) -> str:
    return f"wss://{member.host}:{member.port}{STREAM_PATH}"


@contextlib.asynccontextmanager
async def raw_stream(
    ctx: ssl.SSLContext, member: Member
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    """A WebSocket to *member*'s stream endpoint with *ctx*'s certificate, no transport."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(stream_url(member), ssl=ctx, compress=0) as ws,
    ):
        yield ws


@contextlib.asynccontextmanager
async def ministry_with_raw_stream(
    net: InitialisedNetwork,
) -> AsyncIterator[tuple[Member, aiohttp.ClientWebSocketResponse]]:
    """The ministry's transport alone, and a raw stream to it with northgate's certificate
    (what a misbehaving member would write), within the test timeout."""
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(net, "ministry", []) as a,
        raw_stream(member_client_ctx(net, "northgate"), a) as ws,
    ):
        yield a, ws


def assert_no_sentinel(caplog: pytest.LogCaptureFixture) -> None:
    assert SENTINEL not in caplog.text
    for record in caplog.records:
        assert SENTINEL not in repr(getattr(record, "fields", None))
        assert SENTINEL not in record.getMessage()


# --- delivery and reconnection --------------------------------------------------------------


@pytest.mark.asyncio
async def test_two_members_exchange_messages_both_ways(local_network: InitialisedNetwork) -> None:
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", ["northgate"]) as a,
        Member(local_network, "northgate", ["ministry"]) as b,
    ):
        for i in range(20):
            a.transport.send(ping("ministry", "northgate", b"a%d" % i))
            b.transport.send(ping("northgate", "ministry", b"b%d" % i))
        got_b = [await b.receive() for _ in range(20)]
        got_a = [await a.receive() for _ in range(20)]
        assert got_b == [("ministry", ping("ministry", "northgate", b"a%d" % i)) for i in range(20)]
        assert got_a == [
            ("northgate", ping("northgate", "ministry", b"b%d" % i)) for i in range(20)
        ]
        await eventually(lambda: a.transport.connected_peers() == {"northgate"})
        await eventually(lambda: b.transport.connected_peers() == {"ministry"})
        assert a.count("p2p_out_sent") == 20 and b.count("p2p_in_delivered") == 20


@pytest.mark.asyncio
async def test_three_members_all_pairs(local_network: InitialisedNetwork) -> None:
    ids = ["ministry", "northgate", "riverside"]
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, ids[0], ids) as m0,
        Member(local_network, ids[1], ids) as m1,
        Member(local_network, ids[2], ids) as m2,
    ):
        members = {m.node_id: m for m in (m0, m1, m2)}
        for src in ids:
            for dst in ids:
                if src != dst:
                    members[src].transport.send(ping(src, dst, f"{src}>{dst}".encode()))
        for dst, member in members.items():
            got = sorted([await member.receive(), await member.receive()], key=lambda x: x[0])
            expected = sorted(
                [(src, ping(src, dst, f"{src}>{dst}".encode())) for src in ids if src != dst],
                key=lambda x: x[0],
            )
            assert got == expected
        for member in members.values():
            others = set(ids) - {member.node_id}
            await eventually(lambda m=member, o=others: m.transport.connected_peers() == o)


@pytest.mark.asyncio
async def test_restarted_peer_is_reconnected_and_gets_what_was_queued(
    local_network: InitialisedNetwork,
) -> None:
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", ["northgate"]) as a,
    ):
        async with Member(local_network, "northgate", ["ministry"]) as b:
            a.transport.send(ping("ministry", "northgate", b"before"))
            assert (await b.receive())[1] == ping("ministry", "northgate", b"before")
        await eventually(lambda: "northgate" not in a.transport.connected_peers())
        a.transport.send(ping("ministry", "northgate", b"while-down"))
        assert a.transport.queued("northgate")[0] == 1
        await asyncio.sleep(0.3)  # a few failed dials: the backoff grows
        assert a.count("p2p_out_connect_failed") >= 1
        async with Member(local_network, "northgate", ["ministry"]) as b2:
            assert (await b2.receive())[1] == ping("ministry", "northgate", b"while-down")
            b2.transport.send(ping("northgate", "ministry", b"back"))
            assert (await a.receive())[1] == ping("northgate", "ministry", b"back")
        assert a.count("p2p_out_streams_opened") == 2


@pytest.mark.asyncio
async def test_a_new_stream_from_a_member_replaces_its_older_one(
    local_network: InitialisedNetwork,
) -> None:
    ctx = member_client_ctx(local_network, "northgate")
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", []) as a,
        raw_stream(ctx, a) as first,
    ):
        await eventually(lambda: a.transport.connected_peers() == {"northgate"})
        async with raw_stream(ctx, a) as second:
            closing = await first.receive()
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert first.close_code == aiohttp.WSCloseCode.GOING_AWAY
            await second.send_bytes(codec.encode(ping("northgate", "ministry", b"second")))
            assert (await a.receive())[1] == ping("northgate", "ministry", b"second")
            assert a.transport.connected_peers() == {"northgate"}
        await eventually(lambda: a.transport.connected_peers() == frozenset())
        assert a.count("p2p_in_streams_opened") == 2


# --- who may connect ------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_certificate_of_another_network_is_refused_by_tls(
    local_network: InitialisedNetwork, foreign_network: InitialisedNetwork
) -> None:
    foreign_dir = foreign_network.node_dir("northgate")
    # The foreign node's certificate, trusting our root so that only the server can refuse.
    impostor = client_context(
        foreign_dir / "node.pem", foreign_dir / "node.key", None, local_network.config
    )
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", []) as a,
    ):
        with pytest.raises((aiohttp.ClientError, ssl.SSLError, ConnectionError)):
            async with raw_stream(impostor, a) as ws:
                await ws.send_bytes(codec.encode(ping("northgate", "ministry")))
                await ws.receive()
        # The application never saw the request: OpenSSL refused the handshake.
        assert a.count("p2p_in_streams_opened") == 0
        assert a.count("p2p_in_refused_unknown_peer") == 0
        assert a.inbox.empty()


@pytest.mark.asyncio
async def test_dialling_a_server_of_another_network_fails_tls(
    local_network: InitialisedNetwork, foreign_network: InitialisedNetwork
) -> None:
    foreign = foreign_network.config.member("northgate")
    assert foreign is not None
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(foreign_network, "northgate", []) as impostor,
        Member(
            local_network,
            "ministry",
            ["northgate"],
            address_override={"northgate": (foreign.host, foreign.p2p_port)},
        ) as a,
    ):
        a.transport.send(ping("ministry", "northgate"))
        await eventually(lambda: a.count("p2p_out_connect_failed") >= 2)
        assert a.count("p2p_out_streams_opened") == 0
        assert impostor.count("p2p_in_streams_opened") == 0
        assert impostor.inbox.empty()


@pytest.mark.asyncio
async def test_admin_certificate_of_the_right_root_is_refused_with_403(
    local_network: InitialisedNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medledger")
    admin_dir = local_network.org_dir("northgate") / "admin"
    admin_ctx = client_context(
        admin_dir / "admin.pem", admin_dir / "admin.key", None, local_network.config
    )
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", []) as a,
    ):
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            async with raw_stream(admin_ctx, a):
                pass
        assert refused.value.status == 403
        assert a.count("p2p_in_refused_unknown_peer") == 1
        assert a.count("p2p_in_streams_opened") == 0
        assert "p2p.peer_refused" in caplog.text


@pytest.mark.asyncio
async def test_revoked_member_is_refused_and_revocation_applies_to_the_next_connection(
    local_network: InitialisedNetwork,
) -> None:
    northgate_serial = read_cert(local_network.node_dir("northgate") / "node.pem").serial_number
    revoked: set[int] = {northgate_serial}
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", ["northgate"], revoked=lambda: frozenset(revoked)) as a,
        Member(local_network, "northgate", ["ministry"]) as b,
    ):
        b.transport.send(ping("northgate", "ministry", b"refused"))
        await eventually(lambda: a.count("p2p_in_refused_unknown_peer") >= 2)
        # The dialler counts a refusal when it reads the 403, a moment after the server.
        await eventually(lambda: b.count("p2p_out_refused_by_peer") >= 2)
        assert b.count("p2p_out_streams_opened") == 0
        assert a.inbox.empty()
        # ministry also refuses northgate as a server: its own dial fails the app check.
        a.transport.send(ping("ministry", "northgate"))
        await eventually(lambda: a.count("p2p_out_refused_unknown_peer") >= 1)
        assert b.inbox.empty()
        revoked.clear()  # e.g. a revocation that never committed: the next dial succeeds
        assert (await a.receive())[1] == ping("northgate", "ministry", b"refused")


@pytest.mark.asyncio
async def test_a_revocation_closes_the_streams_the_revoked_member_has_open(
    local_network: InitialisedNetwork,
) -> None:
    northgate_serial = read_cert(local_network.node_dir("northgate") / "node.pem").serial_number
    revoked: set[int] = set()
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", ["northgate"], revoked=lambda: frozenset(revoked)) as a,
        Member(local_network, "northgate", ["ministry"]) as b,
    ):
        b.transport.send(ping("northgate", "ministry", b"before"))
        a.transport.send(ping("ministry", "northgate", b"before"))
        assert (await a.receive())[1] == ping("northgate", "ministry", b"before")
        assert (await b.receive())[1] == ping("ministry", "northgate", b"before")
        assert a.transport.recheck_streams() == 0  # nothing revoked: nothing closed
        revoked.add(northgate_serial)  # the revocation commits on ministry
        assert a.transport.recheck_streams() == 2  # northgate's inbound and our outbound
        assert a.count("p2p_streams_closed_not_accepted") == 2
        await eventually(lambda: "northgate" not in a.transport.connected_peers())
        # northgate dials again and is refused; nothing it sends gets through.
        b.transport.send(ping("northgate", "ministry", b"after"))
        await eventually(lambda: a.count("p2p_in_refused_unknown_peer") >= 1)
        await eventually(lambda: a.count("p2p_out_refused_unknown_peer") >= 1)
        await asyncio.sleep(0.3)
        assert a.inbox.empty()


@pytest.mark.asyncio
async def test_a_certificate_that_expires_loses_its_open_streams_at_the_next_recheck(
    local_network: InitialisedNetwork, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transport_module, "RECHECK_S", 0.05)
    northgate_cert = read_cert(local_network.node_dir("northgate") / "node.pem")
    now = [datetime.now(UTC)]
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", ["northgate"], clock=lambda: now[0]) as a,
        Member(local_network, "northgate", ["ministry"]) as b,
    ):
        b.transport.send(ping("northgate", "ministry", b"before"))
        assert (await a.receive())[1] == ping("northgate", "ministry", b"before")
        await asyncio.sleep(0.2)  # several rechecks: a valid certificate keeps its stream
        assert a.count("p2p_streams_closed_not_accepted") == 0
        now[0] = northgate_cert.not_valid_after_utc + timedelta(seconds=1)
        await eventually(lambda: a.count("p2p_streams_closed_not_accepted") >= 1)
        await eventually(lambda: "northgate" not in a.transport.connected_peers())


@pytest.mark.asyncio
async def test_a_node_on_its_organisations_revocation_list_fails_the_tls_handshake(
    local_network: InitialisedNetwork,
) -> None:
    """OpenSSL itself refuses the revoked node, both ways: the application's check never
    runs (no 'refused' count), the handshake fails (connection failures)."""
    ca_dir = local_network.org_dir("northgate")
    ca = CertificateAuthority(read_cert(ca_dir / "ca.pem"), read_signing_key(ca_dir / "ca.key"))
    northgate = read_cert(local_network.node_dir("northgate") / "node.pem").serial_number
    crl = make_crl(ca, {northgate}, number=2, this_update=datetime.now(UTC))
    revoked_config = with_crl(local_network.config, "northgate", crl)
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", ["northgate"], network=revoked_config) as a,
        Member(local_network, "northgate", ["ministry"]) as b,  # unaware of its revocation
    ):
        b.transport.send(ping("northgate", "ministry", b"refused"))
        a.transport.send(ping("ministry", "northgate", b"refused"))
        await eventually(lambda: b.count("p2p_out_connect_failed") >= 2)
        await eventually(lambda: a.count("p2p_out_connect_failed") >= 2)
        assert a.count("p2p_in_refused_unknown_peer") == 0  # never got past OpenSSL
        assert a.count("p2p_out_refused_unknown_peer") == 0
        assert a.count("p2p_in_streams_opened") == b.count("p2p_out_streams_opened") == 0
        assert a.inbox.empty() and b.inbox.empty()


def test_a_member_certificate_must_be_the_configured_one(
    local_network: InitialisedNetwork, foreign_network: InitialisedNetwork
) -> None:
    auth = PeerAuthenticator.from_network(local_network.config)
    own = cert_to_der(read_cert(local_network.node_dir("riverside") / "node.pem"))
    assert auth.authenticate(own, Purpose.TLS_CLIENT).subject_id == "riverside"
    assert auth.authenticate(own, Purpose.TLS_SERVER).subject_id == "riverside"
    admin = cert_to_der(read_cert(local_network.org_dir("riverside") / "admin" / "admin.pem"))
    with pytest.raises(CertificateError, match="not a node certificate"):
        auth.authenticate(admin, Purpose.TLS_CLIENT)
    foreign = cert_to_der(read_cert(foreign_network.node_dir("riverside") / "node.pem"))
    with pytest.raises(CertificateError, match="issuer"):
        auth.authenticate(foreign, Purpose.TLS_CLIENT)
    with pytest.raises(CertificateError, match="no certificate"):
        auth.authenticate(None, Purpose.TLS_CLIENT)


def test_encrypted_keys_need_their_passphrase_and_the_root_must_be_the_network_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, local_network: InitialisedNetwork
) -> None:
    net = init_local_network(tmp_path / "net", passphrase=b"s3cret", env="MEDLEDGER_TEST_PASS")
    config = load_node_config(net.node_dir("stmarys") / "node.toml")
    monkeypatch.delenv("MEDLEDGER_TEST_PASS", raising=False)
    with pytest.raises(ConfigError, match="MEDLEDGER_TEST_PASS"):
        node_tls_contexts(config, net.config)
    monkeypatch.setenv("MEDLEDGER_TEST_PASS", "wrong")
    with pytest.raises(ConfigError, match=r"node\.key"):
        node_tls_contexts(config, net.config)
    monkeypatch.setenv("MEDLEDGER_TEST_PASS", "s3cret")
    contexts = node_tls_contexts(config, net.config)
    assert contexts.server.minimum_version == ssl.TLSVersion.TLSv1_3
    assert contexts.server.verify_mode == ssl.CERT_REQUIRED
    assert contexts.client.check_hostname
    with pytest.raises(ConfigError, match=r"tls\.root_ca"):
        node_tls_contexts(config, local_network.config)


# --- bad frames -----------------------------------------------------------------------------

GOOD_FIELDS = {"payload": SENTINEL.encode(), "recipient": "ministry", "sender": "northgate"}


def packed(tag: object, fields: object) -> bytes:
    return msgpack.packb([tag, fields], use_bin_type=True)


BAD_FRAMES: dict[str, tuple[str, Callable[[], bytes | str]]] = {
    # CVE-2021-43667 / CVE-2021-43669 shapes: bytes that are not a message at all.
    "not_msgpack": ("malformed", lambda: b"\xc1" + SENTINEL.encode()),
    "truncated": ("malformed", lambda: packed("test_p2p_ping", GOOD_FIELDS)[:-4]),
    "not_a_tag_and_fields": ("malformed", lambda: msgpack.packb({"x": SENTINEL})),
    "non_canonical": (
        "malformed",
        lambda: msgpack.packb(["test_p2p_ping", dict(reversed(GOOD_FIELDS.items()))]),
    ),
    "unknown_type_tag": ("unknown_type", lambda: packed(SENTINEL.replace("-", "_"), GOOD_FIELDS)),
    # CVE-2022-31121 shapes: a known kind with missing or nil fields.
    "missing_field": (
        "bad_field",
        lambda: packed("test_p2p_ping", {"payload": SENTINEL.encode(), "sender": "northgate"}),
    ),
    "nil_field": ("bad_field", lambda: packed("test_p2p_ping", {**GOOD_FIELDS, "sender": None})),
    "nil_fields_map": ("bad_field", lambda: packed("test_p2p_ping", None)),
    "unknown_field": (
        "bad_field",
        lambda: packed("test_p2p_ping", {**GOOD_FIELDS, SENTINEL.replace("-", "_"): 1}),
    ),
    "text_frame": ("non_binary", lambda: SENTINEL),
    "another_sender": (
        "wrong_sender",
        lambda: codec.encode(ping("riverside", "ministry", SENTINEL.encode())),
    ),
    "another_recipient": (
        "wrong_recipient",
        lambda: codec.encode(ping("northgate", "riverside", SENTINEL.encode())),
    ),
    "kind_without_sender": (
        "unroutable",
        lambda: codec.encode(
            BatchConfig(max_txs=1, max_bytes=limits.ENVELOPE_BYTES_MAX, timeout_ms=1)
        ),
    ),
    # The same shapes inside a FrameBatch are each checked as if they had come alone.
    "batched_not_msgpack": ("malformed", lambda: batch(b"\xc1" + SENTINEL.encode())),
    "batched_nil_field": (
        "bad_field",
        lambda: batch(packed("test_p2p_ping", {**GOOD_FIELDS, "sender": None})),
    ),
    "batched_another_sender": (
        "wrong_sender",
        lambda: batch(codec.encode(ping("riverside", "ministry", SENTINEL.encode()))),
    ),
    "batch_in_a_batch": (
        "unroutable",
        lambda: batch(batch(codec.encode(ping("northgate", "ministry", SENTINEL.encode())))),
    ),
    "batch_with_a_nil_frame": ("bad_field", lambda: packed("frame_batch", {"frames": [None]})),
}


def batch(*frames: bytes) -> bytes:
    return codec.encode(FrameBatch(frames=frames))


@pytest.mark.asyncio
@pytest.mark.parametrize("shape", sorted(BAD_FRAMES))
async def test_bad_frame_is_dropped_counted_logged_without_payload_and_node_keeps_serving(
    local_network: InitialisedNetwork, caplog: pytest.LogCaptureFixture, shape: str
) -> None:
    caplog.set_level(logging.INFO, logger="medledger")
    reason, make = BAD_FRAMES[shape]
    frame = make()
    async with ministry_with_raw_stream(local_network) as (a, ws):
        if isinstance(frame, str):
            await ws.send_str(frame)
        else:
            await ws.send_bytes(frame)
        await eventually(lambda: a.count(f"p2p_in_dropped_{reason}") == 1)
        valid = ping("northgate", "ministry", b"after")
        await ws.send_bytes(codec.encode(valid))
        assert await a.receive() == ("northgate", valid)
        assert a.inbox.empty()
    dropped = {k: v for k, v in a.metrics.snapshot().items() if k.startswith("p2p_in_dropped_")}
    assert dropped == {f"p2p_in_dropped_{reason}": 1}
    assert "p2p.frame_dropped" in caplog.text
    assert_no_sentinel(caplog)


@pytest.mark.asyncio
async def test_oversize_frame_ends_the_stream_and_the_node_keeps_serving(
    local_network: InitialisedNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medledger")
    oversize = (SENTINEL.encode() * (limits.MESSAGE_BYTES_MAX // len(SENTINEL) + 2))[
        : limits.MESSAGE_BYTES_MAX + 1
    ]
    ctx = member_client_ctx(local_network, "northgate")
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", []) as a,
    ):
        async with raw_stream(ctx, a) as ws:
            with contextlib.suppress(ConnectionError, aiohttp.ClientError):
                await ws.send_bytes(oversize)
            closing = await ws.receive()
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            # 1009, or 1006 when the server's close overtakes the rest of the upload.
            assert ws.close_code in (
                aiohttp.WSCloseCode.MESSAGE_TOO_BIG,
                aiohttp.WSCloseCode.ABNORMAL_CLOSURE,
            )
        assert a.count("p2p_in_dropped_oversize") == 1
        async with raw_stream(ctx, a) as ws:
            valid = ping("northgate", "ministry", b"after")
            await ws.send_bytes(codec.encode(valid))
            assert await a.receive() == ("northgate", valid)
    assert "p2p.frame_dropped" in caplog.text
    assert_no_sentinel(caplog)


@pytest.mark.asyncio
async def test_a_stream_of_bad_frames_is_closed_after_the_limit(
    local_network: InitialisedNetwork,
) -> None:
    ctx = member_client_ctx(local_network, "northgate")
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", []) as a,
    ):
        async with raw_stream(ctx, a) as ws:
            for _ in range(FRAME_DROPS_PER_STREAM_MAX):
                await ws.send_bytes(b"\xc1")
            closing = await ws.receive()
            assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
            assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
        assert a.count("p2p_in_dropped_malformed") == FRAME_DROPS_PER_STREAM_MAX
        assert a.count("p2p_in_closed_abuse") == 1
        async with raw_stream(ctx, a) as ws:
            await ws.send_bytes(codec.encode(ping("northgate", "ministry")))
            assert (await a.receive())[0] == "northgate"


@pytest.mark.asyncio
async def test_a_batch_delivers_its_good_messages_in_order_and_drops_its_bad_ones(
    local_network: InitialisedNetwork, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medledger")
    first, last = ping("northgate", "ministry", b"first"), ping("northgate", "ministry", b"last")
    forged = ping("riverside", "ministry", SENTINEL.encode())
    async with ministry_with_raw_stream(local_network) as (a, ws):
        await ws.send_bytes(
            batch(
                codec.encode(first),
                b"\xc1" + SENTINEL.encode(),
                codec.encode(forged),
                codec.encode(last),
            )
        )
        assert [await a.receive() for _ in range(2)] == [("northgate", first), ("northgate", last)]
        assert a.count("p2p_in_dropped_malformed") == 1
        assert a.count("p2p_in_dropped_wrong_sender") == 1
        assert a.count("p2p_in_delivered") == 2 and a.count("p2p_in_batches") == 1
    assert_no_sentinel(caplog)


@pytest.mark.asyncio
async def test_a_batch_of_bad_messages_counts_each_toward_the_stream_limit(
    local_network: InitialisedNetwork,
) -> None:
    async with ministry_with_raw_stream(local_network) as (a, ws):
        await ws.send_bytes(batch(*[b"\xc1"] * (2 * FRAME_DROPS_PER_STREAM_MAX)))
        closing = await ws.receive()
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
        assert ws.close_code == aiohttp.WSCloseCode.POLICY_VIOLATION
        # Counted and logged up to the limit, then the stream closed.
        assert a.count("p2p_in_dropped_malformed") == FRAME_DROPS_PER_STREAM_MAX


@pytest.mark.asyncio
async def test_messages_sent_in_one_pass_travel_in_one_batch_after_the_first(
    local_network: InitialisedNetwork,
) -> None:
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", ["northgate"]) as a,
        Member(local_network, "northgate", ["ministry"]) as b,
    ):
        a.transport.send(ping("ministry", "northgate", b"hello"))
        assert await b.receive() == ("ministry", ping("ministry", "northgate", b"hello"))
        await eventually(lambda: a.transport.queued("northgate") == (0, 0))
        sent = [ping("ministry", "northgate", b"%d" % i) for i in range(50)]
        for msg in sent:  # one pass of the event loop
            a.transport.send(msg)
        assert [await b.receive() for _ in sent] == [("ministry", m) for m in sent]
        # The first went at once, the 49 after it together.
        assert a.count("p2p_out_batches") == 1 and b.count("p2p_in_batches") == 1
        assert a.count("p2p_out_sent") == 51 and b.count("p2p_in_delivered") == 51


# --- bounded queues -------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_queue_for_a_down_peer_is_bounded_drops_the_oldest_and_counts(
    local_network: InitialisedNetwork,
) -> None:
    extra = 100
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", ["northgate"]) as a,
    ):
        for i in range(OUTBOX_MESSAGES_MAX + extra):
            a.transport.send(ping("ministry", "northgate", i.to_bytes(4, "big")))
        assert a.transport.queued("northgate")[0] == OUTBOX_MESSAGES_MAX
        assert a.count("p2p_out_dropped_queue_full") == extra
        # Messages to a node that is no peer are dropped and counted, not queued.
        a.transport.send(ping("ministry", "nobody"))
        assert a.count("p2p_out_dropped_unknown_peer") == 1
        async with Member(local_network, "northgate", ["ministry"]) as b:
            first = await b.receive()
            assert first[1] == ping("ministry", "northgate", extra.to_bytes(4, "big"))
            for _ in range(OUTBOX_MESSAGES_MAX - 1):
                await b.receive()
        assert a.transport.queued("northgate") == (0, 0)


@pytest.mark.asyncio
async def test_queue_is_bounded_in_bytes_too(local_network: InitialisedNetwork) -> None:
    big = b"\x00" * (limits.MESSAGE_BYTES_MAX // 2)
    async with (
        asyncio.timeout(TEST_TIMEOUT_S),
        Member(local_network, "ministry", ["northgate"]) as a,
    ):
        for _ in range(10):
            a.transport.send(ping("ministry", "northgate", big))
        frames, size = a.transport.queued("northgate")
        assert size <= OUTBOX_BYTES_MAX
        assert frames == 3  # three half-limit frames fit in two full ones, a fourth does not
        assert a.count("p2p_out_dropped_queue_full") == 7
