"""The ordering service as real processes: five nodes over mutual TLS on 127.0.0.1.

Proves, with `medledger node start` processes and their LevelDB: a leader is elected and
envelopes submitted through any node commit into identical chains; bad envelopes (garbage,
oversize, another network's signer, a forged signature, another network id) get a clear 4xx,
the node keeps serving, and no payload reaches a log file; and under load from 8 closed-loop
clients, killing the leader twice and a follower once with SIGKILL and restarting them loses
no acknowledged envelope and orders none twice: every acknowledged envelope is in every
node's chain exactly once, at the block and index it was acknowledged with.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import pytest

from identity.certs import cert_to_der
from identity.keystore import read_cert, read_signing_key
from node.catchup import DELIVER_PATH
from node.client import NodeRefused
from node.envelopes import opaque_envelope
from node.loadgen import run_load
from node.supervisor import (
    api_url,
)
from node.tls import client_context
from protocol import limits
from protocol.codec import decode, encode
from protocol.transaction import Proposal, SignedProposal
from tests.integration.cluster import NETWORK_ID, Cluster, chain_tx_ids
from tests.integration.conftest import init_local_network

# Stands in for what must never reach a log line: a patient's name and national id.
SENTINEL = b"PATIENT Jane Q. Doe NID 850101-1234567"


def envelope_bytes(cluster: Cluster, payload: bytes = b"x", **kw: object) -> bytes:
    key, cert = cluster.admin()
    args = {"network_id": NETWORK_ID, "key": key, "cert_der": cert}
    args.update(kw)
    return encode(
        opaque_envelope(payload, timestamp_ms=int(time.time() * 1000), **args)  # type: ignore[arg-type]
    )


def test_envelopes_through_every_node_commit_into_identical_chains(cluster: Cluster) -> None:
    locations = []
    for node_id in sorted(cluster.nodes):
        result = cluster.client(node_id).submit(envelope_bytes(cluster, node_id.encode()))
        locations.append((result["block"], result["index"]))
    assert len(set(locations)) == len(locations)
    raw = envelope_bytes(cluster)
    first = cluster.client("ministry").submit(raw)
    again = cluster.client("stmarys").submit(raw)
    assert again["duplicate"] and (again["block"], again["index"]) == (
        first["block"],
        first["index"],
    )
    status = cluster.client("riverside").raft_status()
    assert status["leader"] and status["commit_index"] >= 1
    metrics = cluster.client("riverside").request_text("/metrics")
    assert "# TYPE medledger_ordering_blocks_committed counter" in metrics
    committed = next(
        int(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("medledger_ordering_blocks_committed ")
    )
    assert committed >= len(cluster.nodes) + 1
    cluster.wait_converged()
    cluster.stop()
    chains = {n: chain_tx_ids(cluster.out / "nodes" / n) for n in cluster.nodes}
    assert len({tuple(h) for h, _ in chains.values()}) == 1
    assert len(next(iter(chains.values()))[1]) == len(cluster.nodes) + 1


def test_bad_envelopes_get_clear_errors_and_the_node_keeps_serving(
    cluster: Cluster, tmp_path: Path
) -> None:
    client = cluster.client("northgate")
    other = init_local_network(tmp_path / "other")
    other_key = read_signing_key(other.out / "orgs" / "northgate" / "admin" / "admin.key")
    other_cert = cert_to_der(read_cert(other.out / "orgs" / "northgate" / "admin" / "admin.pem"))
    key, cert = cluster.admin()
    good = opaque_envelope(
        b"x", network_id=NETWORK_ID, key=key, cert_der=cert, timestamp_ms=int(time.time() * 1000)
    )
    forged = type(good)(transaction=good.transaction, signature=key.sign(b"other bytes"))
    cases = {
        "garbage": (b"\x92\x01\x02", 400, "expected [tag, fields]"),
        "truncated": (envelope_bytes(cluster)[:-5], 400, "msgpack"),
        "oversize": (b"\x00" * (limits.ENVELOPE_BYTES_MAX + 1), 413, "over the limit"),
        "unknown signer": (
            envelope_bytes(cluster, key=other_key, cert_der=other_cert),
            400,
            "not an organisation CA",
        ),
        "forged signature": (encode(forged), 400, "signature"),
        "other network": (envelope_bytes(cluster, network_id="elsewhere"), 400, "network_id"),
    }
    for name, (body, status, words) in cases.items():
        with pytest.raises(NodeRefused) as refused:
            client.submit(body)
        assert refused.value.status == status, name
        assert words in refused.value.reason, (name, refused.value.reason)

    def proposal(signer=key, signer_cert=cert, network_id=NETWORK_ID, arg=b"x"):
        p = Proposal(
            network_id=network_id,
            contract="registry",
            function="show",
            args=(arg,),
            creator=signer_cert,
            nonce=os.urandom(24),
            timestamp_ms=int(time.time() * 1000),
        )
        return encode(SignedProposal(proposal=p, signature=signer.sign(encode(p))))

    endorse_cases = {
        "garbage": (b"\x92\x01\x02", 400, "expected [tag, fields]"),
        "truncated": (proposal()[:-5], 400, "msgpack"),
        "oversize": (b"\x00" * (limits.ENVELOPE_BYTES_MAX + 1), 413, "over the limit"),
        "unknown signer": (proposal(other_key, other_cert), 400, "not an organisation CA"),
        "forged signature": (proposal(other_key), 400, "signature"),
        "other network": (proposal(network_id="elsewhere"), 400, "network_id"),
        "sentinel argument": (proposal(network_id="elsewhere", arg=SENTINEL), 400, "network"),
    }
    for name, (body, status, words) in endorse_cases.items():
        with pytest.raises(NodeRefused) as refused:
            client.endorse(body)
        assert refused.value.status == status, name
        assert words in refused.value.reason, (name, refused.value.reason)
    # A chain height this node cannot reach: refused once the wait is over, not simulated.
    height = client.chain_info()["height"]
    with pytest.raises(NodeRefused) as refused:
        client.endorse(proposal(), chain_height=height + 1_000)
    assert refused.value.status == 503
    assert refused.value.reason == (
        f"this endorser's chain has {height} blocks, the gateway's {height + 1_000};"
        " it did not catch up within 1 s"
    )
    for bad in ("-1", "x", "1" * 20, "\u00b2"):
        with pytest.raises(NodeRefused) as refused:
            asyncio.run(client.request("POST", f"/v1/endorse?chain_height={bad}", proposal()))
        assert refused.value.status == 400, bad
        assert refused.value.reason == "chain_height must be a non-negative integer"
    assert client.submit(envelope_bytes(cluster, SENTINEL))["block"] >= 1
    bad_with_sentinel = envelope_bytes(cluster, SENTINEL, network_id="elsewhere")
    with pytest.raises(NodeRefused):
        client.submit(bad_with_sentinel)
    assert client.health()["serving"]
    cluster.stop()
    for written in sorted(cluster.out.glob("nodes/*/node.*")):
        if written.suffix in (".log", ".out"):
            assert SENTINEL not in written.read_bytes(), f"payload leaked into {written}"


@pytest.mark.parametrize("api", ["http", "stream"])
def test_kill_leader_twice_and_a_follower_once_under_load(cluster: Cluster, api: str) -> None:
    """Over HTTPS, and over client streams that break with each kill and are dialled again."""
    key, cert = cluster.admin()
    urls = [api_url(cluster.entry(n)) for n in sorted(cluster.nodes)]
    total = 2_000
    result_box: list = []

    def load() -> None:
        result_box.append(
            asyncio.run(
                run_load(
                    urls,
                    cluster.ctx,
                    network_id=NETWORK_ID,
                    key=key,
                    cert_der=cert,
                    clients=8,
                    total=total,
                    payload_bytes=256,
                    presigned=total // 2,  # the rest are signed on the fly
                    api=api,
                )
            )
        )

    worker = threading.Thread(target=load)
    worker.start()
    victims = []
    try:
        for kind in ("leader", "leader", "follower"):
            time.sleep(2.0)
            leader = cluster.leader()
            victim = (
                leader
                if kind == "leader"
                else next(n for n in sorted(cluster.nodes) if n != leader)
            )
            cluster.kill(victim)
            victims.append(victim)
            time.sleep(1.0)
            cluster.restart(victim)
    finally:
        worker.join(timeout=240)
    assert not worker.is_alive(), "the load did not finish"
    result = result_box[0]
    assert not result.failures, result.failures[:5]
    assert len(result.acks) == total
    cluster.leader()
    cluster.wait_converged()
    cluster.stop()
    chains = {n: chain_tx_ids(cluster.out / "nodes" / n) for n in cluster.nodes}
    hashes = {tuple(h) for h, _ in chains.values()}
    assert len(hashes) == 1, "chains differ between nodes"
    _, located = next(iter(chains.values()))
    tx_ids = [t for _, _, t in located]
    assert len(tx_ids) == len(set(tx_ids)), "an envelope was ordered twice"
    where = {t.hex(): (b, i) for b, i, t in located}
    for ack in result.acks:
        assert where.get(ack.tx_id) == (ack.block, ack.index), f"acknowledged {ack} lost"
    print(
        f"victims {victims}; {total} envelopes at {result.throughput_per_s:.0f}/s, "
        f"p99 {result.latency_ms(0.99):.0f} ms; {datetime.now(UTC).isoformat()}"
    )


def test_a_node_kept_down_past_compaction_catches_up_through_a_snapshot(tmp_path: Path) -> None:
    net = init_local_network(tmp_path / "net")
    for entry in net.nodes:
        with entry.config.open("a") as f:
            f.write("\n[raft]\nsnapshot_interval_entries = 20\nsnapshot_catchup_entries = 5\n")
    c = Cluster(net)
    try:
        leader = c.leader()
        laggard = next(n for n in sorted(c.nodes) if n != leader)
        c.kill(laggard)
        submitter = next(n for n in sorted(c.nodes) if n not in (leader, laggard))
        for i in range(60):
            c.client(submitter).submit(envelope_bytes(c, b"%d" % i))
        status = c.client(leader).raft_status()
        assert status["snapshot_index"] > 0, status
        c.restart(laggard)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                mine = c.client(laggard).raft_status()
            except Exception:  # still starting
                mine = {}
            if mine.get("height") == status["height"]:
                break
            time.sleep(0.2)
        assert mine.get("height") == status["height"], (mine, status)
        assert mine["snapshot_index"] > 0, mine
        # The delivery stream serves members only, and checks its range.
        member = c.entry(leader)
        admin_dir = c.out / "orgs" / "northgate" / "admin"
        admin_ctx = client_context(
            admin_dir / "admin.pem", admin_dir / "admin.key", None, net.config
        )
        url = f"https://{member.host}:{member.p2p_port}{DELIVER_PATH}"
        assert _deliver_status(url + "?start=0&stop=1", admin_ctx) == 403
        laggard_dir = c.out / "nodes" / laggard
        node_ctx = client_context(
            laggard_dir / "node.pem", laggard_dir / "node.key", None, net.config
        )
        assert _deliver_status(url + "?start=5&stop=2", node_ctx) == 400
        c.wait_converged()
    finally:
        c.stop()
    chains = {n: chain_tx_ids(c.out / "nodes" / n) for n in c.nodes}
    assert len({tuple(h) for h, _ in chains.values()}) == 1
    log_text = (c.out / "nodes" / laggard / "node.log").read_text()
    assert "raft.snapshot_installed" in log_text
    served = "".join((c.out / "nodes" / n / "node.log").read_text() for n in c.nodes)
    assert "catchup.served" in served  # the blocks came over the delivery stream


def _deliver_status(url: str, ctx: ssl.SSLContext) -> int:
    """The HTTP status a WebSocket upgrade to the delivery stream is refused with."""

    async def attempt() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url, ssl=ctx):
                    return 101
            except aiohttp.WSServerHandshakeError as e:
                return e.status

    return asyncio.run(attempt())


def test_a_gateway_collects_a_quorum_that_validators_accept(cluster: Cluster) -> None:
    """Real processes over TLS: the northgate gateway fans a proposal out to the four
    hospital endorsers and returns a transaction whose q = 3 endorsements pass the
    validators' check; a proposal every endorser refuses comes back with the contract's
    message; the orderer is no gateway."""
    from datetime import UTC, datetime

    from consensus.endorse import endorsement_problem
    from node.tls import trust_store
    from protocol.config import NetworkConfig
    from protocol.transaction import Transaction

    key, cert = cluster.admin()

    def signed(function: str, *args: bytes) -> bytes:
        p = Proposal(
            network_id=NETWORK_ID,
            contract="registry",
            function=function,
            args=args,
            creator=cert,
            nonce=os.urandom(24),
            timestamp_ms=int(time.time() * 1000),
        )
        return encode(SignedProposal(proposal=p, signature=key.sign(encode(p))))

    gateway = cluster.client("northgate")
    tx = decode(gateway.gateway_endorse(signed("revoked")), Transaction)
    assert (tx.response.status, tx.response.result) == (200, b"[]")
    assert len(tx.endorsements) == 3
    config = decode(gateway.config_bytes(), NetworkConfig)
    problem = endorsement_problem(tx, config, trust_store(config), at=datetime.now(UTC))
    assert problem is None

    with pytest.raises(NodeRefused) as refused:
        gateway.gateway_endorse(signed("show", b"dr.x1"))
    refusal = (refused.value.status, refused.value.reason)
    assert refusal == (409, "the contract refused it: no identity dr.x1")
    with pytest.raises(NodeRefused) as refused:
        cluster.client("ministry").gateway_endorse(signed("revoked"))
    assert refused.value.status == 404
