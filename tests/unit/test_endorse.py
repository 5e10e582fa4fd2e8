"""PBFT-lite endorsement quorums (consensus.endorse): sizes, the gateway's gathering of
replies, and the validator's check of the endorsements a transaction carries.

The validator tests use the in-memory network of tests/unit/endorsed_world.py.
"""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from consensus.endorse import (
    Reply,
    endorsement_problem,
    endorsers_by_cert_hash,
    endorsing_members,
    fault_tolerance,
    gather,
    quorum_size,
)
from protocol.codec import encode, replace
from protocol.errors import LocalError
from protocol.hashing import sha256
from protocol.transaction import Endorsement, Transaction
from tests.unit.endorsed_world import HOSPITALS, NOW, World, make_world


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
    assert outcome.agreeing == ("northgate", "stmarys")  # the largest group, short of q
    assert outcome.diverging == ("riverside", "westfield")


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
    assert outcome.agreeing == ("northgate", "stmarys")  # agreeing, but short of q = 3
    assert outcome.diverging == ()


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


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


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
        cert_hash=sha256(world.cert("stmarys")),
        signature=world.keys["westfield"].sign(encode(tx.response)),  # the wrong key
    )
    tx = replace(tx, endorsements=(*tx.endorsements[:2], forged))
    problem = check(world, tx)
    assert problem is not None and "endorsement by stmarys: signature does not verify" in problem


def test_endorsements_over_another_response_do_not_count(world: World) -> None:
    tx = world.transaction(("northgate", "riverside", "stmarys"))
    changed = replace(tx.response, result=b"something else")
    assert check(world, replace(tx, response=changed)) is not None


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
    other = replace(tx.proposal, function="delete")
    assert check(world, replace(tx, proposal=other)) == ("the response answers another proposal")


def test_a_network_of_one_endorser_needs_one(world: World) -> None:
    solo = replace(
        world.config,
        members=tuple(m for m in world.config.members if m.node_id in ("ministry", "northgate")),
    )
    tx = world.transaction(("northgate",))
    assert endorsement_problem(tx, solo, world.trust, at=NOW + timedelta(hours=1)) is None


def test_an_endorsement_naming_no_members_certificate_does_not_count(world: World) -> None:
    tx = world.transaction(("northgate", "riverside", "stmarys"))
    stranger = replace(tx.endorsements[2], cert_hash=sha256(b"no member's cert"))
    problem = check(world, replace(tx, endorsements=(*tx.endorsements[:2], stranger)))
    assert problem == (
        "2 valid endorsements of the 3 needed (an endorsement is not from an endorsing member)"
    )


def test_endorsers_are_named_by_the_hash_of_their_node_certificate(world: World) -> None:
    members = endorsers_by_cert_hash(world.config)
    assert {m.node_id: h for h, m in members.items()} == {
        node: sha256(world.cert(node)) for node in HOSPITALS
    }  # the ministry's orderer is a member but not an endorser
    assert endorsers_by_cert_hash(world.config) is members  # remembered for its config
    tx = world.transaction(("northgate", "riverside", "stmarys"))
    assert [e.cert_hash for e in tx.endorsements] == [
        sha256(world.cert(n)) for n in ("northgate", "riverside", "stmarys")
    ]
