"""WorldState contract, on both backends: versioned keys per namespace and the state hash.

Proves versions follow the last writer, deletes remove keys, namespaces never bleed into
each other (even when one name prefixes another), range bounds, that writes land only when
their batch commits, and that state_hash depends on content alone: same content gives the
same hash whatever the backend or write order, any change of key, value or version moves it.
"""

from __future__ import annotations

import pytest

from storage.kv import KV
from storage.memory import MemoryKV
from storage.state import Version, WorldState
from tests.contract.blocks_factory import delete, put


def apply(state: WorldState, writes: list, version: Version) -> None:  # type: ignore[type-arg]
    with state.kv.batch() as batch:
        state.apply(writes, version, batch)


def test_get_absent(kv: KV) -> None:
    assert WorldState(kv).get("records", b"k") is None


def test_versions_follow_the_last_writer(kv: KV) -> None:
    state = WorldState(kv)
    apply(state, [put("records", b"k", b"v1"), put("records", b"j", b"x")], Version(1, 0))
    assert state.get("records", b"k") == (b"v1", Version(1, 0))
    apply(state, [put("records", b"k", b"v2")], Version(3, 7))
    assert state.get("records", b"k") == (b"v2", Version(3, 7))
    assert state.get("records", b"j") == (b"x", Version(1, 0))


def test_empty_values_are_values(kv: KV) -> None:
    state = WorldState(kv)
    apply(state, [put("records", b"k", b"")], Version(0, 0))
    assert state.get("records", b"k") == (b"", Version(0, 0))


def test_delete_removes_the_key(kv: KV) -> None:
    state = WorldState(kv)
    apply(state, [put("records", b"k", b"v")], Version(1, 0))
    apply(state, [delete("records", b"k"), delete("records", b"never")], Version(2, 0))
    assert state.get("records", b"k") is None
    assert list(state.range("records")) == []


def test_namespaces_are_separate(kv: KV) -> None:
    state = WorldState(kv)
    apply(
        state,
        [put("ab", b"c", b"1"), put("a", b"bc", b"2"), put("a", b"", b"3"), put("", b"a", b"4")],
        Version(0, 0),
    )
    assert state.get("ab", b"c") == (b"1", Version(0, 0))
    assert state.get("a", b"bc") == (b"2", Version(0, 0))
    assert state.get("ab", b"") is None
    assert [k for k, _, _ in state.range("a")] == [b"", b"bc"]
    assert [k for k, _, _ in state.range("ab")] == [b"c"]
    assert [k for k, _, _ in state.range("")] == [b"a"]
    assert [k for k, _, _ in state.range("b")] == []


def test_unicode_namespaces(kv: KV) -> None:
    state = WorldState(kv)
    apply(state, [put("dossiers-médicaux", b"k", b"v")], Version(0, 1))
    assert list(state.range("dossiers-médicaux")) == [(b"k", b"v", Version(0, 1))]


def test_range_bounds_and_order(kv: KV) -> None:
    state = WorldState(kv)
    keys = [b"p/2", b"p/10", b"p/1", b"q", b"\xff", b""]
    apply(state, [put("records", k, k + b"!") for k in keys], Version(4, 2))
    everything = list(state.range("records"))
    assert [k for k, _, _ in everything] == sorted(keys)
    assert all(v == k + b"!" and ver == Version(4, 2) for k, v, ver in everything)
    assert [k for k, _, _ in state.range("records", b"p/", b"p0")] == [b"p/1", b"p/10", b"p/2"]
    assert [k for k, _, _ in state.range("records", b"p/10")] == [b"p/10", b"p/2", b"q", b"\xff"]
    assert [k for k, _, _ in state.range("records", stop=b"p/1")] == [b""]
    assert list(state.range("records", b"q", b"q")) == []


def test_writes_land_only_when_the_batch_commits(kv: KV) -> None:
    state = WorldState(kv)
    with pytest.raises(RuntimeError), kv.batch() as batch:
        state.apply([put("records", b"k", b"v")], Version(0, 0), batch)
        raise RuntimeError
    assert state.get("records", b"k") is None


CONTENT = [put("a", b"k1", b"v1"), put("a", b"k2", b"v2"), put("b", b"k1", b"")]


def test_state_hash_depends_on_content_only(kv: KV) -> None:
    reference = WorldState(MemoryKV())
    apply(reference, CONTENT, Version(1, 0))
    state = WorldState(kv)
    empty = state.state_hash()
    assert empty == WorldState(MemoryKV()).state_hash()
    # Same content reached another way: other order, extra key later deleted.
    apply(state, [CONTENT[2], put("a", b"zz", b"tmp")], Version(1, 0))
    apply(state, [CONTENT[1], CONTENT[0], delete("a", b"zz")], Version(1, 0))
    assert state.state_hash() == reference.state_hash()
    assert len(state.state_hash()) == 32
    assert state.state_hash() != empty


@pytest.mark.parametrize(
    ("writes", "version"),
    [
        ([put("a", b"k1", b"v1!")], Version(1, 0)),  # a value
        ([put("a", b"k1", b"v1")], Version(1, 1)),  # a version
        ([put("a", b"k1", b"v1")], Version(2, 0)),
        ([put("a", b"k3", b"")], Version(1, 0)),  # a new empty key
        ([delete("b", b"k1")], Version(1, 0)),  # a deleted key
    ],
)
def test_state_hash_moves_with_any_change(kv: KV, writes: list, version: Version) -> None:  # type: ignore[type-arg]
    state = WorldState(kv)
    apply(state, CONTENT, Version(1, 0))
    before = state.state_hash()
    apply(state, writes, version)
    assert state.state_hash() != before


def test_state_hash_is_unambiguous_about_boundaries(kv: KV) -> None:
    one = WorldState(kv)
    apply(one, [put("a", b"kv", b"")], Version(0, 0))
    other = WorldState(MemoryKV())
    apply(other, [put("a", b"k", b"v")], Version(0, 0))
    assert one.state_hash() != other.state_hash()
