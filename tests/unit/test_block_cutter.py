"""Block cutting: size and count limits, the batch timeout, and adaptive group commit.

Drives the pure cutter with transactions, ticks and commit reports, and checks which
blocks come out when; a hypothesis test checks that whatever the sequence of events, every
transaction is cut exactly once, in arrival order, and no block breaks a limit.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.cutter import PENDING_TXS_MAX, BlockCutter, CutPolicy
from protocol import limits
from protocol.errors import InvariantViolation, LocalError, OversizeError

MIB = 1 << 20


def cutter(max_txs: int = 10, max_bytes: int = 1 * MIB, timeout: int = 5, in_flight: int = 1):
    return BlockCutter(CutPolicy(max_txs, max_bytes, timeout, in_flight))


def tx(i: int, size: int = 10) -> bytes:
    return i.to_bytes(4, "big") + bytes(size - 4)


def test_lone_transaction_is_cut_at_once_when_nothing_is_in_flight() -> None:
    c = cutter()
    c.add(tx(1))
    assert c.take_ready() == [(tx(1),)]
    assert c.in_flight == 1


def test_transactions_accumulate_while_a_block_is_in_flight() -> None:
    c = cutter()
    c.add(tx(1))
    c.take_ready()
    for i in range(2, 6):
        c.add(tx(i))
        assert c.take_ready() == []
    c.on_committed()
    assert c.take_ready() == [tuple(tx(i) for i in range(2, 6))]


def test_timeout_cuts_a_partial_block_even_with_a_block_in_flight() -> None:
    c = cutter(timeout=3)
    c.add(tx(1))
    c.take_ready()
    c.add(tx(2))
    for _ in range(2):
        c.tick()
        assert c.take_ready() == []
    c.tick()
    assert c.take_ready() == [(tx(2),)]
    assert c.in_flight == 2


def test_max_txs_cuts_full_blocks_regardless_of_in_flight() -> None:
    c = cutter(max_txs=3)
    c.add(tx(0))
    c.take_ready()
    for i in range(1, 8):
        c.add(tx(i))
    assert c.take_ready() == [(tx(1), tx(2), tx(3)), (tx(4), tx(5), tx(6))]
    assert c.pending_txs == 1


def test_max_bytes_closes_a_block_before_it_overflows() -> None:
    c = cutter(max_txs=100, max_bytes=limits.ENVELOPE_BYTES_MAX)
    c.add(tx(0))
    c.take_ready()
    half = limits.ENVELOPE_BYTES_MAX // 2
    c.add(tx(1, half))
    c.add(tx(2, half))  # exactly full: closed
    c.add(tx(3, half))
    c.add(tx(4, half + 1))  # would overflow: the open block closes first
    assert c.take_ready() == [(tx(1, half), tx(2, half)), (tx(3, half),)]


def test_oversize_transaction_and_full_cutter_are_refused() -> None:
    c = cutter()
    with pytest.raises(OversizeError):
        c.add(bytes(limits.ENVELOPE_BYTES_MAX + 1))
    c.add(tx(0))
    c.take_ready()  # one in flight: later ones queue
    for i in range(PENDING_TXS_MAX):
        c.add(tx(i))
    assert not c.can_accept()
    with pytest.raises(LocalError):
        c.add(tx(0))


def test_reset_returns_what_was_not_cut_and_commit_accounting_is_checked() -> None:
    c = cutter(max_txs=2)
    c.add(tx(0))
    c.take_ready()
    for i in range(1, 4):
        c.add(tx(i))
    assert c.reset() == [tx(1), tx(2), tx(3)]
    assert c.in_flight == 0 and c.pending_txs == 0
    with pytest.raises(InvariantViolation):
        c.on_committed()


def test_policy_is_validated() -> None:
    with pytest.raises(LocalError):
        CutPolicy(0, MIB, 1)
    with pytest.raises(LocalError):
        CutPolicy(10, limits.BLOCK_BYTES_MAX + 1, 1)
    with pytest.raises(LocalError):
        CutPolicy(10, MIB, 0)


events = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(4, 400_000)),
        st.tuples(st.just("tick"), st.just(0)),
        st.tuples(st.just("commit"), st.just(0)),
    ),
    max_size=200,
)


@settings(deadline=None, max_examples=200)
@given(events, st.integers(1, 5), st.integers(1, 4), st.integers(1, 3))
def test_every_transaction_is_cut_once_in_order(ev, max_txs, timeout, in_flight) -> None:
    c = cutter(
        max_txs=max_txs, max_bytes=limits.ENVELOPE_BYTES_MAX, timeout=timeout, in_flight=in_flight
    )
    added, cut = [], []
    for kind, size in ev:
        if kind == "add":
            t = len(added).to_bytes(4, "big") + bytes(size - 4)
            c.add(t)
            added.append(t)
        elif kind == "tick":
            c.tick()
        elif c.in_flight:
            c.on_committed()
        for block in c.take_ready():
            assert 0 < len(block) <= max_txs
            assert sum(map(len, block)) <= limits.ENVELOPE_BYTES_MAX or len(block) == 1
            cut.extend(block)
    for _ in range(timeout):
        c.tick()
    for block in c.take_ready():
        cut.extend(block)
    assert cut == added
