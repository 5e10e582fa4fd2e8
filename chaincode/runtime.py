"""Simulating a contract call against committed state: what an endorser signs.

:func:`simulate` runs one contract function with a :class:`Context` over a
:class:`StateReader` (the committed world state; nothing is written to it) and returns a
:class:`Simulation`: status, message, result, the read set with the committed version of
every key read, the write set and the events. Reads of keys the call itself wrote see those
writes and are not recorded; reads and writes are sorted by key, so endorsers that read the
same state produce byte-identical responses.

Statuses: 200 done; 400 the contract refused (:class:`chaincode.api.ContractError`, its
message goes back to the client); 404 no such contract or function. Those are answers. A
call that cannot be answered raises :class:`SimulationRefused` and is not endorsed: it ran
past its step budget (lines of contract code executed, a deterministic count), raised
anything else, returned something other than bytes, or produced output over the protocol's
limits. Refusal messages name the kind of failure only, never a value, since arguments may
carry patient data. The node's built-in contracts (reviewed node code) run without the step
count, which took 31 of the 52 us of a registry call.

Range reads record the version of every key they returned; a key inserted into the range
later is not detected at validation (no phantom protection yet).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import Any, Protocol

from chaincode.api import Context, ContractError, Creator
from chaincode.registry import ContractRegistry
from protocol import limits
from protocol.errors import LocalError
from protocol.transaction import ContractEvent, KVRead, KVWrite, RwSet

STEP_BUDGET_DEFAULT = 200_000  # lines of contract code one call may execute


class SimulationRefused(LocalError):
    """The endorser will not endorse this call (budget, crash, bad or oversized output)."""


class SimulationTooCostly(SimulationRefused):
    """The call ran past its step budget or recursed too deeply: limits of where it ran, so
    a caller that gave it less room may run it again with more."""


class VersionLike(Protocol):
    block: int
    tx: int


class StateReader(Protocol):
    """Committed world state, read-only (storage.state.WorldState satisfies it)."""

    def get(self, namespace: str, key: bytes) -> tuple[bytes, VersionLike] | None: ...

    def range(
        self, namespace: str, start: bytes = b"", stop: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes, VersionLike]]: ...


@dataclass(frozen=True, slots=True)
class Invocation:
    """One proposal's call: contract, function, arguments and the facts it may use."""

    contract: str
    function: str
    args: tuple[bytes, ...]
    creator: Creator
    tx_id: bytes
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class Simulation:
    """What the call did (nothing of it is applied until the transaction commits)."""

    status: int
    message: str
    result: bytes
    rw_set: RwSet
    events: tuple[ContractEvent, ...]


def simulate(
    registry: ContractRegistry,
    call: Invocation,
    state: StateReader,
    *,
    step_budget: int = STEP_BUDGET_DEFAULT,
) -> Simulation:
    """Run *call* against *state*; see the module docstring for statuses and refusals."""
    registered = registry.get(call.contract)
    if registered is None:
        return _answer(404, f"no contract {call.contract!r}")
    method = registered.functions.get(call.function)
    if method is None:
        return _answer(404, f"contract {call.contract!r} has no function {call.function!r}")
    ctx = _Context(call, registered.name, state)
    budget = (
        _StepBudget(step_budget, registered.source_file)
        if registered.metered
        else contextlib.nullcontext()
    )
    try:
        with budget:
            result = method(registered.contract, ctx, *call.args)
    except ContractError as e:
        return _answer(400, str(e)[: limits.REASON_CHARS_MAX])
    except SimulationRefused:
        raise
    except _BudgetExceeded:
        raise SimulationTooCostly(f"ran past its budget of {step_budget} steps") from None
    except RecursionError:
        raise SimulationTooCostly("recursed too deeply") from None
    except Exception as e:  # a contract bug: its message may hold arguments, so not shown
        raise SimulationRefused(f"raised {type(e).__name__}") from None
    if type(result) is not bytes:
        raise SimulationRefused(f"returned {type(result).__name__}, not bytes")
    if len(result) > limits.RESULT_BYTES_MAX:
        raise SimulationRefused(f"result over {limits.RESULT_BYTES_MAX} bytes")
    return Simulation(200, "", result, ctx.rw_set(), tuple(ctx.events))


def _answer(status: int, message: str) -> Simulation:
    return Simulation(status, message, b"", RwSet(reads=(), writes=()), ())


def answer_text(status: int, message: str) -> str:
    """An answer other than 200 (the module docstring's statuses), worded for people."""
    if status == 400:
        return f"the contract refused it: {message}"
    if status == 404:
        return message  # names the missing contract or function
    return f"the contract answered {status}: {message}"


class _BudgetExceeded(BaseException):
    """Raised inside the contract's frames; BaseException so a bare ``except Exception``
    in the contract cannot swallow it."""


