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

from dataclasses import dataclass
from datetime import datetime

from chaincode.api import Creator
from chaincode.registry import ContractRegistry
from chaincode.runtime import (
    STEP_BUDGET_DEFAULT,
    Invocation,
    SimulationRefused,
    StateReader,
    simulate,
)
from identity.keys import SigningKey
from identity.validate import Purpose, TrustStore
from protocol.codec import encode
from protocol.config import NetworkConfig
from protocol.errors import FieldError, RemoteError
from protocol.transaction import Endorsement, ProposalResponse, SignedProposal, proposal_hash


class ProposalRefused(RemoteError):
    """This endorser will not simulate or sign the proposal (the reason says why)."""


@dataclass(frozen=True, slots=True)
class EndorserOutcome:
    """The response, and this endorser's signature over it when the call succeeded."""

    response: ProposalResponse
    endorsement: Endorsement | None


def endorse(
    signed: SignedProposal,
    *,
    network: NetworkConfig,
    trust: TrustStore,
    registry: ContractRegistry,
    state: StateReader,
    key: SigningKey,
    cert_der: bytes,
    at: datetime,
    revoked: frozenset[int] = frozenset(),
    step_budget: int = STEP_BUDGET_DEFAULT,
) -> EndorserOutcome:
    """Check, simulate and (on success) sign *signed*; see the module docstring."""
    proposal = signed.proposal
    if proposal.network_id != network.network_id:
        raise FieldError("proposal", "network_id", "names another network")
    creator = trust.validate(proposal.creator, at=at, revoked=revoked, purpose=Purpose.SIGNING)
    trust.verify_signature(creator, encode(proposal), signed.signature)
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
    except SimulationRefused as e:
        raise ProposalRefused(f"contract {proposal.contract!r} {e}") from None
    response = ProposalResponse(
        proposal_hash=proposal_hash(proposal),
        status=sim.status,
        message=sim.message,
        result=sim.result,
        rw_set=sim.rw_set,
        events=sim.events,
    )
    if sim.status != 200:
        return EndorserOutcome(response, None)
    signature = trust.signatures.sign(key, encode(response))
    return EndorserOutcome(response, Endorsement(endorser=cert_der, signature=signature))
