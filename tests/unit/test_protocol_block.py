"""Blocks: any change to a stored or shipped block's bytes is detected.

"Detected" means what a peer receiving the bytes can check without trusting the sender:

1. ``decode(raw, Block)`` raises a RemoteError (not msgpack, not canonical, bad field), or
2. the decoded block is not the original, and at least one of these no longer matches:
   the header hash (so the cutter's signature over the header, and the next block's
   ``previous_hash``, fail), the data hash and tx count (``data_problems`` is non-empty), or
   the signer/signature bytes (so signature verification fails).

The one part of a block that no signature or hash covers is ``metadata.validation_codes``:
every peer computes them itself by validating the block, so a changed code is never trusted,
only recomputed. The tests therefore also run the whole receiving check with real ECDSA
P-256 (the ``cryptography`` package): whatever mutated bytes pass it have exactly the
original header and transactions. Decoding is canonical, so mutated bytes that decode at all
never decode to the original block.

This is proved exhaustively for every single-bit flip and every truncation of a fixed
two-transaction block, and with hypothesis for random blocks and multi-byte mutations
(flips, overwrites, insertions, deletions, truncation, extension).
"""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes as crypto_hashes
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import limits
from protocol.block import (
    GENESIS_PREVIOUS_HASH,
    Block,
    BlockMetadata,
    ValidationCode,
    data_hash_of,
    data_problems,
    decode_tx,
    make_header,
    tx_ids_of,
)
from protocol.codec import decode, encode, replace
from protocol.errors import DecodeError, FieldError, RemoteError
from protocol.hashing import merkle_root
from protocol.transaction import (
    Endorsement,
    Envelope,
    Proposal,
    ProposalResponse,
    RwSet,
    Transaction,
    proposal_hash,
)
from tests.unit.strategies import blocks, config_envelopes, envelopes

KEY = ec.derive_private_key(0x6D65646C6564676572, ec.SECP256R1())  # fixed: reproducible runs
SIGNER = KEY.public_key().public_bytes(
    serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
)
# RFC 6979 deterministic signatures: the same block always encodes to the same bytes, which
# hypothesis needs to replay an example.
ECDSA = ec.ECDSA(crypto_hashes.SHA256(), deterministic_signing=True)


def sign(block: Block) -> Block:
    signature = KEY.sign(encode(block.header), ECDSA)
    metadata = replace(block.metadata, signer=SIGNER, signature=signature)
    return replace(block, metadata=metadata)


def accepted(raw: bytes) -> Block | None:
    """The receiving peer's check: canonical, self-consistent, signed by the known cutter."""
    try:
        block = decode(raw, Block)
    except RemoteError:
        return None
    if data_problems(block) or block.metadata.signer != SIGNER:
        return None
    try:
        KEY.public_key().verify(block.metadata.signature, encode(block.header), ECDSA)
    except InvalidSignature:
        return None
    return block


def assert_detected(original: Block, raw: bytes) -> None:
    original_raw = encode(original)
    if raw == original_raw:
        return
    try:
        block = decode(raw, Block)
    except RemoteError:
        block = None
    if block is not None:
        assert block != original  # canonical decoding: other bytes, other block
        assert (
            block.hash() != original.hash()
            or data_problems(block)
            or block.metadata.signature != original.metadata.signature
            or block.metadata.signer != original.metadata.signer
            or block.metadata.validation_codes != original.metadata.validation_codes
        )
    passed = accepted(raw)
    if passed is not None:
        # Only the unsigned, locally recomputed validation codes can differ.
        assert passed.header == original.header
        assert passed.transactions == original.transactions
        assert passed.metadata.validation_codes != original.metadata.validation_codes


def fixed_block() -> Block:
    proposal = Proposal(
        network_id="net",
        contract="records",
        function="add",
        args=(b"a",),
        creator=b"cert",
        nonce=bytes(range(24)),
        timestamp_ms=1_700_000_000_000,
    )
    response = ProposalResponse(
        proposal_hash=proposal_hash(proposal),
        status=200,
        message="",
        result=b"ok",
        rw_set=RwSet(reads=(), writes=()),
        events=(),
    )
    tx = Transaction(
        proposal=proposal,
        response=response,
        endorsements=(Endorsement(cert_hash=bytes(32), signature=b"s1"),),
    )
    envelope = Envelope(transaction=tx, signature=b"client-signature")
    txs = (encode(envelope), encode(replace(envelope, signature=b"other")))
    header = make_header(7, b"\x11" * 32, txs, 1_700_000_000_000)
    metadata = BlockMetadata(signer=b"", signature=b"", validation_codes=bytes([0, 3]))
    return sign(Block(header=header, transactions=txs, metadata=metadata))


FIXED = fixed_block()


def test_the_fixed_block_is_accepted_as_it_is() -> None:
    assert accepted(encode(FIXED)) == FIXED
    assert data_problems(FIXED) == []


def test_every_single_bit_flip_of_a_block_is_detected() -> None:
    raw = encode(FIXED)
    for i in range(len(raw)):
        for bit in range(8):
            mutated = bytearray(raw)
            mutated[i] ^= 1 << bit
            assert_detected(FIXED, bytes(mutated))


