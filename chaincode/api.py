"""What a contract is and what it may touch: :class:`Contract`, :func:`function` and
:class:`Context`.

A contract is a class with a ``name``, a ``version`` and methods marked with
:func:`function`. Each such method is called as ``method(ctx, *args)`` with the proposal's
arguments (bytes) and returns bytes (the result). Through *ctx* it reads and writes keys of
its own namespace (the contract's name), learns who is calling (the creator's org, role and
id) and the transaction's id and timestamp (fixed by the proposal, never the clock), and
emits events. Nothing else: a contract does no I/O, reads no clock or randomness and uses
no floats, so every endorser computes the same response (:mod:`chaincode.determinism`
checks its source; :mod:`chaincode.runtime` bounds what it may do at run time).

A contract refuses a call by raising :class:`ContractError` with a message for the client.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeVar

from protocol.errors import RemoteError

F = TypeVar("F", bound=Callable[..., bytes])

_FUNCTION_MARK = "__medledger_contract_function__"


class ContractError(RemoteError):
    """A contract refused the call (bad arguments, not allowed, not found): the client's
    error, reported in the response with status 400 and this message."""


def function(method: F) -> F:
    """Mark a contract method as callable by proposals (its name is the function name)."""
    setattr(method, _FUNCTION_MARK, True)
    return method


class Contract:
    """Base class of contracts: set ``name`` and ``version``; mark methods with
    :func:`function`."""

    name: ClassVar[str] = ""
    version: ClassVar[str] = ""

    @classmethod
    def functions(cls) -> dict[str, Callable[..., bytes]]:
        """The callable functions by name (unbound methods)."""
        found: dict[str, Callable[..., bytes]] = {}
        for attr in dir(cls):
            value = getattr(cls, attr, None)
            if callable(value) and getattr(value, _FUNCTION_MARK, False):
                found[attr] = value
        return found


@dataclass(frozen=True, slots=True)
class Creator:
    """Who signed the proposal, as its validated certificate says."""

    org_id: str
    role: str
    subject_id: str
    serial: int  # the certificate's serial number (what a revocation names)
    cert_der: bytes


class Context(Protocol):
    """What a running contract function sees (implemented by :mod:`chaincode.runtime`)."""

    @property
    def creator(self) -> Creator: ...

    @property
    def tx_id(self) -> bytes: ...

    @property
    def timestamp_ms(self) -> int: ...

    def get(self, key: bytes) -> bytes | None:
        """The value of *key* in this contract's namespace (this call's own writes first)."""
        ...

    def put(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def range(self, start: bytes, stop: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for committed keys in ``[start, stop)`` in key order, with this
        call's own writes applied."""
        ...

    def emit(self, name: str, payload: bytes) -> None:
        """An event, delivered to listeners if and when the transaction commits."""
        ...