class _StepBudget:
    """Counts lines executed in frames of the contract's own source file (sys.settrace, on
    this thread only) and stops the call when the budget runs out."""

    def __init__(self, steps: int, source_file: str) -> None:
        self.left = steps
        self.source_file = source_file
        self._previous: Any = None

    def __enter__(self) -> None:
        self._previous = sys.gettrace()
        sys.settrace(self._on_call)

    def __exit__(self, *exc: object) -> None:
        sys.settrace(self._previous)

    def _on_call(self, frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_code.co_filename == self.source_file:
            return self._on_line
        return None

    def _on_line(self, frame: FrameType, event: str, arg: object) -> Any:
        if event == "line":
            self.left -= 1
            if self.left < 0:
                raise _BudgetExceeded
        return self._on_line


_DELETED = object()


class _Context(Context):
    """The Context of one simulated call: reads through to committed state, writes kept."""

    def __init__(self, call: Invocation, namespace: str, state: StateReader) -> None:
        self._call = call
        self._ns = namespace
        self._state = state
        self._reads: dict[bytes, KVRead] = {}
        self._writes: dict[bytes, bytes | object] = {}
        self.events: list[ContractEvent] = []

    @property
    def creator(self) -> Creator:
        return self._call.creator

    @property
    def tx_id(self) -> bytes:
        return self._call.tx_id

    @property
    def timestamp_ms(self) -> int:
        return self._call.timestamp_ms

    def get(self, key: bytes) -> bytes | None:
        _check_key(key)
        if key in self._writes:
            value = self._writes[key]
            return None if value is _DELETED else value  # type: ignore[return-value]
        found = self._state.get(self._ns, key)
        self._record(key, found[1] if found is not None else None)
        return None if found is None else found[0]

    def put(self, key: bytes, value: bytes) -> None:
        _check_key(key)
        if type(value) is not bytes:
            raise ContractError(f"a value must be bytes, not {type(value).__name__}")
        if len(value) > limits.STATE_VALUE_BYTES_MAX:
            raise SimulationRefused(f"a value over {limits.STATE_VALUE_BYTES_MAX} bytes")
        self._write(key, value)

    def delete(self, key: bytes) -> None:
        _check_key(key)
        self._write(key, _DELETED)

    def range(self, start: bytes, stop: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        _check_key(start, allow_empty=True)
        if stop is not None:
            _check_key(stop)
        merged: dict[bytes, bytes] = {}
        for key, value, version in self._state.range(self._ns, start, stop):
            if key not in self._writes:
                self._record(key, version)
            merged[key] = value
        for key, value in self._writes.items():
            if key >= start and (stop is None or key < stop):
                if value is _DELETED:
                    merged.pop(key, None)
                else:
                    merged[key] = value  # type: ignore[assignment]
        return iter(sorted(merged.items()))

    def emit(self, name: str, payload: bytes) -> None:
        if type(name) is not str or not 0 < len(name) <= limits.ID_CHARS_MAX:
            raise ContractError("an event name must be 1 to 64 characters")
        if type(payload) is not bytes or len(payload) > limits.RESULT_BYTES_MAX:
            raise SimulationRefused(
                f"an event payload must be bytes of at most {limits.RESULT_BYTES_MAX}"
            )
        if len(self.events) >= limits.EVENTS_MAX:
            raise SimulationRefused(f"more than {limits.EVENTS_MAX} events")
        self.events.append(ContractEvent(name=name, payload=payload))

    def rw_set(self) -> RwSet:
        writes = tuple(
            KVWrite(
                namespace=self._ns,
                key=key,
                value=b"" if value is _DELETED else value,  # type: ignore[arg-type]
                is_delete=value is _DELETED,
            )
            for key, value in sorted(self._writes.items(), key=lambda kv: kv[0])
        )
        reads = tuple(self._reads[key] for key in sorted(self._reads))
        return RwSet(reads=reads, writes=writes)

    def _record(self, key: bytes, version: VersionLike | None) -> None:
        if key in self._reads:
            return
        self._check_room()
        self._reads[key] = KVRead(
            namespace=self._ns,
            key=key,
            exists=version is not None,
            version_block=version.block if version is not None else 0,
            version_tx=version.tx if version is not None else 0,
        )

    def _write(self, key: bytes, value: bytes | object) -> None:
        if key not in self._writes:
            self._check_room()
        self._writes[key] = value

    def _check_room(self) -> None:
        if len(self._reads) + len(self._writes) >= limits.RW_SET_KEYS_MAX:
            raise SimulationRefused(f"reads and writes over {limits.RW_SET_KEYS_MAX} keys")


def _check_key(key: object, *, allow_empty: bool = False) -> None:
    if type(key) is not bytes:
        raise ContractError(f"a key must be bytes, not {type(key).__name__}")
    if not (allow_empty or key) or len(key) > limits.STATE_KEY_BYTES_MAX:
        raise ContractError(f"a key must be 1 to {limits.STATE_KEY_BYTES_MAX} bytes")


__all__: Sequence[str] = (
    "Invocation",
    "Simulation",
    "SimulationRefused",
    "StateReader",
    "simulate",
)
