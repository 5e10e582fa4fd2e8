"""The contracts every node installs, and the pins a new network's genesis gives them."""

from __future__ import annotations

from chaincode.api import Contract
from chaincode.contracts.registry import REVOKED, Registry
from chaincode.registry import ContractRegistry
from chaincode.runtime import StateReader
from protocol.config import ContractPin

BUILTIN_CONTRACTS: tuple[type[Contract], ...] = (Registry,)
REVOKED_END = REVOKED[:-1] + bytes([REVOKED[-1] + 1])  # just past every revoked/ key


def node_registry(*, entry_points: bool = True) -> ContractRegistry:
    """The built-in contracts and (unless told not to) those installed packages declare in
    the ``medledger.contracts`` entry-point group; ConfigError if one is unacceptable."""
    registry = ContractRegistry()
    for contract in BUILTIN_CONTRACTS:
        registry.register(contract, metered=False)  # node code: no step counting
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


def revoked_serials(state: StateReader) -> frozenset[int]:
    """The certificate serials the registry contract has revoked, from committed state."""
    return frozenset(
        int(key[len(REVOKED) :]) for key, _, _ in state.range(Registry.name, REVOKED, REVOKED_END)
    )
