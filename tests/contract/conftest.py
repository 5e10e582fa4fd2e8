"""The backends every contract test runs against: MemoryKV and LevelDBKV in tmp_path.

``backend.reopen()`` stands for a process restart: LevelDB is closed and opened again from
disk; MemoryKV, which has no disk, hands back the same object (so stores rebuilt on it must
still recover their caches from the KV alone).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage.kv import KV
from storage.leveldb import LevelDBKV
from storage.memory import MemoryKV


@dataclass
class Backend:
    name: str
    kv: KV
    _reopen: Callable[[KV], KV]

    def reopen(self) -> KV:
        self.kv = self._reopen(self.kv)
        return self.kv


def _open_memory(_tmp: Path) -> Backend:
    return Backend("memory", MemoryKV(), lambda kv: kv)


def _open_leveldb(tmp: Path) -> Backend:
    path = tmp / "db"

    def reopen(kv: KV) -> KV:
        kv.close()
        return LevelDBKV(path, create_if_missing=False)

    return Backend("leveldb", LevelDBKV(path), reopen)


BACKENDS = {"memory": _open_memory, "leveldb": _open_leveldb}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    b = BACKENDS[request.param](tmp_path)
    yield b
    b.kv.close()


@pytest.fixture
def kv(backend: Backend) -> KV:
    return backend.kv
