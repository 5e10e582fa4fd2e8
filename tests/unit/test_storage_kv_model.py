"""MemoryKV and LevelDBKV agree with a plain dict model under random operations.

Hypothesis draws sequences of puts, deletes and batches (some aborted by an exception) over
a small key alphabet rich in 0x00/0xff edges, then random iterate() bounds; both backends
must give exactly what the sorted model gives. LevelDB is opened once per test and cleared
between examples.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.kv import KV
from storage.leveldb import LevelDBKV
from storage.memory import MemoryKV

keys = st.binary(max_size=3).map(lambda b: bytes(x % 3 * 0x7F for x in b))  # 0x00 0x7f 0xfe
keys = st.one_of(keys, st.sampled_from([b"\xff", b"\xff\xff", b"\x00\xff", b"\x7f\xff"]))
values = st.binary(max_size=4)
op = st.one_of(
    st.tuples(st.just("put"), keys, values),
    st.tuples(st.just("delete"), keys, st.just(b"")),
)
step = st.one_of(op, st.tuples(st.just("batch"), st.lists(op, max_size=5), st.booleans()))
query = st.tuples(keys, st.none() | keys, st.none() | keys, st.booleans())


class Abort(Exception):
    pass


def run(kv: KV, model: dict[bytes, bytes], steps: list) -> None:  # type: ignore[type-arg]
    for kind, *args in steps:
        if kind == "put":
            kv.put(args[0], args[1])
            model[args[0]] = args[1]
        elif kind == "delete":
            kv.delete(args[0])
            model.pop(args[0], None)
        else:
            ops, abort = args
            try:
                with kv.batch() as batch:
                    for op_kind, key, value in ops:
                        if op_kind == "put":
                            batch.put(key, value)
                        else:
                            batch.delete(key)
                    if abort:
                        raise Abort
            except Abort:
                continue
            for op_kind, key, value in ops:
                if op_kind == "put":
                    model[key] = value
                else:
                    model.pop(key, None)


def expected(model: dict[bytes, bytes], q: tuple) -> list[tuple[bytes, bytes]]:  # type: ignore[type-arg]
    prefix, start, stop, reverse = q
    pairs = sorted(
        (k, v)
        for k, v in model.items()
        if k.startswith(prefix) and (start is None or k >= start) and (stop is None or k < stop)
    )
    return pairs[::-1] if reverse else pairs


@pytest.fixture(scope="module")
def leveldb() -> Iterator[LevelDBKV]:
    with tempfile.TemporaryDirectory() as tmp:
        kv = LevelDBKV(tmp + "/db")
        yield kv
        kv.close()


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(step, max_size=25), queries=st.lists(query, min_size=1, max_size=8))
def test_backends_agree_with_a_dict(leveldb: LevelDBKV, steps: list, queries: list) -> None:  # type: ignore[type-arg]
    for key, _ in list(leveldb.iterate()):
        leveldb.delete(key, sync=False)
    for kv in (MemoryKV(), leveldb):
        model: dict[bytes, bytes] = {}
        run(kv, model, steps)
        for key in {k for k in model} | {b"", b"\xff"}:
            assert kv.get(key) == model.get(key)
        for q in queries:
            prefix, start, stop, reverse = q
            got = list(kv.iterate(prefix, start=start, stop=stop, reverse=reverse))
            assert got == expected(model, q), q
