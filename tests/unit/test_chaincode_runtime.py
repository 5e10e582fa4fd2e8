"""The contract runtime (chaincode.runtime), registry and determinism check.

Simulation runs against the real WorldState on MemoryKV: reads record committed versions,
writes stay in the write set, the committed state is never touched, and every failure
mode of a contract becomes a 400/404 answer or a refusal that names no value.
"""

from __future__ import annotations

import hashlib
import inspect

import pytest

from chaincode.api import Contract, Creator, function
from chaincode.builtin import node_registry
from chaincode.determinism import determinism_problems
from chaincode.registry import ContractRegistry
from chaincode.runtime import Invocation, SimulationRefused, answer_text, simulate
from protocol.config import ContractPin
from protocol.errors import ConfigError
from protocol.transaction import KVWrite
from storage.memory import MemoryKV
from storage.state import Version, WorldState
from tests.unit.contracts_fixture import ledger_counter

CREATOR = Creator(
    org_id="northgate", role="doctor", subject_id="dr.who", serial=7, cert_der=b"cert"
)


@pytest.fixture
def registry() -> ContractRegistry:
    reg = ContractRegistry()
    reg.register(ledger_counter.Counter)
    return reg


@pytest.fixture
def state() -> WorldState:
    kv = MemoryKV()
    world = WorldState(kv)
    with kv.batch() as batch:
        world.apply(
            [
                KVWrite(namespace="counter", key=b"a", value=b"5", is_delete=False),
                KVWrite(namespace="counter", key=b"b", value=b"7", is_delete=False),
                KVWrite(namespace="other", key=b"a", value=b"x", is_delete=False),
            ],
            Version(3, 1),
            batch,
        )
    return world


def call(function_name: str, *args: bytes, contract: str = "counter") -> Invocation:
    return Invocation(contract, function_name, args, CREATOR, b"\x01" * 32, 1_700_000_000_000)


def test_a_call_records_what_it_read_and_wrote_and_changes_nothing(registry, state) -> None:
    before = state.state_hash()
    sim = simulate(registry, call("add", b"a", b"10"), state)
    assert (sim.status, sim.result) == (200, b"15")
    [read] = sim.rw_set.reads
    assert (read.key, read.exists, read.version_block, read.version_tx) == (b"a", True, 3, 1)
    [write] = sim.rw_set.writes
    assert (write.namespace, write.key, write.value, write.is_delete) == (
        "counter",
        b"a",
        b"15",
        False,
    )
    assert [(e.name, e.payload) for e in sim.events] == [("added", b"a")]
    assert state.state_hash() == before


def test_reading_an_absent_key_records_that_it_was_absent(registry, state) -> None:
    sim = simulate(registry, call("add", b"new", b"1"), state)
    [read] = sim.rw_set.reads
    assert (read.key, read.exists, read.version_block) == (b"new", False, 0)


def test_own_writes_are_read_back_without_a_read_record(registry, state) -> None:
    sim = simulate(registry, call("move", b"a", b"z"), state)
    assert sim.result == b"5"
    assert [r.key for r in sim.rw_set.reads] == [b"a"]  # z was our own write
    assert [(w.key, w.is_delete) for w in sim.rw_set.writes] == [(b"a", True), (b"z", False)]


def test_ranges_merge_own_writes_and_record_versions(registry, state) -> None:
    sim = simulate(registry, call("listing", b"a", b"c"), state)
    assert sim.result == b"a=5,b=7"
    assert [r.key for r in sim.rw_set.reads] == [b"a", b"b"]


def test_the_same_call_gives_byte_identical_results(registry, state) -> None:
    first = simulate(registry, call("move", b"b", b"a"), state)
    assert simulate(registry, call("move", b"b", b"a"), state) == first


def test_the_creator_and_timestamp_come_from_the_proposal(registry, state) -> None:
    sim = simulate(registry, call("whoami"), state)
    assert sim.result == b"northgate/doctor/dr.who/1700000000000"


def test_a_refusal_is_an_answer_with_the_contracts_message(registry, state) -> None:
    sim = simulate(registry, call("add", b"a", b"ten"), state)
    assert (sim.status, sim.message, sim.rw_set.writes) == (
        400,
        "amount must be a whole number",
        (),
    )


def test_unknown_contracts_and_functions_are_404(registry, state) -> None:
    assert simulate(registry, call("add", contract="nope"), state).status == 404
    assert simulate(registry, call("nope"), state).status == 404


def test_a_loop_runs_out_of_steps_and_the_runtime_stays_usable(registry, state) -> None:
    with pytest.raises(SimulationRefused, match="budget of 5000 steps"):
        simulate(registry, call("spin"), state, step_budget=5_000)
    assert simulate(registry, call("add", b"a", b"1"), state).status == 200


