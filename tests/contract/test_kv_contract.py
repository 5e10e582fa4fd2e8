"""The KV contract: what every backend (MemoryKV, LevelDBKV) must do, run against both.

Proves byte-order iteration with prefix/start/stop/reverse bounds, snapshot iterators,
all-or-nothing batches (including an exception inside the with-block), argument checks,
use-after-close, and (for LevelDB, through ``backend.reopen``) persistence across reopen.
"""

from __future__ import annotations

import pytest

from protocol.errors import LocalError
from storage.kv import KV, prefix_upper_bound
from tests.contract.conftest import Backend

KEYS = [
    b"", b"\x00", b"a", b"a\x00", b"a\xff", b"a\xff\xff", b"ab", b"abc", b"b", b"\xff", b"\xff\xff",
]  # fmt: skip


def fill(kv: KV, keys: list[bytes] = KEYS) -> None:
    for i, key in enumerate(reversed(keys)):
        kv.put(key, b"v%d" % i)


def keys_of(pairs: object) -> list[bytes]:
    return [k for k, _ in pairs]  # type: ignore[attr-defined]


def test_get_put_overwrite_delete(kv: KV) -> None:
    assert kv.get(b"k") is None
    kv.put(b"k", b"one")
    assert kv.get(b"k") == b"one"
    kv.put(b"k", b"two", sync=False)
    assert kv.get(b"k") == b"two"
    kv.delete(b"k")
    assert kv.get(b"k") is None
    kv.delete(b"k")  # deleting an absent key is fine
    kv.delete(b"never", sync=False)


def test_empty_values_and_binary_keys(kv: KV) -> None:
    kv.put(b"\x00\xff\x00", b"")
    assert kv.get(b"\x00\xff\x00") == b""
    assert list(kv.iterate()) == [(b"\x00\xff\x00", b"")]


def test_iteration_is_bytewise_key_order(kv: KV) -> None:
    fill(kv)
    assert keys_of(kv.iterate()) == sorted(KEYS)
    assert keys_of(kv.iterate(reverse=True)) == sorted(KEYS, reverse=True)


def test_values_come_with_their_keys(kv: KV) -> None:
    kv.put(b"x", b"1")
    kv.put(b"y", b"2")
    assert list(kv.iterate()) == [(b"x", b"1"), (b"y", b"2")]


@pytest.mark.parametrize(
    "prefix",
    [b"", b"a", b"a\xff", b"ab", b"\xff", b"\xff\xff", b"zz", b"\x00"],
)
def test_prefix_selects_exactly_the_keys_with_it(kv: KV, prefix: bytes) -> None:
    fill(kv)
    expected = sorted(k for k in KEYS if k.startswith(prefix))
    assert keys_of(kv.iterate(prefix)) == expected
    assert keys_of(kv.iterate(prefix, reverse=True)) == expected[::-1]


@pytest.mark.parametrize(
    ("prefix", "start", "stop"),
    [
        (b"", b"a", b"b"),
        (b"", None, b"ab"),
        (b"", b"ab", None),
        (b"a", b"a\x00", b"abc"),
        (b"a", b"", b"z"),  # bounds outside the prefix are clipped to it
        (b"a", b"a\xff", None),
        (b"", b"b", b"a"),  # empty: start after stop
        (b"", b"ab", b"ab"),  # empty: start == stop
        (b"a", b"b", None),  # empty: start past the prefix
        (b"\xff", b"\xff", b"\xff\xff\xff"),
    ],
)
def test_start_inclusive_stop_exclusive_within_prefix(
    kv: KV, prefix: bytes, start: bytes | None, stop: bytes | None
) -> None:
    fill(kv)
    expected = sorted(
        k
        for k in KEYS
        if k.startswith(prefix) and (start is None or k >= start) and (stop is None or k < stop)
    )
    assert keys_of(kv.iterate(prefix, start=start, stop=stop)) == expected
    assert keys_of(kv.iterate(prefix, start=start, stop=stop, reverse=True)) == expected[::-1]


