"""The endorser (node.endorser): proposals are checked, simulated against committed state and
signed; four endorsers over the same state give byte-identical responses that make a
quorum a validator accepts, and a lying endorser is outvoted."""

from __future__ import annotations

import os
import threading
from datetime import timedelta

import pytest

from chaincode.registry import ContractRegistry
from chaincode.runtime import STEP_BUDGET_DEFAULT
from consensus.endorse import Reply, endorsement_problem, gather
from identity.keys import SigningKey
from node.endorser import (
    INLINE_STEP_BUDGET,
    ProposalRefused,
    ProposalTooCostly,
    endorse,
    run_endorsement,
)
from node.metrics import Metrics
from protocol.codec import encode, replace
from protocol.config import ContractPin
from protocol.errors import CertificateError, FieldError, SignatureError
from protocol.hashing import sha256
from protocol.transaction import Proposal, SignedProposal, Transaction
from storage.memory import MemoryKV
from storage.state import WorldState
from tests.unit.contracts_fixture import ledger_counter
from tests.unit.endorsed_world import HOSPITALS, NOW, NOW_MS, World, make_world

AT = NOW + timedelta(hours=1)


@pytest.fixture(scope="module")
def world() -> World:
    w = make_world()
    registry = ContractRegistry()
    registered = registry.register(ledger_counter.Counter)
    pin = ContractPin(name="counter", version="1.0", code_hash=registered.code_hash)
    w.config = replace(w.config, contracts=(pin,))
    w.registry = registry  # type: ignore[attr-defined]
    return w


def proposal(world: World, function: str = "add", *args: bytes, **changes: object) -> Proposal:
    p = Proposal(
        network_id=world.config.network_id,
        contract="counter",
        function=function,
        args=args or (b"a", b"2"),
        creator=world.creator,
        nonce=os.urandom(24),
        timestamp_ms=NOW_MS,
    )
    return replace(p, **changes) if changes else p


def signed(world: World, p: Proposal, key: SigningKey | None = None) -> SignedProposal:
    return SignedProposal(proposal=p, signature=(key or world.creator_key).sign(encode(p)))


def run(world: World, sp: SignedProposal, node: str = "northgate", **kw):
    return endorse(
        sp,
        network=world.config,
        trust=world.trust,
        registry=world.registry,  # type: ignore[attr-defined]
        state=WorldState(MemoryKV()),
        key=world.keys[node],
        cert_hash=sha256(world.cert(node)),
        at=AT,
        **kw,
    )


def test_four_endorsers_agree_and_their_quorum_validates(world: World) -> None:
    sp = signed(world, proposal(world))
    outcomes = {node: run(world, sp, node) for node in HOSPITALS}
    responses = {encode(o.response) for o in outcomes.values()}
    assert len(responses) == 1  # byte-identical
    verdict = gather(
        [Reply(n, encode(o.response), o.endorsement is not None) for n, o in outcomes.items()],
        HOSPITALS,
    )
    assert verdict.reached and verdict.diverging == ()
    tx = Transaction(
        proposal=sp.proposal,
        response=outcomes["northgate"].response,
        endorsements=tuple(outcomes[n].endorsement for n in verdict.agreeing[:3]),  # type: ignore[misc]
    )
    assert endorsement_problem(tx, world.config, world.trust, at=AT) is None


def test_a_lying_endorser_is_outvoted_and_named(world: World) -> None:
    sp = signed(world, proposal(world))
    outcomes = {node: run(world, sp, node) for node in HOSPITALS}
    lie = replace(outcomes["riverside"].response, result=b"999")
    replies = [
        Reply(n, encode(lie if n == "riverside" else o.response), True) for n, o in outcomes.items()
    ]
    verdict = gather(replies, HOSPITALS)
    assert verdict.reached and verdict.diverging == ("riverside",)
    assert verdict.response == encode(outcomes["northgate"].response)


def test_a_contract_refusal_comes_back_unsigned(world: World) -> None:
    outcome = run(world, signed(world, proposal(world, "add", b"a", b"lots")))
    assert (outcome.response.status, outcome.response.message) == (
        400,
        "amount must be a whole number",
    )
    assert outcome.endorsement is None


def test_an_unknown_function_comes_back_unsigned(world: World) -> None:
    outcome = run(world, signed(world, proposal(world, "nope", b"x")))
    assert outcome.response.status == 404 and outcome.endorsement is None