def test_a_crash_is_refused_without_its_message(registry, state) -> None:
    with pytest.raises(SimulationRefused) as caught:
        simulate(registry, call("crash", b"Jane Doe 1970-01-01"), state)
    assert str(caught.value) == "raised ValueError"


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("not_bytes", "returned str, not bytes"),
        ("huge", "result over 65536 bytes"),
        ("many_events", "more than 16 events"),
    ],
)
def test_bad_or_oversized_output_is_refused(registry, state, name: str, words: str) -> None:
    with pytest.raises(SimulationRefused, match=words):
        simulate(registry, call(name), state)


def test_wrong_argument_count_is_refused(registry, state) -> None:
    with pytest.raises(SimulationRefused, match="raised TypeError"):
        simulate(registry, call("add", b"a"), state)


# --- registry ----------------------------------------------------------------------------------


def test_the_registry_pins_version_and_code_hash(registry) -> None:
    registered = registry.get("counter")
    assert registered is not None
    source = inspect.getsource(ledger_counter).encode()
    assert registered.code_hash == hashlib.sha256(source).digest()
    good = ContractPin(name="counter", version="1.0", code_hash=registered.code_hash)
    assert registry.pin_problem(good) is None
    assert "version 1.0, pinned 2.0" in registry.pin_problem(
        ContractPin(name="counter", version="2.0", code_hash=registered.code_hash)
    )
    assert "differs from the pinned hash" in registry.pin_problem(
        ContractPin(name="counter", version="1.0", code_hash=b"\x00" * 32)
    )
    assert "not installed" in registry.pin_problem(
        ContractPin(name="records", version="1.0", code_hash=b"\x00" * 32)
    )


def test_the_registry_refuses_non_deterministic_and_malformed_contracts() -> None:
    from tests.unit.contracts_fixture import sneaky

    reg = ContractRegistry()
    with pytest.raises(ConfigError, match="imports random") as caught:
        reg.register(sneaky.Sneaky)
    assert "imports time" in str(caught.value)
    reg.register(ledger_counter.Counter)
    with pytest.raises(ConfigError, match="registered twice"):
        reg.register(ledger_counter.Counter)

    class NoFunctions(Contract):
        name = "empty"
        version = "1"

    with pytest.raises(ConfigError, match="no functions"):
        reg.register(NoFunctions)

    class BadName(Contract):
        name = "Bad Name"
        version = "1"

        @function
        def f(self, ctx: object) -> bytes:
            return b""

    with pytest.raises(ConfigError, match="must be 1-64"):
        reg.register(BadName)


def test_no_entry_points_means_nothing_loaded() -> None:
    assert ContractRegistry().load_entry_points("medledger.no-such-group") == []


# --- determinism rules -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("import os", "imports os"),
        ("from datetime import datetime", "imports from datetime"),
        ("from . import x", "relative imports"),
        ("x = open('f')", "uses open"),
        ("print(1)", "uses print"),
        ("h = hash(b'x')", "uses hash"),
        ("x = 1.5", "float literal"),
        ("x = 3 / 2", "divides with /"),
        ("x = 3\nx /= 2", "divides with /"),
        ("x = ().__class__", "touches __class__"),
        ("y = getattr(object, 'x')", "uses getattr"),
        ("try:\n    pass\nexcept:\n    pass", "catches everything"),
        ("try:\n    pass\nexcept BaseException:\n    pass", "catches everything"),
        ("def (:", "does not parse"),
    ],
)
def test_each_determinism_rule(source: str, words: str) -> None:
    problems = determinism_problems(source)
    assert any(words in p for p in problems), problems


def test_plain_integer_code_passes() -> None:
    source = "import json\nfrom hashlib import sha256\nx = 7 // 2\ny = sorted({'a': 1})\n"
    assert determinism_problems(source) == []


def test_an_unmetered_contract_runs_without_counting_steps(state) -> None:
    metered, unmetered = ContractRegistry(), ContractRegistry()
    metered.register(ledger_counter.Counter)
    unmetered.register(ledger_counter.Counter, metered=False)
    with pytest.raises(SimulationRefused, match="budget of 1 steps"):
        simulate(metered, call("add", b"a", b"1"), state, step_budget=1)
    assert simulate(unmetered, call("add", b"a", b"1"), state, step_budget=1).status == 200


def test_only_the_nodes_built_in_contracts_run_unmetered() -> None:
    builtins = node_registry(entry_points=False)
    assert builtins.names() and all(
        not builtins.get(name).metered  # type: ignore[union-attr]
        for name in builtins.names()
    )
    assert ContractRegistry().register(ledger_counter.Counter).metered


def test_answers_other_than_200_are_worded_for_people() -> None:
    """What the gateway and `tx query` print: no bare status codes in front of the reason."""
    assert answer_text(400, "no identity dr.x1") == "the contract refused it: no identity dr.x1"
    assert answer_text(404, "no contract 'x'") == "no contract 'x'"
    assert answer_text(500, "odd") == "the contract answered 500: odd"
