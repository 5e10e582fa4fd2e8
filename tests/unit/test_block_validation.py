"""Block validation (consensus.validation): each rule gives its code, invalid transactions
write nothing, MVCC counts earlier valid transactions of the same block, and the verdict is
a function of its inputs alone (the same block validates the same way twice)."""

from __future__ import annotations

import pytest

from consensus.validation import BlockVerdict, validate_block
from identity.keys import SigningKey
from protocol.block import ValidationCode as Code
from protocol.codec import replace
from protocol.transaction import Envelope, KVRead, KVWrite
from tests.unit.endorsed_world import HOSPITALS, NOW_MS, World, make_world

QUORUM = ("northgate", "riverside", "stmarys")
BLOCK_TIME_MS = NOW_MS + 3_600_000


@pytest.fixture(scope="module")
def world() -> World:
    return make_world()


class Chain:
    """The committed side validation reads: key versions and the tx index."""

    def __init__(self) -> None:
        self.versions: dict[tuple[str, bytes], tuple[int, int]] = {}
        self.tx_ids: set[bytes] = set()

    def version(self, namespace: str, key: bytes) -> tuple[int, int] | None:
        return self.versions.get((namespace, key))


def run(world: World, envelopes: list[Envelope], chain: Chain | None = None, **kw) -> BlockVerdict:
    chain = chain or Chain()
    return validate_block(
        envelopes,
        block_time_ms=BLOCK_TIME_MS,
        config=world.config,
        trust=world.trust,
        committed_version=chain.version,
        tx_committed=chain.tx_ids.__contains__,
        **kw,
    )


def read(key: bytes, version: tuple[int, int] | None) -> KVRead:
    return KVRead(
        namespace="registry",
        key=key,
        exists=version is not None,
        version_block=version[0] if version else 0,
        version_tx=version[1] if version else 0,
    )


def write(key: bytes, value: bytes = b"v") -> KVWrite:
    return KVWrite(namespace="registry", key=key, value=value, is_delete=False)


def test_an_endorsed_signed_transaction_is_valid_and_its_writes_apply(world: World) -> None:
    env = world.envelope(world.transaction(QUORUM, writes=(write(b"a"),)))
    verdict = run(world, [env])
    assert verdict.codes == (Code.VALID,)
    assert verdict.reasons == ("",)
    assert verdict.writes == ((0, (write(b"a"),)),)
    assert verdict.tx_ids == (env.transaction.tx_id,)


def test_each_rule_has_its_code(world: World) -> None:
    chain = Chain()
    committed = world.envelope(world.transaction(QUORUM))
    chain.tx_ids.add(committed.transaction.tx_id)
    chain.versions[("registry", b"k")] = (7, 0)
    outside = replace(write(b"x"), namespace="records")
    cases = [
        (world.envelope(world.transaction(QUORUM, network_id="other")), Code.WRONG_NETWORK),
        (
            world.envelope(world.transaction(QUORUM), key=SigningKey.generate()),
            Code.BAD_CREATOR,
        ),
        (committed, Code.DUPLICATE_TXID),
        (world.envelope(world.transaction(QUORUM, writes=(outside,))), Code.BAD_RWSET),
        (world.envelope(world.transaction(QUORUM[:2])), Code.ENDORSEMENT_POLICY_FAILURE),
        (
            world.envelope(world.transaction(QUORUM, reads=(read(b"k", (6, 0)),))),
            Code.MVCC_READ_CONFLICT,
        ),
        (
            world.envelope(world.transaction(QUORUM, reads=(read(b"k", None),))),
            Code.MVCC_READ_CONFLICT,
        ),
        (world.envelope(world.transaction(QUORUM, reads=(read(b"k", (7, 0)),))), Code.VALID),
    ]
    verdict = run(world, [env for env, _ in cases], chain)
    assert verdict.codes == tuple(code for _, code in cases)
    assert [index for index, _ in verdict.writes] == [len(cases) - 1]


def test_a_revoked_creator_is_invalid(world: World) -> None:
    env = world.envelope(world.transaction(QUORUM))
    verdict = run(world, [env], revoked=frozenset({world.creator_serial}))
    assert verdict.codes == (Code.BAD_CREATOR,)
    assert "revoked" in verdict.reasons[0]


def test_a_revoked_endorser_leaves_too_few_endorsements(world: World) -> None:
    env = world.envelope(world.transaction(QUORUM))
    verdict = run(world, [env], revoked=frozenset({world.serials["riverside"]}))
    assert verdict.codes == (Code.ENDORSEMENT_POLICY_FAILURE,)
    assert verdict.writes == ()


def test_a_replayed_tx_id_in_the_same_block_is_a_duplicate(world: World) -> None:
    env = world.envelope(world.transaction(HOSPITALS))
    assert run(world, [env, env]).codes == (Code.VALID, Code.DUPLICATE_TXID)


def test_mvcc_counts_earlier_valid_transactions_of_the_block(world: World) -> None:
    first = world.envelope(world.transaction(QUORUM, writes=(write(b"k", b"1"),)))
    second = world.envelope(
        world.transaction(QUORUM, reads=(read(b"k", None),), writes=(write(b"k", b"2"),))
    )
    verdict = run(world, [first, second])
    assert verdict.codes == (Code.VALID, Code.MVCC_READ_CONFLICT)
    assert verdict.writes == ((0, (write(b"k", b"1"),)),)


def test_an_invalid_earlier_write_does_not_conflict(world: World) -> None:
    unendorsed = world.envelope(world.transaction(QUORUM[:1], writes=(write(b"k", b"1"),)))
    reader = world.envelope(world.transaction(QUORUM, reads=(read(b"k", None),)))
    assert run(world, [unendorsed, reader]).codes == (
        Code.ENDORSEMENT_POLICY_FAILURE,
        Code.VALID,
    )


def test_certificates_are_checked_at_the_blocks_time(world: World) -> None:
    env = world.envelope(world.transaction(QUORUM))
    ten_years = 10 * 365 * 86_400_000
    verdict = validate_block(
        [env],
        block_time_ms=BLOCK_TIME_MS + ten_years,
        config=world.config,
        trust=world.trust,
        committed_version=Chain().version,
        tx_committed=lambda tx_id: False,
    )
    assert verdict.codes == (Code.BAD_CREATOR,)
    assert "expired" in verdict.reasons[0]


def test_validation_is_a_function_of_its_inputs(world: World) -> None:
    envs = [
        world.envelope(world.transaction(QUORUM, writes=(write(b"a"),))),
        world.envelope(world.transaction(QUORUM[:2])),
        world.envelope(world.transaction(HOSPITALS, reads=(read(b"a", None),))),
    ]
    assert run(world, envs) == run(world, envs)
    assert run(world, envs).codes == (
        Code.VALID,
        Code.ENDORSEMENT_POLICY_FAILURE,
        Code.MVCC_READ_CONFLICT,
    )


def test_too_few_endorsements_are_refused_before_any_signature_is_checked(world: World) -> None:
    """A count is cheaper than a verification: an envelope that can never reach q (an
    opaque payload, say) costs no ECDSA check, even with a forged creator signature."""
    few = world.envelope(world.transaction(QUORUM[:2]), key=SigningKey.generate())
    before = world.trust.signatures_verified
    verdict = run(world, [few])
    assert verdict.codes == (Code.ENDORSEMENT_POLICY_FAILURE,)
    assert verdict.reasons == ("2 endorsements of the 3 needed",)
    assert world.trust.signatures_verified == before
