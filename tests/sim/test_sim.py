"""The seeded cluster simulation passes on 500 seeds, and its checkers catch real bugs.

Each seed runs a 3- or 5-node cluster through drops, duplicates, delays, partitions,
crash-restarts (some in the middle of a Ready, losing unsynced writes), compaction with
snapshot catch-up, and in some seeds membership changes and leadership transfers; the
checkers of checkers.py run after every step, then a calm phase checks liveness. A
quarter of the seeds (``LEDGER_SHARE``) also run in ledger mode: some proposals carry
blocks of endorsed transactions that every node validates and commits, and
ledger_checks.py compares the codes and world-state hashes of every peer after every
block (test_ledger_sim.py tests ledger mode itself). The deep run (10,000 seeds) is
``python -m tests.sim.run --seeds 10000``, with ``--ledger all`` for ledger mode in every
seed.

The last tests prove the checkers are not vacuous: with a deliberately broken core (a
voter that forgets its vote, a vote restriction that ignores logs) seeded runs fail.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from consensus.raft import core as raft_core
from consensus.raft import log as raft_log
from tests.sim.run import Simulation, main, replay_hint, run_seed, run_seeds

SEEDS = 500
CHUNKS = 10  # so pytest-xdist spreads the seeds over both cores


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_seeds(chunk: int) -> None:
    size = SEEDS // CHUNKS
    failed = run_seeds(chunk * size, size)
    report = [f"seed {s}: {v[0]} ({replay_hint(s)})" for s, v in sorted(failed.items())]
    assert not failed, "\n".join(report)


def test_a_seed_replays_identically() -> None:
    # Byte for byte without ledger mode: signed envelopes differ between runs (random
    # nonces), so ledger seeds replay their decisions instead (test_ledger_sim.py).
    first, second = Simulation(7, ledger="off"), Simulation(7, ledger="off")
    first.run()
    second.run()
    assert first.stats == second.stats
    assert first.checker.digests == second.checker.digests


def test_runner_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--seeds", "3", "--start", "40", "--jobs", "1"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "3 seeds, 0 violations"


@pytest.fixture
def forgetful_voter(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A node that forgets whom it voted for before every vote request: two leaders."""
    original = raft_core.RaftNode._handle_vote_request

    def handle(self: raft_core.RaftNode, msg: object) -> None:
        self.vote = ""
        self.leader = ""
        original(self, msg)  # type: ignore[arg-type]

    monkeypatch.setattr(raft_core.RaftNode, "_handle_vote_request", handle)
    yield


@pytest.fixture
def no_vote_restriction(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """§5.4.1 turned off: any log is "up to date", so leaders may lack committed entries."""
    monkeypatch.setattr(raft_log.RaftLog, "is_up_to_date", lambda self, i, t: True)
    yield


def _first_seed_failing_with(words: tuple[str, ...], seeds_max: int = 60) -> int | None:
    for seed in range(seeds_max):
        if any(word in v for v in run_seed(seed) for word in words):
            return seed
    return None


@pytest.mark.usefixtures("forgetful_voter")
def test_checkers_catch_a_double_vote() -> None:
    assert _first_seed_failing_with(("election safety",)) is not None


@pytest.mark.usefixtures("no_vote_restriction")
def test_checkers_catch_a_missing_vote_restriction() -> None:
    words = ("leader completeness", "commit disagreement", "state machine safety")
    assert _first_seed_failing_with(words) is not None
