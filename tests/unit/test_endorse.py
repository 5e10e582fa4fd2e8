"""PBFT-lite endorsement quorums (consensus.endorse): sizes, the gateway's gathering of
replies, and the validator's check of the endorsements a transaction carries.

The validator tests build a network in memory: a root CA, a ministry orderer (not an
endorser) and four hospitals, each with an endorsing node whose certificate signs.
"""

from __future__ import annotations

import dataclasses
import os
import random
from datetime import UTC, datetime, timedelta

import pytest

from consensus.endorse import (
    Reply,
    endorsement_problem,
    endorsing_members,
    fault_tolerance,
    gather,
    quorum_size,
)
from identity.certs import (
    CertificateAuthority,
    cert_to_der,
    create_org_ca,
    create_root_ca,
    issue_node_cert,
    issue_user_cert,
)
from identity.keys import SigningKey
from identity.validate import TrustStore
from protocol.codec import encode
from protocol.config import BatchConfig, MemberConfig, NetworkConfig, OrgConfig
from protocol.errors import LocalError
from protocol.transaction import (
    Endorsement,
    KVWrite,
    Proposal,
    ProposalResponse,
    RwSet,
    Transaction,
    proposal_hash,
)

NOW = datetime(2026, 11, 1, tzinfo=UTC)
HOSPITALS = ("northgate", "riverside", "stmarys", "westfield")


@pytest.mark.parametrize(
    ("n", "f", "q"),
    [(1, 0, 1), (2, 0, 1), (3, 0, 1), (4, 1, 3), (5, 1, 3), (6, 1, 3), (7, 2, 5), (10, 3, 7)],
)
def test_quorum_sizes(n: int, f: int, q: int) -> None:
    assert (fault_tolerance(n), quorum_size(n)) == (f, q)
    assert q > f  # the liars alone never make a quorum


def test_no_endorsers_is_a_configuration_bug() -> None:
    with pytest.raises(LocalError):
        quorum_size(0)


# --- the gateway: gathering replies ------------------------------------------------------------

GOOD, BAD = b"response A", b"response B"


def replies(*spec: tuple[str, bytes | None, bool]) -> list[Reply]:
    return [Reply(endorser, response, ok) for endorser, response, ok in spec]


def test_three_honest_of_four_reach_the_quorum_and_the_liar_is_named() -> None:
    outcome = gather(
        replies(
            ("northgate", GOOD, True),
            ("riverside", BAD, True),
            ("stmarys", GOOD, True),
            ("westfield", GOOD, True),
        ),
        HOSPITALS,
    )
    assert outcome.reached and outcome.response == GOOD
    assert outcome.agreeing == ("northgate", "stmarys", "westfield")
    assert outcome.diverging == ("riverside",)
    assert (outcome.missing, outcome.needed) == ((), 3)


def test_a_forged_signature_counts_as_diverging_not_agreeing() -> None:
    outcome = gather(
        replies(
            ("northgate", GOOD, True),
            ("riverside", GOOD, False),
            ("stmarys", GOOD, True),
            ("westfield", GOOD, True),
        ),
        HOSPITALS,
    )
    assert outcome.agreeing == ("northgate", "stmarys", "westfield")
    assert outcome.diverging == ("riverside",)


def test_two_liars_of_four_leave_no_quorum() -> None:
    outcome = gather(
        replies(
            ("northgate", GOOD, True),
            ("riverside", BAD, True),
            ("stmarys", GOOD, True),
            ("westfield", b"response C", True),
        ),
        HOSPITALS,
    )
    assert not outcome.reached and outcome.response is None
    assert outcome.agreeing == ()
    assert outcome.diverging == HOSPITALS


