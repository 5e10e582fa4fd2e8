"""What the ledger inspection commands show: blocks, transactions and state entries as JSON.

Shared by the node's API (``/v1/tx``, ``/v1/state``) and the CLI (``block show`` decodes
the block bytes it fetched). A transaction is described by who created it (organisation,
role and pseudonymous subject id from the certificate), which members endorsed it, what it
called and its validation code; never by its arguments, result or written values (counts
and sizes only). A state entry is shown with its value: that is what ``state get`` asks for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

from consensus.endorse import endorsers_by_cert_hash
from identity.certs import cert_from_der
from identity.validate import subject_fields
from protocol.block import Block, ValidationCode, code_meaning, code_name, code_of, decode_tx
from protocol.config import ConfigEnvelope, NetworkConfig
from protocol.errors import RemoteError
from storage.state import WorldState


def who(cert_der: bytes) -> dict[str, str]:
    """The organisation, role and subject id a certificate names (read, not validated)."""
    try:
        fields = subject_fields(cert_from_der(cert_der))
    except RemoteError:
        return {"org": "?", "role": "?", "subject": "?"}
    return {"org": fields.org_id, "role": fields.role, "subject": fields.subject_id}


def endorser_names(config: NetworkConfig) -> dict[bytes, str]:
    """The node id of each endorsing member of *config*, by the hash of its node certificate
    (how an endorsement names its endorser)."""
    return {cert_hash: m.node_id for cert_hash, m in endorsers_by_cert_hash(config).items()}


def describe_tx(
    block: Block,
    index: int,
    *,
    with_events: bool = False,
    endorsers: Mapping[bytes, str] | None = None,
) -> dict[str, Any]:
    """Transaction *index* of *block*, with its validation code (and, *with_events*, the
    contract events a valid one emitted: name and payload hex). Endorsers are named by node
    id where *endorsers* (:func:`endorser_names`) knows their certificate hash, otherwise by
    that hash in hex."""
    tx = decode_tx(block.transactions[index])
    code = code_of(block, index)
    out: dict[str, Any] = {
        "tx_id": tx.tx_id.hex(),
        "block": block.number,
        "index": index,
        "code": code,
        "status": code_name(code),
        "meaning": code_meaning(code),
    }
    if isinstance(tx, ConfigEnvelope):
        update = tx.update
        out.update(
            kind="config",
            creator=who(update.creator),
            timestamp_ms=update.timestamp_ms,
            sequence=update.config.sequence,
        )
        if with_events:
            out["events"] = []
        return out
    transaction = tx.transaction
    proposal = transaction.proposal
    names = endorsers or {}
    rw_set = transaction.response.rw_set
    out.update(
        kind="invoke",
        contract=proposal.contract,
        function=proposal.function,
        args=[len(a) for a in proposal.args],  # sizes only
        creator=who(proposal.creator),
        timestamp_ms=proposal.timestamp_ms,
        endorsers=[names.get(e.cert_hash) or e.cert_hash.hex() for e in transaction.endorsements],
        response_status=transaction.response.status,
        reads=len(rw_set.reads),
        writes=len(rw_set.writes),
    )
    if with_events:
        valid = code == ValidationCode.VALID
        events = transaction.response.events if valid else ()
        out["events"] = [{"name": e.name, "payload_hex": e.payload.hex()} for e in events]
    return out


def describe_block(block: Block, endorsers: Mapping[bytes, str] | None = None) -> dict[str, Any]:
    """A block's header, signer and transactions (endorsers named as :func:`describe_tx`)."""
    header = block.header
    return {
        "number": header.number,
        "hash": block.hash().hex(),
        "previous_hash": header.previous_hash.hex(),
        "data_hash": header.data_hash.hex(),
        "timestamp_ms": header.timestamp_ms,
        "signer": who(block.metadata.signer),
        "transactions": [
            describe_tx(block, i, endorsers=endorsers) for i in range(len(block.transactions))
        ],
    }


def state_entry(state: WorldState, namespace: str, key: bytes) -> dict[str, Any] | None:
    """One world-state entry with the version that wrote it; None if absent."""
    found = state.get(namespace, key)
    if found is None:
        return None
    value, version = found
    out: dict[str, Any] = {
        "namespace": namespace,
        "key": key.decode("utf-8", "replace"),
        "version": {"block": version.block, "tx": version.tx},
        "value_hex": value.hex(),
    }
    with contextlib.suppress(UnicodeDecodeError):
        out["value"] = value.decode("utf-8")
    return out
