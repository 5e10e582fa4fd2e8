"""VaultStore contract, on both backends: content-addressed records, the size limit, erasure.

Proves cid = sha256(record), idempotent puts, deletes that report whether anything was
there, cid iteration order, the RECORD_BYTES_MAX limit at and just past the boundary (a
refused record stores nothing), persistence across reopen, and corruption reported.
"""

from __future__ import annotations

import hashlib

import pytest

from protocol import limits
from protocol.errors import OversizeError
from storage import schema
from storage.errors import CorruptionError
from storage.kv import KV
from storage.vault import VaultStore
from tests.contract.conftest import Backend


def test_put_get_contains_delete(kv: KV) -> None:
    vault = VaultStore(kv)
    cid = vault.put(b"encrypted record")
    assert cid == hashlib.sha256(b"encrypted record").digest()
    assert vault.get(cid) == b"encrypted record"
    assert cid in vault
    assert vault.put(b"encrypted record") == cid
    assert vault.delete(cid) is True
    assert vault.delete(cid) is False
    assert vault.get(cid) is None
    assert cid not in vault
    assert "not a cid" not in vault


def test_empty_record(kv: KV) -> None:
    vault = VaultStore(kv)
    cid = vault.put(b"")
    assert vault.get(cid) == b""


def test_iter_cids_in_byte_order(kv: KV) -> None:
    vault = VaultStore(kv)
    cids = [vault.put(b"record %d" % i) for i in range(10)]
    assert list(vault.iter_cids()) == sorted(cids)


def test_records_up_to_the_limit(kv: KV) -> None:
    vault = VaultStore(kv)
    biggest = b"\x5a" * limits.RECORD_BYTES_MAX
    cid = vault.put(biggest)
    assert vault.get(cid) == biggest
    with pytest.raises(OversizeError, match=str(limits.RECORD_BYTES_MAX)):
        vault.put(biggest + b"!")
    assert list(vault.iter_cids()) == [cid]


def test_records_survive_reopen(backend: Backend) -> None:
    cid = VaultStore(backend.kv).put(b"kept")
    assert VaultStore(backend.reopen()).get(cid) == b"kept"


def test_a_damaged_record_is_reported_not_served(kv: KV) -> None:
    vault = VaultStore(kv)
    cid = vault.put(b"original")
    kv.put(schema.vault_key(cid), b"tampered")
    with pytest.raises(CorruptionError):
        vault.get(cid)