@pytest.mark.parametrize(
    ("case", "error", "words"),
    [
        ("other network", FieldError, "names another network"),
        ("forged signature", SignatureError, "does not verify"),
        ("undeployed contract", ProposalRefused, "not deployed"),
        ("runaway contract", ProposalRefused, "ran past its budget"),
        ("crashing contract", ProposalRefused, r"^contract 'counter' raised ValueError$"),
        ("oversized result", ProposalRefused, "result over 65536 bytes"),
        ("revoked creator", CertificateError, "revoked"),
    ],
)
def test_bad_proposals_are_refused_and_nothing_is_signed(
    world: World, case: str, error: type[Exception], words: str
) -> None:
    kw: dict[str, object] = {}
    sp = signed(world, proposal(world))
    if case == "other network":
        sp = signed(world, proposal(world, network_id="elsewhere"))
    elif case == "forged signature":
        sp = signed(world, proposal(world), key=SigningKey.generate())
    elif case == "undeployed contract":
        sp = signed(world, proposal(world, contract="records"))
    elif case == "runaway contract":
        sp = signed(world, proposal(world, "spin", args=()))
        kw["step_budget"] = 2_000
    elif case == "crashing contract":  # its message (a name here) must not come back
        sp = signed(world, proposal(world, "crash", args=(b"Jane Doe 1970-01-01",)))
    elif case == "oversized result":
        sp = signed(world, proposal(world, "huge", args=()))
    elif case == "revoked creator":
        kw["revoked"] = frozenset({world.creator_serial})
    with pytest.raises(error, match=words):
        run(world, sp, **kw)


def test_a_contract_whose_code_differs_from_the_pin_is_refused(world: World) -> None:
    wrong = ContractPin(name="counter", version="1.0", code_hash=b"\x00" * 32)
    config = replace(world.config, contracts=(wrong,))
    with pytest.raises(ProposalRefused, match="differs from the pinned hash"):
        endorse(
            signed(world, proposal(world)),
            network=config,
            trust=world.trust,
            registry=world.registry,  # type: ignore[attr-defined]
            state=WorldState(MemoryKV()),
            key=world.keys["northgate"],
            cert_hash=sha256(world.cert("northgate")),
            at=AT,
        )


def test_an_endorser_never_verifies_its_own_endorsement_again(world: World) -> None:
    """The node remembers what it signed: when its endorsement comes back in a block, the
    check is a memo hit, while another node's endorsement still costs a verification."""
    sp = signed(world, proposal(world))
    mine = run(world, sp, "northgate")
    theirs = run(world, sp, "riverside")
    assert mine.endorsement is not None and theirs.endorsement is not None
    response = encode(mine.response)
    me = world.trust.validate(world.cert("northgate"), at=AT)
    other = world.trust.validate(world.cert("riverside"), at=AT)
    before = world.trust.signatures_verified
    world.trust.verify_signature(me, response, mine.endorsement.signature)
    assert world.trust.signatures_verified == before
    # (riverside signed through the same trust store here, so use a fresh signature of it)
    fresh = world.keys["riverside"].sign(response)
    world.trust.verify_signature(other, response, fresh)
    assert world.trust.signatures_verified == before + 1


@pytest.mark.asyncio
async def test_a_short_call_runs_on_the_event_loop_and_a_long_one_moves_to_a_worker_thread(
    world: World,
) -> None:
    loop_thread = threading.get_ident()
    ran_on: list[tuple[str, int, int]] = []

    def endorse_call(sp: SignedProposal, *, step_budget: int) -> object:
        ran_on.append((sp.proposal.function, step_budget, threading.get_ident()))
        return run(world, sp, step_budget=step_budget)

    metrics = Metrics()
    short = await run_endorsement(endorse_call, signed(world, proposal(world)), metrics=metrics)
    assert short.endorsement is not None  # type: ignore[attr-defined]
    assert ran_on == [("add", INLINE_STEP_BUDGET, loop_thread)]
    assert metrics.value("endorser_calls_moved_to_thread") == 0

    ran_on.clear()
    with pytest.raises(ProposalTooCostly, match=f"ran past its budget of {STEP_BUDGET_DEFAULT}"):
        await run_endorsement(
            endorse_call, signed(world, proposal(world, "spin", args=())), metrics=metrics
        )
    (first, second) = ran_on
    assert first == ("spin", INLINE_STEP_BUDGET, loop_thread)
    assert second[:2] == ("spin", STEP_BUDGET_DEFAULT) and second[2] != loop_thread
    assert metrics.value("endorser_calls_moved_to_thread") == 1

    ran_on.clear()  # any other refusal is the answer: not run again
    with pytest.raises(ProposalRefused, match="raised ValueError"):
        await run_endorsement(
            endorse_call, signed(world, proposal(world, "crash", args=(b"x",))), metrics=metrics
        )
    assert len(ran_on) == 1
