"""The key layout and schema version: one prefix per region, numeric key order, and a
database of another schema version (or a foreign one) refused with a ConfigError."""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.errors import ConfigError
from storage import schema
from storage.leveldb import LevelDBKV
from storage.memory import MemoryKV


def test_prefixes_are_distinct_and_none_prefixes_another() -> None:
    prefixes = list(schema.PREFIXES.values())
    assert len(set(prefixes)) == len(prefixes)
    for a in prefixes:
        assert 1 <= len(a) <= 2
        assert not any(b != a and b.startswith(a) for b in prefixes)


def test_integer_keys_iterate_in_numeric_order() -> None:
    numbers = [0, 1, 9, 10, 255, 256, 2**32, 2**64 - 1]
    assert sorted(schema.block_key(n) for n in numbers) == [schema.block_key(n) for n in numbers]
    assert sorted(schema.raft_entry_key(n) for n in numbers) == [
        schema.raft_entry_key(n) for n in numbers
    ]


def test_state_keys_of_different_namespaces_never_collide() -> None:
    assert schema.state_key("ab", b"c") != schema.state_key("a", b"bc")
    assert not schema.state_key("ab", b"").startswith(schema.state_prefix("a"))
    full = schema.state_key("dossiers-médicaux", b"\x00k")
    assert schema.split_state_key(full) == ("dossiers-médicaux", b"\x00k")


def test_an_empty_database_is_stamped() -> None:
    kv = MemoryKV()
    schema.check_schema(kv)
    assert kv.get(schema.SCHEMA_VERSION_KEY) == schema.U32.pack(schema.SCHEMA_VERSION)
    schema.check_schema(kv)  # and accepted afterwards
    assert len(kv) == 1


def test_another_schema_version_is_refused(tmp_path: Path) -> None:
    kv = LevelDBKV(tmp_path / "db")
    kv.put(schema.SCHEMA_VERSION_KEY, schema.U32.pack(schema.SCHEMA_VERSION + 1))
    with pytest.raises(ConfigError, match=rf"schema version {schema.SCHEMA_VERSION + 1}") as e:
        schema.open_store(kv)
    assert str(tmp_path / "db") in str(e.value)
    assert "written by a newer medledger" in str(e.value)
    kv.close()


def test_an_older_schema_version_says_how_to_go_on(tmp_path: Path) -> None:
    kv = LevelDBKV(tmp_path / "db")
    kv.put(schema.SCHEMA_VERSION_KEY, schema.U32.pack(schema.SCHEMA_VERSION - 1))
    with pytest.raises(ConfigError, match="written by an older medledger") as e:
        schema.open_store(kv)
    assert "start a new network in another directory" in str(e.value)
    kv.close()


def test_a_malformed_version_record_is_refused() -> None:
    kv = MemoryKV()
    kv.put(schema.SCHEMA_VERSION_KEY, b"\x01")
    with pytest.raises(ConfigError, match="malformed"):
        schema.check_schema(kv)


def test_data_without_a_version_is_refused() -> None:
    kv = MemoryKV()
    kv.put(b"foreign", b"data")
    with pytest.raises(ConfigError, match="no schema version"):
        schema.check_schema(kv)
    assert kv.get(schema.SCHEMA_VERSION_KEY) is None
