"""Named failpoints: make the node exit at an exact instant, to test crash recovery; and
a switch that makes an endorser lie, to test the quorum with real processes.

Set ``MEDLEDGER_FAILPOINTS`` to a comma-separated list of ``NAME`` or ``NAME=N`` (exit on the
N-th hit, default 1), e.g. ``raft-after-fsync=3,block-before-state``. When a failpoint fires
the process ends at once with exit code :data:`FAILPOINT_EXIT_CODE` through ``os._exit``:
no cleanup, no flush — as close to a power cut as a test can get without one. Unset, every
failpoint is a dictionary lookup that finds nothing.
"""

from __future__ import annotations

import os
import sys

ENV_VAR = "MEDLEDGER_FAILPOINTS"
FAILPOINT_EXIT_CODE = 86

# Every failpoint the node has; a name not listed here is a configuration error.
NAMES = frozenset(
    {
        "raft-before-fsync",  # Ready's hard state and entries are about to be synced
        "raft-after-fsync",  # ... synced, messages not yet sent
        "block-before-commit",  # a committed entry's block is about to be written
        "block-after-commit",  # the block and its state are written, not yet acknowledged
        "snapshot-mid-write",  # a snapshot is being written locally
        "snapshot-mid-install",  # a received snapshot is half installed (blocks pulled)
    }
)


def parse(spec: str) -> dict[str, int]:
    """``NAME[=N],...`` into {name: hit number}; ValueError naming a bad part."""
    armed: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, count = part.partition("=")
        if name not in NAMES:
            raise ValueError(f"unknown failpoint {name!r} (known: {', '.join(sorted(NAMES))})")
        hits = int(count) if count else 1
        if hits < 1:
            raise ValueError(f"failpoint {name}: the hit number must be at least 1")
        armed[name] = hits
    return armed


_armed: dict[str, int] = parse(os.environ.get(ENV_VAR, ""))


def hit(name: str) -> None:
    """Pass failpoint *name*: exit the process here if it is armed and this is its hit."""
    if not _armed:
        return
    remaining = _armed.get(name)
    if remaining is None:
        return
    if remaining <= 1:
        sys.stderr.write(f"failpoint {name} fired\n")
        sys.stderr.flush()
        os._exit(FAILPOINT_EXIT_CODE)
    _armed[name] = remaining - 1


# ``MEDLEDGER_FAULT_ENDORSER=result`` makes this node's endorser sign a different result
# (a lying hospital); ``=signature`` makes it send a forged signature. Tests only.
ENDORSER_FAULT_ENV = "MEDLEDGER_FAULT_ENDORSER"
ENDORSER_FAULTS = ("", "result", "signature")


def endorser_fault() -> str:
    """The endorser fault this process was started with ("" for none); ValueError if unknown."""
    fault = os.environ.get(ENDORSER_FAULT_ENV, "")
    if fault not in ENDORSER_FAULTS:
        raise ValueError(f"{ENDORSER_FAULT_ENV} must be one of result, signature")
    return fault