def test_silent_endorsers_are_missing_and_strangers_and_repeats_do_not_count() -> None:
    outcome = gather(
        replies(
            ("northgate", GOOD, True),
            ("northgate", GOOD, True),  # the same endorser twice counts once
            ("intruder", GOOD, True),  # not an endorser
            ("stmarys", GOOD, True),
            ("westfield", None, False),  # refused
        ),
        HOSPITALS,
    )
    assert not outcome.reached
    assert outcome.missing == ("riverside", "westfield")
    assert outcome.diverging == ("northgate", "stmarys")  # answered, but no quorum formed


def test_two_quorums_among_six_endorsers_resolve_the_same_way_every_time() -> None:
    six = [f"h{i}" for i in range(6)]
    spec = [(e, GOOD if i < 3 else BAD, True) for i, e in enumerate(six)]
    outcome = gather(replies(*spec), six)
    assert outcome.response == min(GOOD, BAD)
    assert gather(replies(*reversed(spec)), six) == outcome
    spec[5] = ("h5", GOOD, True)  # four for GOOD: the larger group wins
    assert gather(replies(*spec), six).response == GOOD


def test_the_verdict_does_not_depend_on_reply_order() -> None:
    spec = [
        ("northgate", GOOD, True),
        ("riverside", BAD, True),
        ("stmarys", GOOD, True),
        ("westfield", GOOD, True),
    ]
    expected = gather(replies(*spec), HOSPITALS)
    rng = random.Random(7)
    for _ in range(20):
        rng.shuffle(spec)
        assert gather(replies(*spec), HOSPITALS) == expected


# --- the validator: endorsements carried by a transaction --------------------------------------


@dataclasses.dataclass
class World:
    config: NetworkConfig
    trust: TrustStore
    keys: dict[str, SigningKey]  # node id -> node key
    serials: dict[str, int]  # node id -> certificate serial
    creator: bytes

    def transaction(self, signers: tuple[str, ...], *, response: bytes = b"ok") -> Transaction:
        proposal = Proposal(
            network_id=self.config.network_id,
            contract="registry",
            function="put",
            args=(b"k",),
            creator=self.creator,
            nonce=os.urandom(24),
            timestamp_ms=int(NOW.timestamp() * 1000),
        )
        answer = ProposalResponse(
            proposal_hash=proposal_hash(proposal),
            status=200,
            message="",
            result=response,
            rw_set=RwSet(
                reads=(),
                writes=(KVWrite(namespace="registry", key=b"k", value=b"v", is_delete=False),),
            ),
            events=(),
        )
        return Transaction(
            proposal=proposal,
            response=answer,
            endorsements=tuple(self.endorse(node, answer) for node in signers),
        )

    def endorse(self, node: str, answer: ProposalResponse) -> Endorsement:
        return Endorsement(endorser=self.cert(node), signature=self.keys[node].sign(encode(answer)))

    def cert(self, node: str) -> bytes:
        member = self.config.member(node)
        assert member is not None
        return member.node_cert


@pytest.fixture(scope="module")
def world() -> World:
    root_key = SigningKey.generate()
    root = CertificateAuthority(create_root_ca("root", root_key, now=NOW), root_key)
    cas, orgs, members, keys, serials = [], [], [], {}, {}
    creator = b""
    for port, org in enumerate(("ministry", *HOSPITALS)):
        ca_key = SigningKey.generate()
        ca = CertificateAuthority(create_org_ca(root, org, org, ca_key.public_key, now=NOW), ca_key)
        cas.append(ca.cert)
        kind = "ministry" if org == "ministry" else "hospital"
        orgs.append(OrgConfig(org_id=org, name=org, kind=kind, ca_cert=cert_to_der(ca.cert)))
        key = SigningKey.generate()
        cert = issue_node_cert(ca, org, org, key.public_key, ["127.0.0.1"], now=NOW)
        keys[org], serials[org] = key, cert.serial_number
        members.append(
            MemberConfig(
                node_id=org,
                org_id=org,
                host="127.0.0.1",
                p2p_port=20000 + 2 * port,
                api_port=20001 + 2 * port,
                node_cert=cert_to_der(cert),
                endorser=org != "ministry",
            )
        )
        if org == "northgate":
            doctor_key = SigningKey.generate()
            doctor = issue_user_cert(
                ca, org, "doctor@northgate", "doctor", doctor_key.public_key, now=NOW
            )
            creator = cert_to_der(doctor)
    config = NetworkConfig(
        network_id="net",
        sequence=0,
        root_ca=cert_to_der(root.cert),
        orgs=tuple(orgs),
        members=tuple(members),
        endorsement_rule="2f+1",
        batch=BatchConfig(max_txs=10, max_bytes=1 << 21, timeout_ms=50),
        contracts=(),
    )
    return World(config, TrustStore(root.cert, cas), keys, serials, creator)


