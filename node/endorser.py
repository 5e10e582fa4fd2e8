"""The endorser: what a hospital peer does with a client's signed proposal.

It checks the proposal (this network; the creator's certificate valid now and not revoked;
the creator's signature), that the contract is deployed on the network and that the copy
installed here matches the configuration's pin (name, version, code hash), then simulates
the call against its committed world state (:func:`chaincode.runtime.simulate`) and, when
the contract answered 200, signs the canonical response bytes with its node key. Endorsers
with the same committed state produce byte-identical responses, which is what the
gateway's quorum (:mod:`consensus.endorse`) counts.

A contract's refusal (400) or an unknown function (404) comes back as a response without
an endorsement, so the client sees the contract's message. Anything else wrong is a
:class:`ProposalRefused` (or another RemoteError), and nothing is signed.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from chaincode.api import Creator
from chaincode.registry import ContractRegistry
from chaincode.runtime import (
    STEP_BUDGET_DEFAULT,
    Invocation,
    SimulationRefused,
    SimulationTooCostly,
    StateReader,
    simulate,
)
from identity.keys import SigningKey
from identity.validate import Purpose, TrustStore
from node.metrics import Metrics
from protocol.codec import encode
from protocol.config import NetworkConfig
from protocol.errors import FieldError, RemoteError
from protocol.transaction import Endorsement, ProposalResponse, SignedProposal, proposal_hash


class ProposalRefused(RemoteError):
    """This endorser will not simulate or sign the proposal (the reason says why)."""


class ProposalTooCostly(ProposalRefused):
    """The contract ran past its step budget or recursed too deeply."""


# Steps a metered (plug-in) contract may run on the event loop before its call moves to a
# worker thread: about 1.4 ms of a contract that loops (200,000 steps took 55 ms here).
INLINE_STEP_BUDGET = 5_000

T = TypeVar("T")


def endorse_inline(endorse_call: Callable[..., T], proposal: object) -> T:
    """``endorse_call(proposal, step_budget=INLINE_STEP_BUDGET)``, here on the event loop;
    ProposalTooCostly when the call needs more steps (then :func:`endorse_on_thread`)."""
    return endorse_call(proposal, step_budget=INLINE_STEP_BUDGET)


async def endorse_on_thread(endorse_call: Callable[..., T], proposal: object) -> T:
    """``endorse_call(proposal, step_budget=STEP_BUDGET_DEFAULT)`` on a worker thread."""
    run = functools.partial(endorse_call, proposal, step_budget=STEP_BUDGET_DEFAULT)
    return await asyncio.get_running_loop().run_in_executor(None, run)


async def run_endorsement(
    endorse_call: Callable[..., T], proposal: object, *, metrics: Metrics
) -> T:
    """``endorse_call(proposal, step_budget=...)`` on the event loop with
    :data:`INLINE_STEP_BUDGET` steps; a call that needs more runs again on a worker thread
    with the full budget (:data:`STEP_BUDGET_DEFAULT`), whose answer is the endorser's.

    Handing every call to a thread cost about a tenth of the network's throughput (the
    hand-off and the GIL switches, for calls of a few dozen steps), while a contract that
    runs long or forever holds up the event loop, and Raft, for the inline budget at most.
    Running again is safe: a simulation only reads committed state and signs nothing
    until it succeeds, and the creator's signature, checked the first time, is remembered.
    """
    try:
        return endorse_inline(endorse_call, proposal)
    except ProposalTooCostly:
        metrics.inc("endorser_calls_moved_to_thread")
    return await endorse_on_thread(endorse_call, proposal)


@dataclass(frozen=True, slots=True)
class EndorserOutcome:
    """The response, its canonical bytes (what the endorsement signs), and this endorser's
    signature over them when the call succeeded."""

    response: ProposalResponse
    response_bytes: bytes
    endorsement: Endorsement | None


def endorse(
    signed: SignedProposal,
    *,
    network: NetworkConfig,
    trust: TrustStore,
    registry: ContractRegistry,
    state: StateReader,
    key: SigningKey,
    cert_hash: bytes,
    at: datetime,
    revoked: frozenset[int] = frozenset(),
    step_budget: int = STEP_BUDGET_DEFAULT,
) -> EndorserOutcome:
    """Check, simulate and (on success) sign *signed*; see the module docstring.
    *cert_hash* is the SHA-256 of this endorser's node certificate, which its endorsement
    names it by."""
    proposal = signed.proposal
    if proposal.network_id != network.network_id:
        raise FieldError("proposal", "network_id", "names another network")
    creator = trust.validate(proposal.creator, at=at, revoked=revoked, purpose=Purpose.SIGNING)
    signed_bytes = encode(proposal)  # what the creator signed, and what the response hashes
    trust.verify_signature(creator, signed_bytes, signed.signature)
    pin = next((c for c in network.contracts if c.name == proposal.contract), None)
    if pin is None:
        raise ProposalRefused(f"contract {proposal.contract!r} is not deployed on this network")
    problem = registry.pin_problem(pin)
    if problem is not None:
        raise ProposalRefused(problem)
    call = Invocation(
        contract=proposal.contract,
        function=proposal.function,
        args=proposal.args,
        creator=Creator(
            creator.org_id, creator.role, creator.subject_id, creator.serial, creator.cert_der
        ),
        tx_id=proposal.tx_id,
        timestamp_ms=proposal.timestamp_ms,
    )
    try:
        sim = simulate(registry, call, state, step_budget=step_budget)
    except SimulationTooCostly as e:
        raise ProposalTooCostly(f"contract {proposal.contract!r} {e}") from None
    except SimulationRefused as e:
        raise ProposalRefused(f"contract {proposal.contract!r} {e}") from None
    response = ProposalResponse(
        proposal_hash=proposal_hash(proposal, signed_bytes),
        status=sim.status,
        message=sim.message,
        result=sim.result,
        rw_set=sim.rw_set,
        events=sim.events,
    )
    response_bytes = encode(response)
    if sim.status != 200:
        return EndorserOutcome(response, response_bytes, None)
    signature = trust.signatures.sign(key, response_bytes)
    return EndorserOutcome(
        response, response_bytes, Endorsement(cert_hash=cert_hash, signature=signature)
    )
