"""Execute, order, validate with real processes: five nodes over mutual TLS on 127.0.0.1.

A registry write endorsed by a quorum through a gateway commits VALID and its write reaches
the world state of every peer; a transaction whose read went stale (MVCC), one carrying a
forged endorsement and an opaque envelope without endorsements are ordered but marked
invalid, with the same code in every node's chain, and write nothing; resubmitting an
envelope returns where and how it committed the first time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time

import pytest

from node.client import NodeRefused, NodeUnavailable
from node.client_stream import StreamClient, StreamRefused
from node.envelopes import opaque_envelope
from node.failpoints import ENDORSER_FAULT_ENV
from node.supervisor import api_url
from protocol import limits
from protocol.block import Block, ValidationCode
from protocol.client_stream import CommitReceipt
from protocol.codec import decode, encode, replace
from protocol.transaction import Envelope, Proposal, SignedProposal, Transaction
from tests.integration.cluster import NETWORK_ID, Cluster, medledger, wait_for

SECRET_HASH = hashlib.sha256(b"one-time secret").hexdigest().encode()


def _signed(cluster: Cluster, function: str, *args: bytes) -> bytes:
    key, cert = cluster.admin()
    proposal = Proposal(
        network_id=NETWORK_ID,
        contract="registry",
        function=function,
        args=args,
        creator=cert,
        nonce=os.urandom(limits.NONCE_BYTES),
        timestamp_ms=int(time.time() * 1000),
    )
    return encode(SignedProposal(proposal=proposal, signature=key.sign(encode(proposal))))


def _envelope(cluster: Cluster, transaction: Transaction) -> bytes:
    key, _ = cluster.admin()
    return encode(Envelope(transaction=transaction, signature=key.sign(encode(transaction))))


def _endorsed(cluster: Cluster, function: str, *args: bytes) -> Transaction:
    raw = cluster.client("northgate").gateway_endorse(_signed(cluster, function, *args))
    return decode(raw, Transaction)


def test_a_registry_write_commits_on_every_peer_and_bad_ones_are_invalid_everywhere(
    cluster: Cluster,
) -> None:
    nodes = sorted(cluster.nodes)
    register = _endorsed(cluster, "register", b"dr.ada", b"doctor", SECRET_HASH)
    # Endorsed against the same state before the first commits: its read of id/dr.ada
    # (absent) will be stale by the time it is validated.
    stale = _endorsed(cluster, "register", b"dr.ada", b"nurse", SECRET_HASH)
    # northgate's gateway asked the three other endorsers over the peer streams (HTTPS
    # only for one whose stream was not up yet).
    metrics = cluster.client("northgate").request_text("/metrics")
    over = {
        way: int(found.group(1))
        if (found := re.search(rf"^medledger_gateway_endorse_over_{way} (\d+)$", metrics, re.M))
        else 0
        for way in ("stream", "https")
    }
    assert over["stream"] >= 1 and over["stream"] + over["https"] == 6, over

    done = cluster.client("riverside").submit(_envelope(cluster, register))
    assert (done["code"], done["status"], done["reason"]) == (
        ValidationCode.VALID,
        "VALID",
        "valid: its writes are in the world state",
    )
    for node in nodes:  # the orderer keeps the world state too
        entry = cluster.client(node).state_info("registry", b"id/dr.ada")
        assert entry is not None and '"role":"doctor"' in entry["value"], node
        assert entry["version"] == {"block": done["block"], "tx": done["index"]}

    conflict = cluster.client("stmarys").submit(_envelope(cluster, stale))
    assert conflict["status"] == "MVCC_READ_CONFLICT"
    assert conflict["reason"] == "a key it read has changed since"

    forged_endorsement = replace(
        register.endorsements[0], signature=register.endorsements[1].signature
    )
    fresh = _endorsed(cluster, "register", b"dr.bob", b"doctor", SECRET_HASH)
    forged = replace(fresh, endorsements=(forged_endorsement, *fresh.endorsements[1:]))
    refused = cluster.client("westfield").submit(_envelope(cluster, forged))
    assert refused["status"] == "ENDORSEMENT_POLICY_FAILURE"
    assert refused["reason"].startswith("2 valid endorsements of the 3 needed")

    key, cert = cluster.admin()
    opaque = opaque_envelope(
        b"x", network_id=NETWORK_ID, key=key, cert_der=cert, timestamp_ms=int(time.time() * 1000)
    )
    unendorsed = cluster.client("ministry").submit(encode(opaque))
    assert unendorsed["status"] == "ENDORSEMENT_POLICY_FAILURE"

    again = cluster.client("northgate").submit(_envelope(cluster, register))
    assert again["duplicate"] and again["block"] == done["block"]
    assert again["status"] == "VALID"

    # Every peer holds the same blocks, codes included, and nothing invalid was written.
    outcomes = [done, conflict, refused, unendorsed]
    for node in nodes:
        client = cluster.client(node)
        deadline = time.monotonic() + 10
        while client.chain_info()["height"] <= max(o["block"] for o in outcomes):
            assert time.monotonic() < deadline, f"{node} did not catch up"
            time.sleep(0.05)
        for outcome in outcomes:
            info = client.tx_info(outcome["tx_id"])
            assert info is not None and info["status"] == outcome["status"], node
        assert client.state_info("registry", b"id/dr.bob") is None
        entry = client.state_info("registry", b"id/dr.ada")
        assert entry is not None and '"role":"doctor"' in entry["value"]
    for outcome in outcomes:
        blocks = {cluster.client(n).block_bytes(outcome["block"]) for n in nodes}
        assert len(blocks) == 1
        block = decode(blocks.pop() or b"", Block)
        assert block.metadata.validation_codes[outcome["index"]] == outcome["code"]


def test_the_client_stream_endorses_and_submits_many_requests_at_once(cluster: Cluster) -> None:
    """Twelve registrations endorsed, then submitted, all in flight at once on one client
    stream to a hospital peer: each commits VALID where every node's chain says; the same
    envelope again is a duplicate; garbage is a 400 and a node that is no gateway a 404, and
    the stream (and the node) go on serving."""
    subjects = [b"stream.%d" % i for i in range(12)]
    signed = [_signed(cluster, "register", s, b"nurse", SECRET_HASH) for s in subjects]

    async def run() -> tuple[list[CommitReceipt], CommitReceipt, StreamRefused, StreamRefused]:
        client = StreamClient(api_url(cluster.entry("stmarys")), cluster.ctx)
        ministry = StreamClient(api_url(cluster.entry("ministry")), cluster.ctx)
        try:
            prepared = await asyncio.gather(*(client.endorse(s) for s in signed))
            envelopes = [_envelope(cluster, decode(p, Transaction)) for p in prepared]
            receipts = await asyncio.gather(*(client.submit(e) for e in envelopes))
            with pytest.raises(StreamRefused) as garbage:
                await client.submit(b"\x92garbage")
            again = await client.submit(envelopes[0])
            with pytest.raises(StreamRefused) as not_a_gateway:
                await ministry.endorse(signed[0])
            return list(receipts), again, garbage.value, not_a_gateway.value
        finally:
            await client.close()
            await ministry.close()

    receipts, again, garbage, not_a_gateway = asyncio.run(run())
    assert [r.code for r in receipts] == [ValidationCode.VALID] * len(subjects)
    assert len({r.tx_id for r in receipts}) == len(subjects)
    assert again.duplicate and (again.block, again.index) == (receipts[0].block, receipts[0].index)
    assert garbage.status == 400 and "garbage" not in garbage.reason
    assert not_a_gateway.status == 404
    for node in sorted(cluster.nodes):
        client = cluster.client(node)
        deadline = time.monotonic() + 10
        while client.chain_info()["height"] <= max(r.block for r in receipts):
            assert time.monotonic() < deadline, f"{node} did not catch up"
            time.sleep(0.05)
        for receipt in receipts:
            info = client.tx_info(receipt.tx_id.hex())
            assert info is not None and (info["block"], info["index"], info["status"]) == (
                receipt.block,
                receipt.index,
                "VALID",
            ), node
    assert cluster.client("stmarys").health()["serving"]


def test_a_proposal_every_endorser_refuses_is_never_ordered(cluster: Cluster) -> None:
    height = cluster.client("northgate").chain_info()["height"]
    with pytest.raises(NodeRefused) as refused:
        _endorsed(cluster, "register", b"Not A Pseudonym", b"doctor", SECRET_HASH)
    assert refused.value.status == 409
    assert "subject id must be" in refused.value.reason
    assert cluster.client("northgate").chain_info()["height"] == height
    metrics = cluster.client("northgate").request_text("/metrics")
    assert "medledger_validation_invalid" not in metrics


def test_events_replay_the_chain_and_follow_new_commits(cluster: Cluster) -> None:
    """`medledger events --follow` prints a block once it commits, with its transactions'
    status and contract events; without --follow it replays from --from and exits."""
    net = ["--network", str(cluster.out), "--node", "stmarys"]
    # From the current height: a follower that connects only after the commit (a slow
    # machine) still gets the block, by replay instead of live.
    start = str(cluster.client("stmarys").chain_info()["height"])
    follower = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "events", *net, "--follow", "--from", start, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)  # usually connected by now: the block then arrives live
        register = _endorsed(cluster, "register", b"dr.eve", b"doctor", SECRET_HASH)
        done = cluster.client("northgate").submit(_envelope(cluster, register))
        assert done["status"] == "VALID"
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(
            target=lambda: [lines.put(line) for line in follower.stdout or ()], daemon=True
        ).start()
        seen: dict[str, object] = {}
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not seen:
            try:
                block = json.loads(lines.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
            for tx in block["transactions"]:
                if tx["tx_id"] == done["tx_id"]:
                    seen = tx
        assert seen, "the follower never printed the committed transaction"
        assert seen["status"] == "VALID" and seen["block"] == done["block"]
        assert seen["events"] == [{"name": "identity.registered", "payload_hex": b"dr.eve".hex()}]
    finally:
        follower.terminate()  # our own child, by its handle
        follower.wait(timeout=10)

    replay = medledger("events", *net, "--from", "0", "--json")
    assert replay.returncode == 0, replay.stderr
    blocks = [json.loads(line) for line in replay.stdout.splitlines()]
    assert [b["block"] for b in blocks] == list(range(done["block"] + 1))
    text = medledger("events", *net, "--from", str(done["block"]))
    assert "VALID" in text.stdout and "registry.register" in text.stdout
    assert "events: identity.registered" in text.stdout


def _endorse_while_frozen(cluster: Cluster, lagging: str, subject: bytes) -> None:
    """Register *subject*, commit it while *lagging* is frozen, ask for a proposal that reads
    it before *lagging* resumes, and return once *lagging* has answered that request."""
    register = _endorsed(cluster, "register", subject, b"doctor", SECRET_HASH)
    requests_before = cluster.metric(lagging, "endorse_link_requests")
    cluster.pause(lagging)  # frozen: the block below reaches it only once it resumes
    try:
        done = cluster.client("northgate").submit(_envelope(cluster, register))
        assert done["status"] == "VALID"
        # The next proposal reads the record; its request to the lagging endorser waits in
        # that endorser's socket, with the block it has not applied yet.
        answers: queue.Queue[bytes | BaseException] = queue.Queue()

        def endorse_show() -> None:
            try:
                answers.put(
                    cluster.client("northgate").gateway_endorse(_signed(cluster, "show", subject))
                )
            except BaseException as e:  # handed to the test thread
                answers.put(e)

        threading.Thread(target=endorse_show, daemon=True).start()
        time.sleep(0.5)
    finally:
        cluster.resume(lagging)
    answer = answers.get(timeout=15)
    assert not isinstance(answer, BaseException), answer
    prepared = decode(answer, Transaction)
    assert prepared.response.status == 200 and subject in prepared.response.result
    # The gateway answered once three agreed; it still hears the lagging endorser out.
    wait_for(
        lambda: cluster.metric(lagging, "endorse_link_requests") > requests_before or None,
        10,
        lambda: f"{lagging} never received the request",
    )
    time.sleep(0.5)  # its answer reaches the gateway


def test_an_endorser_behind_the_gateway_catches_up_before_it_simulates(
    cluster: Cluster,
) -> None:
    """A client's proposal that reads what its previous transaction wrote is endorsed by
    every endorser alike, including one that had not applied that transaction yet: it
    waits until its chain is as long as the gateway's (node.chain_watch), then agrees.

    On resuming, the frozen endorser may happen to apply the block (queued with the
    request) before it reads the request, and then has nothing to wait for: the scenario
    runs again, up to three times, until the endorser did wait."""
    lagging = next(n for n in ("westfield", "stmarys", "riverside") if n != cluster.leader())
    for attempt in range(3):
        _endorse_while_frozen(cluster, lagging, f"dr.lag{attempt}".encode())
        assert cluster.metric("northgate", "gateway_diverging_endorsers") == 0
        assert cluster.metric(lagging, "endorser_behind_chain") == 0
        if cluster.metric(lagging, "endorser_waited_for_chain") >= 1:
            break
    assert cluster.metric(lagging, "endorser_waited_for_chain") >= 1


def _restart_lying(cluster: Cluster, node: str, fault: str) -> None:
    cluster.kill(node)
    cluster.restart(node, {ENDORSER_FAULT_ENV: fault})
    deadline = time.monotonic() + 20
    while True:
        try:
            if cluster.client(node).health().get("leader"):
                return
        except (NodeRefused, NodeUnavailable):
            pass
        assert time.monotonic() < deadline, f"{node} did not come back"
        time.sleep(0.1)


def test_one_lying_endorser_is_outvoted_and_reported_two_refuse_the_transaction(
    cluster: Cluster,
) -> None:
    """Real endorsers that lie: riverside signs an altered result, then stmarys also sends
    a forged signature. With one liar the three honest endorsements commit and the gateway
    reports the liar; with two there is no quorum, a clear error, and nothing is written."""
    _restart_lying(cluster, "riverside", "result")
    tx = _endorsed(cluster, "register", b"dr.liar1", b"doctor", SECRET_HASH)
    done = cluster.client("northgate").submit(_envelope(cluster, tx))
    assert done["status"] == "VALID"
    info = cluster.client("northgate").tx_info(done["tx_id"])
    assert info is not None
    assert sorted(info["endorsers"]) == ["northgate", "stmarys", "westfield"]
    # The liar may answer after the honest quorum: then it is reported in the background.
    wait_for(
        lambda: cluster.metric("northgate", "gateway_diverging_endorsers") == 1 or None,
        10,
        lambda: "northgate did not report riverside as diverging",
    )
    log_text = (cluster.out / "nodes" / "northgate" / "node.log").read_text()
    assert "gateway.diverging" in log_text and "riverside" in log_text

    _restart_lying(cluster, "stmarys", "signature")
    height = cluster.client("northgate").chain_info()["height"]
    with pytest.raises(NodeRefused) as refused:
        _endorsed(cluster, "register", b"dr.liar2", b"doctor", SECRET_HASH)
    assert refused.value.status == 409
    assert refused.value.reason == (
        "at most 2 of the 3 endorsements needed agree; diverging: riverside, stmarys;"
        " no answer: none"
    )
    assert cluster.client("northgate").chain_info()["height"] == height
    assert cluster.client("westfield").state_info("registry", b"id/dr.liar2") is None


def test_a_restarted_peer_validates_only_the_blocks_it_missed(cluster: Cluster) -> None:
    """kill -9 a peer, commit blocks without it, restart it: it catches up from the
    ordering service, validates exactly the blocks it had not committed, and ends with the
    same world state entries as the others."""
    first = cluster.client("westfield").submit(
        _envelope(cluster, _endorsed(cluster, "register", b"dr.one", b"doctor", SECRET_HASH))
    )
    assert first["status"] == "VALID"
    client = cluster.client("westfield")
    deadline = time.monotonic() + 10
    while client.chain_info()["height"] <= first["block"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    before = client.chain_info()["height"]
    cluster.kill("westfield")
    missed = [
        cluster.client("northgate").submit(
            _envelope(cluster, _endorsed(cluster, "register", name, b"nurse", SECRET_HASH))
        )
        for name in (b"nurse.a", b"nurse.b", b"nurse.c")
    ]
    assert all(m["status"] == "VALID" for m in missed)
    height = cluster.client("northgate").chain_info()["height"]
    cluster.restart("westfield")
    deadline = time.monotonic() + 20
    while True:
        try:
            if client.chain_info()["height"] >= height:
                break
        except (NodeRefused, NodeUnavailable):
            pass
        assert time.monotonic() < deadline, "westfield did not catch up"
        time.sleep(0.1)
    metrics = client.request_text("/metrics")
    validated = next(
        int(line.split()[1])
        for line in metrics.splitlines()
        if line.startswith("medledger_validation_blocks ")
    )
    assert validated == height - before
    for name in (b"id/dr.one", b"id/nurse.a", b"id/nurse.c"):
        assert client.state_info("registry", name) == cluster.client("stmarys").state_info(
            "registry", name
        )
