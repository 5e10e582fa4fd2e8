"""Hashing: the block data Merkle root is RFC 6962's, and transaction lists cannot be re-cut.

Known answers come from two independent places: the tree structure for 0, 1, 2, 3 and 5
leaves written out by hand here with hashlib (leaf = sha256(0x00 || item), node =
sha256(0x01 || left || right), split at the largest power of two below n), and the published
test vectors of Certificate Transparency's reference implementation for 1 to 8 leaves.
Hypothesis then checks that no two different lists of transactions with the same
concatenated bytes share a root (the bug class of Fabric's CVE-2023-46132, where a block's
data hash was computed over the concatenation), and that a leaf can never pose as an inner
node. tx_id is sha256(nonce || creator), as DESIGN.md fixes it.
"""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol import limits
from protocol.hashing import EMPTY_ROOT, merkle_root, sha256, short_hex, tx_id_of
from protocol.transaction import Proposal


def h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaf(item: bytes) -> bytes:
    return h(b"\x00" + item)


def node(left: bytes, right: bytes) -> bytes:
    return h(b"\x01" + left + right)


A, B, C, D, E = b"alpha", b"bravo", b"charlie", b"delta", b"echo"


def test_empty_root_is_sha256_of_nothing() -> None:
    assert merkle_root([]) == EMPTY_ROOT
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_one_leaf() -> None:
    assert merkle_root([A]) == leaf(A)
    assert merkle_root([A]) != h(A)  # the leaf prefix is there


def test_two_leaves() -> None:
    assert merkle_root([A, B]) == node(leaf(A), leaf(B))


def test_three_leaves_split_two_one() -> None:
    assert merkle_root([A, B, C]) == node(node(leaf(A), leaf(B)), leaf(C))


def test_five_leaves_split_four_one() -> None:
    four = node(node(leaf(A), leaf(B)), node(leaf(C), leaf(D)))
    assert merkle_root([A, B, C, D, E]) == node(four, leaf(E))


# RFC 6962 test vectors, from certificate-transparency's reference merkle tests.
CT_LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    bytes(range(0x60, 0x70)),
]
CT_ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


@pytest.mark.parametrize("n", range(1, 9))
def test_certificate_transparency_vectors(n: int) -> None:
    assert merkle_root(CT_LEAVES[:n]).hex() == CT_ROOTS[n - 1]


def reference_root(items: list[bytes]) -> bytes:
    """RFC 6962 section 2.1, written as the RFC states it."""
    if not items:
        return h(b"")
    if len(items) == 1:
        return leaf(items[0])
    k = 1
    while k * 2 < len(items):
        k *= 2
    return node(reference_root(items[:k]), reference_root(items[k:]))


@settings(max_examples=100, deadline=None)
@given(items=st.lists(st.binary(max_size=8), max_size=40))
def test_matches_the_rfc_text_for_any_list(items: list[bytes]) -> None:
    assert merkle_root(items) == reference_root(items)
    assert merkle_root(tuple(items)) == merkle_root(items)


def test_recutting_the_same_bytes_changes_the_root() -> None:
    cuts = [
        [b"abc"],
        [b"ab", b"c"],
        [b"a", b"bc"],
        [b"a", b"b", b"c"],
        [b"", b"abc"],
        [b"abc", b""],
    ]
    roots = {merkle_root(c) for c in cuts}
    assert len(roots) == len(cuts)


@st.composite
def two_cuts(draw: st.DrawFn) -> tuple[list[bytes], list[bytes]]:
    data = draw(st.binary(max_size=40))
    positions = st.lists(st.integers(0, len(data)), max_size=6).map(sorted)
    first, second = draw(positions), draw(positions)

    def cut(points: list[int]) -> list[bytes]:
        bounds = [0, *points, len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds)]

    return cut(first), cut(second)


@settings(max_examples=200, deadline=None)
@given(cuts=two_cuts())
def test_different_splits_of_the_same_bytes_never_share_a_root(
    cuts: tuple[list[bytes], list[bytes]],
) -> None:
    first, second = cuts
    assert b"".join(first) == b"".join(second)
    if first != second:
        assert merkle_root(first) != merkle_root(second)


def test_a_leaf_cannot_pose_as_an_inner_node() -> None:
    # Without domain separation, the one-leaf list [L(a) || L(b)] would hash like [a, b].
    assert merkle_root([leaf(A) + leaf(B)]) != merkle_root([A, B])
    assert merkle_root([b"\x01" + leaf(A) + leaf(B)]) != merkle_root([A, B])
    # ... and an inner node's children cannot be passed off as leaves.
    assert merkle_root([leaf(A), leaf(B)]) != merkle_root([A, B])


def test_lists_of_different_lengths_differ() -> None:
    assert merkle_root([A]) != merkle_root([A, A])
    assert merkle_root([]) != merkle_root([b""])
    assert merkle_root([A, B, C]) != merkle_root([A, B, C, C])  # no Bitcoin-style duplication


def test_tx_id_is_sha256_of_nonce_then_creator() -> None:
    nonce, creator = bytes(range(limits.NONCE_BYTES)), b"creator-cert-der"
    assert tx_id_of(nonce, creator) == h(nonce + creator)
    assert tx_id_of(nonce, creator) != h(creator + nonce)
    proposal = Proposal(
        network_id="n",
        contract="c",
        function="f",
        args=(),
        creator=creator,
        nonce=nonce,
        timestamp_ms=0,
    )
    assert proposal.tx_id == h(nonce + creator)
    assert len(proposal.tx_id) == limits.HASH_BYTES


def test_sha256_and_short_hex() -> None:
    assert sha256(b"abc").hex().startswith("ba7816bf8f01cfea")
    assert short_hex(sha256(b"abc")) == "ba7816bf8f01cfea"
    assert short_hex(sha256(b"abc"), 4) == "ba78"
