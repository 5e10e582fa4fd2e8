"""The contracts every node installs, and the pins a new network's genesis gives them."""

from __future__ import annotations

from chaincode.api import Contract
from chaincode.contracts.registry import Registry
from chaincode.registry import ContractRegistry
from protocol.config import ContractPin

BUILTIN_CONTRACTS: tuple[type[Contract], ...] = (Registry,)


def node_registry(*, entry_points: bool = True) -> ContractRegistry:
    """The built-in contracts and (unless told not to) those installed packages declare in
    the ``medledger.contracts`` entry-point group; ConfigError if one is unacceptable."""
    registry = ContractRegistry()
    for contract in BUILTIN_CONTRACTS:
        registry.register(contract)
    if entry_points:
        registry.load_entry_points()
    return registry


def builtin_pins() -> tuple[ContractPin, ...]:
    """Name, version and code hash of each built-in contract, sorted by name."""
    registry = node_registry(entry_points=False)
    pins = []
    for name in registry.names():
        registered = registry.get(name)
        if registered is not None:
            pins.append(
                ContractPin(name=name, version=registered.version, code_hash=registered.code_hash)
            )
    return tuple(pins)