def check(world: World, tx: Transaction, **kw: object) -> str | None:
    return endorsement_problem(tx, world.config, world.trust, at=NOW + timedelta(hours=1), **kw)  # type: ignore[arg-type]


def test_the_hospitals_endorse_and_the_orderer_does_not(world: World) -> None:
    assert [m.node_id for m in endorsing_members(world.config)] == list(HOSPITALS)


def test_three_of_four_hospitals_make_a_valid_quorum(world: World) -> None:
    assert check(world, world.transaction(("northgate", "riverside", "stmarys"))) is None
    assert check(world, world.transaction(HOSPITALS)) is None


def test_two_endorsements_are_too_few(world: World) -> None:
    problem = check(world, world.transaction(("northgate", "riverside")))
    assert problem == "2 valid endorsements of the 3 needed"


def test_the_same_endorser_twice_counts_once(world: World) -> None:
    problem = check(world, world.transaction(("northgate", "northgate", "riverside")))
    assert problem is not None and "northgate endorsed twice" in problem


def test_a_forged_endorsement_does_not_count(world: World) -> None:
    tx = world.transaction(("northgate", "riverside", "stmarys"))
    forged = Endorsement(
        endorser=world.cert("stmarys"),
        signature=world.keys["westfield"].sign(encode(tx.response)),  # the wrong key
    )
    tx = dataclasses.replace(tx, endorsements=(*tx.endorsements[:2], forged))
    problem = check(world, tx)
    assert problem is not None and "endorsement by stmarys: signature does not verify" in problem


def test_endorsements_over_another_response_do_not_count(world: World) -> None:
    tx = world.transaction(("northgate", "riverside", "stmarys"))
    changed = dataclasses.replace(tx.response, result=b"something else")
    assert check(world, dataclasses.replace(tx, response=changed)) is not None


def test_the_orderer_is_not_an_endorser(world: World) -> None:
    tx = world.transaction(("northgate", "riverside", "ministry"))
    problem = check(world, tx)
    assert problem is not None and "not from an endorsing member" in problem


def test_a_revoked_endorser_does_not_count(world: World) -> None:
    tx = world.transaction(("northgate", "riverside", "stmarys"))
    assert check(world, tx) is None
    problem = check(world, tx, revoked=frozenset({world.serials["stmarys"]}))
    assert problem is not None and "revoked" in problem


def test_an_expired_endorser_certificate_does_not_count(world: World) -> None:
    tx = world.transaction(("northgate", "riverside", "stmarys"))
    problem = endorsement_problem(tx, world.config, world.trust, at=NOW + timedelta(days=3650))
    assert problem is not None and "expired" in problem


def test_a_response_to_another_proposal_is_refused(world: World) -> None:
    tx = world.transaction(HOSPITALS)
    other = dataclasses.replace(tx.proposal, function="delete")
    assert check(world, dataclasses.replace(tx, proposal=other)) == (
        "the response answers another proposal"
    )


def test_a_network_of_one_endorser_needs_one(world: World) -> None:
    solo = dataclasses.replace(
        world.config,
        members=tuple(m for m in world.config.members if m.node_id in ("ministry", "northgate")),
    )
    tx = world.transaction(("northgate",))
    assert endorsement_problem(tx, solo, world.trust, at=NOW + timedelta(hours=1)) is None
