"""The built-in contracts (chaincode.builtin): what every node installs and how a new
network's genesis pins them; a pin that does not match is reported, not ignored."""

from __future__ import annotations

from chaincode.builtin import BUILTIN_CONTRACTS, builtin_pins, node_registry
from protocol.codec import replace


def test_every_builtin_is_registered_and_pinned_by_its_source_hash() -> None:
    registry = node_registry(entry_points=False)
    assert registry.names() == sorted(c.name for c in BUILTIN_CONTRACTS) == ["registry"]
    for pin in builtin_pins():
        registered = registry.get(pin.name)
        assert registered is not None
        assert (pin.version, pin.code_hash) == (registered.version, registered.code_hash)
        assert registry.pin_problem(pin) is None


def test_a_pin_for_other_code_is_a_problem() -> None:
    registry = node_registry(entry_points=False)
    (pin,) = builtin_pins()
    other = replace(pin, code_hash=bytes(32))
    assert "differs from the pinned hash" in (registry.pin_problem(other) or "")


def test_a_node_warns_about_each_pinned_contract_it_cannot_run(caplog) -> None:
    from node.daemon import _check_contracts
    from protocol.config import ContractPin
    from tests.unit.endorsed_world import make_world

    (pin,) = builtin_pins()
    missing = ContractPin(name="records", version="1.0", code_hash=bytes(32))
    config = replace(make_world().config, contracts=(missing, pin))
    with caplog.at_level("WARNING", logger="medledger.node"):
        assert _check_contracts(config, node_registry(entry_points=False)) == 1
    [record] = [r for r in caplog.records if r.getMessage() == "contract.unavailable"]
    assert record.fields["contract"] == "records"  # type: ignore[attr-defined]
    assert "not installed" in record.fields["reason"]  # type: ignore[attr-defined]
