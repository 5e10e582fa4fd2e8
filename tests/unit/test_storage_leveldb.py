"""Opening LevelDB: a missing database, a locked one (this process or another) and a path
that is not a directory each give a ConfigError naming the path and the reason."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from protocol.errors import ConfigError
from storage.errors import DatabaseLockedError
from storage.leveldb import LevelDBKV


def test_a_missing_database_without_create(tmp_path: Path) -> None:
    path = tmp_path / "absent"
    with pytest.raises(ConfigError, match="no LevelDB") as e:
        LevelDBKV(path, create_if_missing=False)
    assert str(path) in str(e.value)
    assert not path.exists()


def test_opening_the_same_database_twice_in_one_process(tmp_path: Path) -> None:
    first = LevelDBKV(tmp_path / "db")
    try:
        with pytest.raises(DatabaseLockedError, match="locked") as e:
            LevelDBKV(tmp_path / "db")
        assert str(tmp_path / "db") in str(e.value)
    finally:
        first.close()
    LevelDBKV(tmp_path / "db").close()  # free again once closed


def test_a_database_open_in_another_process(tmp_path: Path) -> None:
    path = tmp_path / "db"
    LevelDBKV(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, plyvel; db = plyvel.DB(sys.argv[1]); print('open', flush=True); "
            "sys.stdin.read()",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == b"open\n"
        with pytest.raises(DatabaseLockedError, match=r"locked.*another process"):
            LevelDBKV(path)
    finally:
        assert holder.stdin is not None
        holder.stdin.close()  # the holder reads EOF and exits
        holder.wait(timeout=10)
        holder.stdout.close()  # type: ignore[union-attr]
    LevelDBKV(path).close()


def test_a_path_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("not a database")
    with pytest.raises(ConfigError, match="Not a directory") as e:
        LevelDBKV(path)
    assert str(path) in str(e.value)
    assert "locked" not in str(e.value)


def test_close_is_idempotent(tmp_path: Path) -> None:
    kv = LevelDBKV(tmp_path / "db")
    kv.close()
    kv.close()
    assert kv.closed
