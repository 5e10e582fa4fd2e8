"""Limits: the relations between them hold, and breaking one stops the process at import.

``protocol.limits.check_relations`` runs on the module's own values when it is imported; here
it runs on patched copies, one per relation, each of which must raise InvariantViolation
naming the broken relation. A last check reloads the module with a broken value in its
source to show the import itself fails.
"""

from __future__ import annotations

import importlib.util

import pytest

from protocol import limits
from protocol.errors import InvariantViolation

VALUES = {k: v for k, v in vars(limits).items() if k.isupper()}


def test_the_shipped_limits_satisfy_every_relation() -> None:
    limits.check_relations(VALUES)


def test_limit_names_are_positive_ints() -> None:
    for name, value in VALUES.items():
        assert type(value) is int and value > 0, name


@pytest.mark.parametrize(
    ("patch", "relation"),
    [
        ({"ENVELOPE_BYTES_MAX": limits.BLOCK_BYTES_MAX + 1}, "an envelope fits in a block"),
        ({"BLOCK_FRAMING_BYTES_MAX": limits.MESSAGE_BYTES_MAX}, "a block fits in a frame"),
        ({"CONFIG_BYTES_MAX": limits.BLOCK_BYTES_MAX + 1}, "configuration fits in the genesis"),
        ({"ORGS_MAX": 1_000}, "org CAs, their CRLs and member certificates"),
        ({"RECORD_BYTES_MAX": limits.MESSAGE_BYTES_MAX}, "a record fits in a frame"),
        ({"ENDORSEMENTS_MAX": limits.MEMBERS_MAX - 1}, "every member can endorse"),
        ({"CERTIFICATE_BYTES_MAX": 32 * limits.KIB}, "org CAs, their CRLs and member certificates"),
        ({"CRL_BYTES_MAX": 16 * limits.KIB}, "org CAs, their CRLs and member certificates"),
        ({"ENDORSEMENTS_MAX": 1_000, "MEMBERS_MAX": 1}, "endorsements fits in an envelope"),
    ],
)
def test_breaking_a_relation_raises_invariant_violation(patch: dict, relation: str) -> None:
    with pytest.raises(InvariantViolation, match=relation):
        limits.check_relations({**VALUES, **patch})


def test_a_broken_relation_fails_the_import() -> None:
    # Run the module's own source with one value broken, as an edit to the file would.
    spec = importlib.util.find_spec("protocol.limits")
    assert spec is not None and spec.loader is not None
    source = spec.loader.get_source("protocol.limits")  # type: ignore[attr-defined]
    assert source is not None
    broken = source.replace("\nENVELOPE_BYTES_MAX = 1 * MIB", "\nENVELOPE_BYTES_MAX = 9 * MIB")
    assert broken != source
    with pytest.raises(InvariantViolation, match="an envelope fits in a block"):
        exec(compile(broken, "protocol/limits.py", "exec"), {"__name__": "limits_broken"})
