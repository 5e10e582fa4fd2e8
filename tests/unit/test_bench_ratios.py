"""bench/raft_vs_etcd.py judges issue 3's targets: which etcd run each of ours is compared with,
the medians over rounds, and which --systems names it accepts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import raft_vs_etcd as bench


def _run(system: str, members: int, clients: int, tput: float, p50: float, rnd: int) -> bench.Run:
    return bench.Run(
        system=system,
        members=members,
        clients=clients,
        loadgen_procs=1,
        acks=100,
        elapsed_s=1.0,
        throughput_per_s=tput,
        p50_ms=p50,
        p99_ms=2 * p50,
        failures=0,
        retries=0,
        loadgen_cpu_pct=5.0,
        cluster_cpu_pct=80.0,
        idle_pct=10.0,
        other_pct=5.0,
        loadgen_busiest_core_pct=10.0,
        failure_samples=[],
        round=rnd,
    )


def _medians(runs: list[bench.Run]) -> dict[tuple[int, int, int], dict[str, object]]:
    return {
        (i["members"], i["etcd_members"], i["clients"]): i
        for i in bench.ratios(runs)
        if i["round"] == "median"
    }


def test_each_of_ours_is_judged_against_etcd_3_and_against_etcd_of_its_own_size() -> None:
    runs = []
    for rnd, ours5_p50 in enumerate((2.6, 2.2, 3.0)):
        runs += [
            _run("etcd", 3, 1, 1000, 1.0, rnd),
            _run("ours", 3, 1, 550, 1.8, rnd),
            _run("etcd", 5, 1, 700, 1.4, rnd),
            _run("ours", 5, 1, 400, ours5_p50, rnd),
            _run("etcd", 3, 64, 5000, 10.0, rnd),
            _run("ours", 3, 64, 3000, 15.0, rnd),
            _run("etcd", 5, 64, 3000, 18.0, rnd),
            _run("ours", 5, 64, 2400, 20.0, rnd),
        ]
    medians = _medians(runs)
    # Ours with 3 members has no etcd of another size to meet: one comparison per client count.
    assert set(medians) == {(3, 3, 1), (3, 3, 64), (5, 3, 1), (5, 5, 1), (5, 3, 64), (5, 5, 64)}
    assert medians[(3, 3, 1)]["p50_ratio"] == pytest.approx(1.8)
    assert medians[(3, 3, 1)]["met"] is True
    assert medians[(5, 3, 1)]["p50_ratio"] == pytest.approx(2.6)  # the median of 2.6, 2.2, 3.0
    assert medians[(5, 3, 1)]["met"] is False
    assert medians[(5, 5, 1)]["p50_ratio"] == pytest.approx(2.6 / 1.4)
    assert medians[(5, 5, 1)]["met"] is True
    assert medians[(5, 3, 64)]["throughput_ratio"] == pytest.approx(0.48)
    assert medians[(5, 3, 64)]["met"] is False
    assert medians[(5, 5, 64)]["throughput_ratio"] == pytest.approx(0.8)
    assert medians[(5, 5, 64)]["met"] is True


def test_without_a_5_member_etcd_ours_is_compared_with_etcd_3_only() -> None:
    runs = [_run("etcd", 3, 1, 1000, 1.0, 0), _run("ours", 5, 1, 400, 2.5, 0)]
    (item,) = bench.ratios(runs)
    assert (item["members"], item["etcd_members"], item["met"]) == (5, 3, False)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("etcd", ("etcd", 3)), ("etcd5", ("etcd", 5)), ("etcd1", ("etcd", 1)), ("ours2", ("ours", 2))],
)
def test_system_names(name: str, expected: tuple[str, int]) -> None:
    assert bench.system_members(name) == expected


@pytest.mark.parametrize("name", ["ours", "etcd0", "ours1", "ours6", "ours²", "ours-3", "zk3", ""])
def test_unknown_system_names_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"etcd, etcdN \(N from 1 to 5\) or oursN \(N from 2"):
        bench.system_members(name)