def test_iteration_sees_a_snapshot_taken_at_the_call(kv: KV) -> None:
    fill(kv, [b"a", b"b", b"c"])
    it = kv.iterate()
    kv.put(b"bb", b"new")
    kv.delete(b"c")
    assert keys_of(it) == [b"a", b"b", b"c"]


def test_batch_commits_when_the_block_ends(kv: KV) -> None:
    kv.put(b"gone", b"x")
    with kv.batch() as batch:
        batch.put(b"a", b"1")
        batch.put(b"b", b"2")
        batch.delete(b"gone")
        assert kv.get(b"a") is None  # not visible before the batch commits
        assert kv.get(b"gone") == b"x"
    assert list(kv.iterate()) == [(b"a", b"1"), (b"b", b"2")]


def test_batch_operations_apply_in_order(kv: KV) -> None:
    with kv.batch(sync=False) as batch:
        batch.put(b"k", b"1")
        batch.delete(b"k")
        batch.put(b"j", b"1")
        batch.put(b"j", b"2")
    assert kv.get(b"k") is None
    assert kv.get(b"j") == b"2"


def test_exception_inside_batch_writes_nothing(kv: KV) -> None:
    kv.put(b"keep", b"old")
    with pytest.raises(RuntimeError, match="boom"), kv.batch() as batch:
        batch.put(b"new", b"1")
        batch.put(b"keep", b"overwritten")
        batch.delete(b"keep")
        raise RuntimeError("boom")
    assert list(kv.iterate()) == [(b"keep", b"old")]


def test_batch_cannot_be_used_after_its_block(kv: KV) -> None:
    with kv.batch() as batch:
        batch.put(b"a", b"1")
    with pytest.raises(LocalError):
        batch.put(b"b", b"2")
    with pytest.raises(LocalError):
        batch.delete(b"a")
    assert kv.get(b"a") == b"1"


@pytest.mark.parametrize("bad", ["text", bytearray(b"x"), 1, None])
def test_keys_and_values_must_be_bytes(kv: KV, bad: object) -> None:
    with pytest.raises(LocalError):
        kv.put(bad, b"v")  # type: ignore[arg-type]
    with pytest.raises(LocalError):
        kv.put(b"k", bad)  # type: ignore[arg-type]
    with pytest.raises(LocalError):
        kv.get(bad)  # type: ignore[arg-type]
    with pytest.raises(LocalError):
        kv.delete(bad)  # type: ignore[arg-type]
    with pytest.raises(LocalError), kv.batch() as batch:
        batch.put(b"k", b"v")
        batch.put(bad, b"v")  # type: ignore[arg-type]
    assert kv.get(b"k") is None
    if bad is not None:
        with pytest.raises(LocalError):
            kv.iterate(bad)  # type: ignore[arg-type]


def test_use_after_close_is_refused(backend: Backend) -> None:
    kv = backend.kv
    kv.put(b"k", b"v")
    kv.close()
    with pytest.raises(LocalError):
        kv.get(b"k")
    with pytest.raises(LocalError):
        kv.put(b"k", b"v")
    with pytest.raises(LocalError):
        kv.iterate()
    with pytest.raises(LocalError), kv.batch():
        pass


def test_data_survives_reopen(backend: Backend) -> None:
    kv = backend.kv
    kv.put(b"synced", b"1")
    kv.put(b"unsynced", b"2", sync=False)
    with kv.batch() as batch:
        batch.put(b"batched", b"3")
    kv.delete(b"synced")
    kv = backend.reopen()
    assert list(kv.iterate()) == [(b"batched", b"3"), (b"unsynced", b"2")]


def test_prefix_upper_bound() -> None:
    assert prefix_upper_bound(b"") is None
    assert prefix_upper_bound(b"\xff\xff") is None
    assert prefix_upper_bound(b"a") == b"b"
    assert prefix_upper_bound(b"a\xff") == b"b"
    assert prefix_upper_bound(b"\x00\x01\xff\xff") == b"\x00\x02"
