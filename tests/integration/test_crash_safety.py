"""A node killed at any instant reopens to a consistent store (DESIGN.md, Storage).

A child process (crash_writer.py) commits blocks with their state writes through
commit_block on LevelDB; the parent SIGKILLs it at random moments, seeded (sometimes while
it is still opening the database), then reopens and checks: the block heights are
contiguous, the hash chain and its indexes are intact, every block present has all of its
state writes and no absent block has any. Then it starts the writer again on the same
database. Blocks verified after one kill are re-verified only at the end, keeping each
check proportional to what the last run wrote. Every failure message carries the seed;
rerun one with MEDLEDGER_CRASH_SEED=<seed>.
"""

from __future__ import annotations

import os
import random
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from protocol.block import GENESIS_PREVIOUS_HASH, tx_ids_of
from storage import schema
from storage.leveldb import LevelDBKV
from storage.state import Version
from tests.integration import crash_writer as writer

KILLS = 24
READY_TIMEOUT_S = 20.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def _spawn(db: Path, seed: int, stderr_path: Path) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    with stderr_path.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, str(Path(writer.__file__)), str(db), str(seed)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            cwd=REPO_ROOT,
            env=env,
        )


def _wait_ready(child: subprocess.Popen[bytes], why: str) -> None:
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], READY_TIMEOUT_S)
    line = child.stdout.readline() if ready else b""
    assert line == b"ready\n", f"{why}: writer not ready (got {line!r}, exit {child.poll()})"


def _problems(db: Path, verified_height: int = 0) -> tuple[int, list[str]]:
    """Reopen the store and list every inconsistency found (empty: consistent).

    Blocks below *verified_height* were checked after an earlier kill and are skipped; the
    block before it is re-checked so the chain links up. verified_height=0 checks everything.
    """
    if not (db / "CURRENT").is_file():
        # Killed before LevelDB created the database: nothing was written, nothing to check.
        return 0, []
    kv = LevelDBKV(db, create_if_missing=False)
    try:
        stores = schema.open_store(kv)
        blocks, state = stores.blocks, stores.state
        height = blocks.height
        problems: list[str] = []
        start = max(0, min(verified_height, height) - 1)
        block_keys = [k for k, _ in kv.iterate(schema.BLOCK, start=schema.block_key(start))]
        if block_keys != [schema.block_key(n) for n in range(start, height)]:
            problems.append(f"block numbers not contiguous {start}..{height - 1}")
        start_block = blocks.get(start - 1) if start > 0 else None
        previous = GENESIS_PREVIOUS_HASH if start_block is None else start_block.hash()
        for expected, block in enumerate(blocks.iter_blocks(start), start=start):
            if block.number != expected or block.header.previous_hash != previous:
                problems.append(f"hash chain broken at block {expected}")
            if blocks.get_by_hash(block.hash()) != block:
                problems.append(f"hash index misses block {expected}")
            for index, tx_id in enumerate(tx_ids_of(block)):
                if blocks.locate_tx(tx_id) != (expected, index):
                    problems.append(f"tx index misses block {expected} tx {index}")
            previous = block.hash()
        if previous != (blocks.tip_hash or GENESIS_PREVIOUS_HASH):
            problems.append("tip hash is not the last block's hash")

        ns = writer.NAMESPACE
        expected_writes = [
            (writer.block_key(number, i), writer.value_of(number), Version(number, 0))
            for number in range(start, height)
            for i in range(writer.KEYS_PER_BLOCK)
        ]
        got_writes = list(state.range(ns, writer.block_key(start, 0), b"block0"))
        if got_writes != expected_writes:
            missing = sorted(set(expected_writes) - set(got_writes))[:3]
            stray = sorted(set(got_writes) - set(expected_writes))[:3]
            problems.append(f"at height {height} block writes missing {missing}, stray {stray}")
        last = state.get(ns, b"last")
        expected_last = None if height == 0 else (b"%d" % (height - 1), Version(height - 1, 1))
        if last != expected_last:
            problems.append(f"'last' is {last!r} at height {height}")
        tmps = [k for k, _, _ in state.range(ns, b"tmp/", b"tmp0")]
        if tmps != ([] if height == 0 else [writer.tmp_key(height - 1)]):
            problems.append(f"tmp keys {tmps} at height {height}")
        return height, problems
    finally:
        kv.close()


@pytest.mark.slow
def test_sigkill_at_random_moments_leaves_a_consistent_store(tmp_path: Path) -> None:
    seed = int(os.environ.get("MEDLEDGER_CRASH_SEED", random.SystemRandom().randrange(2**32)))
    rng = random.Random(seed)
    db = tmp_path / "db"
    stderr_path = tmp_path / "writer.stderr"
    heights = []
    for kill in range(KILLS):
        why = f"seed={seed} kill={kill} (rerun with MEDLEDGER_CRASH_SEED={seed})"
        child = _spawn(db, seed + kill, stderr_path)
        try:
            if rng.random() < 0.2:
                time.sleep(rng.uniform(0.0, 0.15))  # often still importing or opening
            else:
                _wait_ready(child, why)
                time.sleep(rng.uniform(0.0, 0.25))
        finally:
            child.send_signal(signal.SIGKILL)  # our own child, by its pid
            returncode = child.wait()
            if child.stdout is not None:
                child.stdout.close()
        assert returncode == -signal.SIGKILL, (
            f"{why}: writer exited on its own ({returncode}): {stderr_path.read_text()[-2000:]}"
        )
        height, problems = _problems(db, heights[-1] if heights else 0)
        assert not problems, f"{why}: inconsistent after kill at height {height}: {problems[:10]}"
        heights.append(height)
    height, problems = _problems(db)
    assert not problems, f"seed={seed}: final full check at height {height}: {problems[:10]}"
    assert heights == sorted(heights), f"seed={seed}: height went backwards: {heights}"
    assert heights[-1] > KILLS, f"seed={seed}: the writer made little progress: {heights}"
