"""Scenario scripts replay with exactly their golden output.

Each file under tests/sim/scenarios/ is a story in commands (election, replication,
check-quorum, pre-vote, snapshot catch-up, learner promotion, leadership transfer) with the
expected output after each command; a change in behaviour shows up as a readable diff.
Set MEDLEDGER_REWRITE_GOLDEN=1 to accept new output (then review the diff).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sim.scenario import parse, render, run_file

SCENARIOS = sorted((Path(__file__).parent / "scenarios").glob("*.txt"))


def test_there_are_scenarios_for_each_feature() -> None:
    names = {p.stem for p in SCENARIOS}
    assert {"election", "replication", "checkquorum", "snapshot", "learner", "transfer"} <= names


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_scenario(path: Path) -> None:
    for block, actual in run_file(path):
        expected = "\n".join(block.expected)
        got = "\n".join(actual)
        assert got == expected, f"{path.name}:{block.line}: {block.command}"


def test_parse_and_render_round_trip() -> None:
    for path in SCENARIOS:
        text = path.read_text(encoding="utf-8")
        blocks, trailing = parse(text)
        assert render(blocks, trailing) == text, path.name