def test_every_truncation_and_extension_of_a_block_is_a_decode_error() -> None:
    raw = encode(FIXED)
    for end in range(len(raw)):
        with pytest.raises(DecodeError):
            decode(raw[:end], Block)
    for extra in (b"\x00", b"\xc0", raw):
        with pytest.raises(DecodeError):
            decode(raw + extra, Block)


def test_flipping_a_validation_code_is_the_one_undetected_change() -> None:
    # Documented above: validation codes are recomputed by every peer, never trusted.
    metadata = replace(FIXED.metadata, validation_codes=bytes([0, 4]))
    changed = replace(FIXED, metadata=metadata)
    assert accepted(encode(changed)) == changed
    assert changed.hash() == FIXED.hash()


SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(block=blocks(), data=st.data())
def test_random_mutations_of_random_blocks_are_detected(block: Block, data: st.DataObject) -> None:
    block = sign(block)
    raw = bytearray(encode(block))
    assert accepted(bytes(raw)) == block
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        i = data.draw(st.integers(0, len(raw) - 1), label="at")
        action = data.draw(st.sampled_from(["flip", "set", "insert", "delete"]), label="action")
        if action == "flip":
            raw[i] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "set":
            raw[i] = data.draw(st.integers(0, 255))
        elif action == "insert":
            raw.insert(i, data.draw(st.integers(0, 255)))
        elif len(raw) > 1:
            del raw[i]
    assert_detected(block, bytes(raw))


@SETTINGS
@given(block=blocks(), cut=st.integers(min_value=1), tail=st.binary(min_size=1, max_size=8))
def test_truncated_or_extended_random_blocks_do_not_decode(
    block: Block, cut: int, tail: bytes
) -> None:
    raw = encode(block)
    with pytest.raises(DecodeError):
        decode(raw[: len(raw) - 1 - cut % len(raw)], Block)
    with pytest.raises(DecodeError):
        decode(raw + tail, Block)


@SETTINGS
@given(block=blocks(), other=blocks())
def test_swapping_transactions_between_blocks_breaks_the_data_hash(
    block: Block, other: Block
) -> None:
    if block.transactions == other.transactions:
        return
    swapped = replace(block, transactions=other.transactions)
    assert data_problems(swapped)


# --- data_problems, helpers and limits ------------------------------------------------------


def test_data_problems_names_each_mismatch() -> None:
    one_less = replace(FIXED, transactions=FIXED.transactions[:1])
    problems = data_problems(one_less)
    assert any("counts 2" in p for p in problems)
    assert any("data hash" in p for p in problems)
    assert any("validation codes" in p for p in problems)
    reordered = replace(FIXED, transactions=FIXED.transactions[::-1])
    assert data_problems(reordered) == ["data hash does not match the transactions"]
    no_codes = replace(FIXED, metadata=replace(FIXED.metadata, validation_codes=b""))
    assert data_problems(no_codes) == []


def test_header_commits_to_transactions() -> None:
    header = make_header(0, GENESIS_PREVIOUS_HASH, FIXED.transactions, 5)
    assert header.data_hash == merkle_root(FIXED.transactions) == data_hash_of(FIXED.transactions)
    assert header.tx_count == 2
    assert bytes(32) == GENESIS_PREVIOUS_HASH
    assert FIXED.hash() == FIXED.header.hash() and FIXED.number == 7


def test_tx_ids_and_decode_tx() -> None:
    envelope = decode_tx(FIXED.transactions[0])
    assert tx_ids_of(FIXED) == [envelope.tx_id, envelope.tx_id]
    with pytest.raises(DecodeError):
        # not a transaction kind:
        decode_tx(encode(Endorsement(cert_hash=bytes(32), signature=b"s")))
    with pytest.raises(DecodeError):
        decode_tx(encode(FIXED))
    with pytest.raises(RemoteError):
        decode_tx(b"\x00")


@settings(max_examples=20, deadline=None)
@given(msg=st.one_of(envelopes, config_envelopes))
def test_decode_tx_round_trips_both_transaction_kinds(msg: object) -> None:
    assert decode_tx(encode(msg)) == msg


def test_a_block_over_the_byte_limit_cannot_be_built() -> None:
    big = bytes(limits.ENVELOPE_BYTES_MAX)
    count = limits.BLOCK_BYTES_MAX // limits.ENVELOPE_BYTES_MAX + 1
    txs = (big,) * count
    header = make_header(1, bytes(32), txs, 0)
    with pytest.raises(FieldError, match="transactions"):
        Block(header=header, transactions=txs, metadata=FIXED.metadata)
    fits = txs[:-1]
    Block(header=make_header(1, bytes(32), fits, 0), transactions=fits, metadata=FIXED.metadata)


def test_block_field_limits() -> None:
    with pytest.raises(FieldError):
        make_header(0, bytes(31), (), 0)
    with pytest.raises(FieldError):
        replace(FIXED.header, tx_count=limits.BLOCK_TXS_MAX + 1)
    with pytest.raises(FieldError):
        replace(FIXED, transactions=(b"",) * (limits.BLOCK_TXS_MAX + 1))
    with pytest.raises(FieldError):
        replace(FIXED, transactions=(bytes(limits.ENVELOPE_BYTES_MAX + 1),))
    with pytest.raises(FieldError):
        replace(FIXED.metadata, validation_codes=bytes(limits.BLOCK_TXS_MAX + 1))
    assert ValidationCode.VALID == 0 and ValidationCode.NOT_VALIDATED == 255
