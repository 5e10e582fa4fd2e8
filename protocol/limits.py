"""Every size and count limit of the protocol, in one place.

Units come last in names. Relations between the limits are checked when this module is
imported, so a change that breaks one (say, a block that no longer fits in a frame) fails at
start-up rather than in production.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from protocol.errors import InvariantViolation

KIB = 1024
MIB = 1024 * KIB

# --- hashes and signatures -----------------------------------------------------------------
HASH_BYTES = 32  # SHA-256 digest size.
# DER ECDSA P-256 signature: SEQUENCE(2 INTEGERs of at most 33 bytes) = 2 + 2 * (2 + 33) = 72.
SIGNATURE_BYTES_MAX = 72
NONCE_BYTES = 24  # 192 random bits: a collision between two clients is not a practical concern.
# A DER end-entity certificate of ours is about 600 bytes; 4 KiB leaves room for long
# subjects and extensions while bounding what an unknown sender can make us parse.
CERTIFICATE_BYTES_MAX = 4 * KIB
# An organisation CA's revocation list (DER): about a hundred revoked certificates; people's
# certificates are revoked in the registry contract, this list is what TLS checks (nodes').
CRL_BYTES_MAX = 4 * KIB
# An uncompressed P-256 point (0x04 || X || Y), the form WebCrypto exports as "raw".
PUBLIC_POINT_BYTES = 65

# --- identifiers and names -----------------------------------------------------------------
ID_CHARS_MAX = 64  # org ids, node ids, contract and function names, network id.
# Human-readable organisation names (never patient names: those stay off chain).
NAME_CHARS_MAX = 256
HOST_CHARS_MAX = 253  # RFC 1035 upper bound on a DNS name.
REASON_CHARS_MAX = 1 * KIB  # free-text status messages and validation reasons.

# --- proposals and transactions ------------------------------------------------------------
ARGS_MAX = 32  # positional contract arguments per proposal.
ARG_BYTES_MAX = 64 * KIB  # one argument; records themselves stay off chain in the vault.
STATE_KEY_BYTES_MAX = 512
STATE_VALUE_BYTES_MAX = 64 * KIB
RW_SET_KEYS_MAX = 1_000  # reads plus writes of one transaction.
EVENTS_MAX = 16
RESULT_BYTES_MAX = 64 * KIB
ENDORSEMENTS_MAX = 64  # one per endorsing hospital; far above any planned network.
ENVELOPE_BYTES_MAX = 1 * MIB

# --- network configuration -----------------------------------------------------------------
ORGS_MAX = 64
MEMBERS_MAX = 64
CONTRACTS_MAX = 64
CONFIG_BYTES_MAX = 1 * MIB

# --- blocks --------------------------------------------------------------------------------
BLOCK_TXS_MAX = 2_000
BLOCK_BYTES_MAX = 8 * MIB

# --- frames on the wire --------------------------------------------------------------------
# One message on a stream or in a request body; a block plus its framing must fit.
MESSAGE_BYTES_MAX = 10 * MIB
# Framing around a block inside a message: tags, field names, header and metadata.
BLOCK_FRAMING_BYTES_MAX = 64 * KIB

# --- off-chain records ---------------------------------------------------------------------
RECORD_BYTES_MAX = 8 * MIB  # one encrypted record in the vault (imaging goes elsewhere).


def check_relations(values: Mapping[str, Any]) -> None:
    """Raise InvariantViolation naming the first relation between limits that *values* break.

    *values* maps limit names to numbers: this module's globals at import, or a patched copy
    in a test that proves a broken relation is caught.
    """
    v = values

    def need(condition: bool, relation: str) -> None:
        if not condition:
            raise InvariantViolation(f"protocol.limits: {relation} does not hold")

    need(v["ENVELOPE_BYTES_MAX"] <= v["BLOCK_BYTES_MAX"], "an envelope fits in a block")
    need(
        v["BLOCK_BYTES_MAX"] + v["BLOCK_FRAMING_BYTES_MAX"] <= v["MESSAGE_BYTES_MAX"],
        "a block fits in a frame",
    )
    need(
        v["CONFIG_BYTES_MAX"] <= v["BLOCK_BYTES_MAX"],
        "the configuration fits in the genesis block",
    )
    need(
        v["ORGS_MAX"] * (v["CERTIFICATE_BYTES_MAX"] + v["CRL_BYTES_MAX"])
        + v["MEMBERS_MAX"] * v["CERTIFICATE_BYTES_MAX"]
        <= v["CONFIG_BYTES_MAX"],
        "a full configuration of org CAs, their CRLs and member certificates fits its limit",
    )
    need(
        v["RECORD_BYTES_MAX"] + v["BLOCK_FRAMING_BYTES_MAX"] <= v["MESSAGE_BYTES_MAX"],
        "a record fits in a frame",
    )
    need(v["ENDORSEMENTS_MAX"] >= v["MEMBERS_MAX"], "every member can endorse")
    need(
        v["ENDORSEMENTS_MAX"] * (v["CERTIFICATE_BYTES_MAX"] + v["SIGNATURE_BYTES_MAX"])
        < v["ENVELOPE_BYTES_MAX"],
        "a full set of endorsements fits in an envelope",
    )


check_relations(globals())
