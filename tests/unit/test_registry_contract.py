"""The built-in registry contract, run through the real runtime over WorldState on MemoryKV:
register, enrol with the one-time secret, publish an encryption key, revoke; and every
refusal along the way. Each accepted call's writes are committed before the next call, as
a block would."""

from __future__ import annotations

import hashlib
import json

import pytest

from chaincode.api import Creator
from chaincode.contracts.registry import Registry
from chaincode.registry import ContractRegistry
from chaincode.runtime import Invocation, Simulation, simulate
from storage.memory import MemoryKV
from storage.state import Version, WorldState

SECRET = b"one-time enrolment secret"
ADMIN = Creator("northgate", "admin", "admin@northgate", 10, b"c")
OTHER_ADMIN = Creator("riverside", "admin", "admin@riverside", 11, b"c")
MINISTRY_ADMIN = Creator("ministry", "admin", "admin@ministry", 12, b"c")
DOCTOR = Creator("northgate", "doctor", "dr.7f3a", 42, b"c")


class Ledger:
    """A registry and a world state; commit() applies a simulation's writes like a block."""

    def __init__(self) -> None:
        self.registry = ContractRegistry()
        self.registry.register(Registry)
        self.kv = MemoryKV()
        self.state = WorldState(self.kv)
        self.block = 1

    def call(self, who: Creator, function: str, *args: bytes) -> Simulation:
        invocation = Invocation("registry", function, args, who, b"\x00" * 32, 1_000 * self.block)
        return simulate(self.registry, invocation, self.state)

    def commit(self, who: Creator, function: str, *args: bytes) -> dict[str, object]:
        sim = self.call(who, function, *args)
        assert sim.status == 200, sim.message
        with self.kv.batch() as batch:
            self.state.apply(sim.rw_set.writes, Version(self.block, 0), batch)
        self.block += 1
        return json.loads(sim.result)

    def refused(self, who: Creator, function: str, *args: bytes) -> str:
        sim = self.call(who, function, *args)
        assert sim.status == 400 and sim.rw_set.writes == (), sim
        return sim.message


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


def register_doctor(ledger: Ledger) -> None:
    digest = hashlib.sha256(SECRET).hexdigest().encode()
    ledger.commit(ADMIN, "register", b"dr.7f3a", b"doctor", digest)


def test_register_enrol_key_and_revoke(ledger: Ledger) -> None:
    register_doctor(ledger)
    shown = ledger.commit(ADMIN, "show", b"dr.7f3a")
    assert shown["status"] == "registered" and "secret_sha256" not in shown
    assert (shown["org_id"], shown["role"], shown["serial"]) == ("northgate", "doctor", None)
    enrolled = ledger.commit(DOCTOR, "enroll", SECRET)
    assert (enrolled["status"], enrolled["serial"]) == ("enrolled", 42)
    keyed = ledger.commit(DOCTOR, "set_encryption_key", b"\x04" + b"k" * 64)
    assert keyed["encryption_key"] == ("04" + "6b" * 64)
    assert ledger.commit(ADMIN, "revoked") == []  # type: ignore[comparison-overlap]
    revoked = ledger.commit(MINISTRY_ADMIN, "revoke", b"dr.7f3a")
    assert revoked["status"] == "revoked"
    assert ledger.commit(ADMIN, "revoked") == [42]  # type: ignore[comparison-overlap]


def test_registration_refusals(ledger: Ledger) -> None:
    digest = hashlib.sha256(SECRET).hexdigest().encode()
    assert "only an admin" in ledger.refused(DOCTOR, "register", b"x", b"doctor", digest)
    assert "role must be" in ledger.refused(ADMIN, "register", b"x", b"surgeon", digest)
    assert "subject id" in ledger.refused(ADMIN, "register", b"Jane Doe", b"doctor", digest)
    assert "64 lowercase hex" in ledger.refused(ADMIN, "register", b"x", b"doctor", b"abc")
    register_doctor(ledger)
    assert "already registered" in ledger.refused(ADMIN, "register", b"dr.7f3a", b"doctor", digest)


def test_enrolment_needs_the_secret_and_happens_once(ledger: Ledger) -> None:
    register_doctor(ledger)
    assert "does not match" in ledger.refused(DOCTOR, "enroll", b"guess")
    nurse_cert = Creator("northgate", "nurse", "dr.7f3a", 43, b"c")
    assert "organisation or role differs" in ledger.refused(nurse_cert, "enroll", SECRET)
    ledger.commit(DOCTOR, "enroll", SECRET)
    assert "is enrolled" in ledger.refused(DOCTOR, "enroll", SECRET)


def test_only_the_enrolled_certificate_sets_its_key(ledger: Ledger) -> None:
    register_doctor(ledger)
    assert "only the enrolled certificate" in ledger.refused(DOCTOR, "set_encryption_key", b"k")
    ledger.commit(DOCTOR, "enroll", SECRET)
    old_cert = Creator("northgate", "doctor", "dr.7f3a", 41, b"c")
    assert "only the enrolled certificate" in ledger.refused(old_cert, "set_encryption_key", b"k")


def test_revocation_is_for_the_same_organisation_or_the_ministry(ledger: Ledger) -> None:
    register_doctor(ledger)
    ledger.commit(DOCTOR, "enroll", SECRET)
    assert "same organisation or the ministry" in ledger.refused(OTHER_ADMIN, "revoke", b"dr.7f3a")
    assert "same organisation or the ministry" in ledger.refused(DOCTOR, "revoke", b"dr.7f3a")
    ledger.commit(ADMIN, "revoke", b"dr.7f3a")
    assert "already revoked" in ledger.refused(ADMIN, "revoke", b"dr.7f3a")
    assert "no identity" in ledger.refused(ADMIN, "revoke", b"nobody")


def test_the_registry_passes_the_determinism_check_and_is_pinnable() -> None:
    registered = ContractRegistry().register(Registry)
    assert (registered.name, registered.version) == ("registry", "1.0")
    assert len(registered.code_hash) == 32
