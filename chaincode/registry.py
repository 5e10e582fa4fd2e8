"""Contracts by name: the built-ins and third-party ones from the ``medledger.contracts``
entry-point group, each checked for determinism and identified by the hash of its source.

The network configuration pins every contract a network runs (name, version, code hash);
an endorser refuses to run a contract whose version or hash differs from the pin
(:meth:`ContractRegistry.pin_problem`), so every endorser runs the same code.
"""

from __future__ import annotations

import hashlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points

from chaincode.api import Contract
from chaincode.determinism import check_deterministic
from protocol import limits
from protocol.config import ContractPin
from protocol.errors import ConfigError

ENTRY_POINT_GROUP = "medledger.contracts"
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")


@dataclass(frozen=True, slots=True)
class Registered:
    """One contract ready to run."""

    name: str
    version: str
    code_hash: bytes  # sha256 of its module's source
    contract: Contract
    functions: dict[str, Callable[..., bytes]]
    source_file: str  # where its code lives (the runtime counts steps there)
    metered: bool = True  # run under the step budget (every contract but the built-ins)


class ContractRegistry:
    """The contracts this node can run, by name."""

    def __init__(self) -> None:
        self._by_name: dict[str, Registered] = {}

    def register(self, contract_class: type[Contract], *, metered: bool = True) -> Registered:
        """Check *contract_class* (name, version, functions, determinism of its module) and
        add it; ConfigError names what is wrong. Only the node's own built-in contracts are
        registered with *metered* False: they are reviewed node code, so the runtime runs
        them without counting steps (which costs more than a small call itself)."""
        if not (isinstance(contract_class, type) and issubclass(contract_class, Contract)):
            raise ConfigError(f"{contract_class!r} is not a Contract class")
        name, version = contract_class.name, contract_class.version
        for label, value in (("name", name), ("version", version)):
            if not (
                isinstance(value, str)
                and 0 < len(value) <= limits.ID_CHARS_MAX
                and set(value) <= ID_CHARS
            ):
                raise ConfigError(f"contract {label} {value!r} must be 1-64 of [a-z0-9-_.]")
        if name in self._by_name:
            raise ConfigError(f"contract {name!r} is registered twice")
        functions = contract_class.functions()
        if not functions:
            raise ConfigError(f"contract {name!r} has no functions")
        module = sys.modules.get(contract_class.__module__)
        if module is None:
            raise ConfigError(f"contract {name!r}: its module is not loaded")
        try:
            source = inspect.getsource(module)
            source_file = inspect.getsourcefile(module) or ""
        except (OSError, TypeError):
            raise ConfigError(f"contract {name!r}: its source cannot be read") from None
        check_deterministic(source, what=name)
        registered = Registered(
            name=name,
            version=version,
            code_hash=hashlib.sha256(source.encode("utf-8")).digest(),
            contract=contract_class(),
            functions=functions,
            source_file=source_file,
            metered=metered,
        )
        self._by_name[name] = registered
        return registered

    def get(self, name: str) -> Registered | None:
        return self._by_name.get(name)

    def names(self) -> list[str]:
        return sorted(self._by_name)

    def pin_problem(self, pin: ContractPin) -> str | None:
        """Why this node cannot run the contract *pin* names (None when it can)."""
        registered = self._by_name.get(pin.name)
        if registered is None:
            return f"contract {pin.name!r} is not installed on this node"
        if registered.version != pin.version:
            return f"contract {pin.name!r} is version {registered.version}, pinned {pin.version}"
        if registered.code_hash != pin.code_hash:
            return f"contract {pin.name!r} {pin.version}: its code differs from the pinned hash"
        return None

    def load_entry_points(self, group: str = ENTRY_POINT_GROUP) -> list[Registered]:
        """Register every contract class the installed packages declare in *group*."""
        loaded = []
        for ep in sorted(entry_points(group=group), key=lambda e: e.name):
            try:
                contract_class = ep.load()
            except Exception as e:
                raise ConfigError(f"contract entry point {ep.name!r} fails to load: {e}") from e
            loaded.append(self.register(contract_class))
        return loaded
