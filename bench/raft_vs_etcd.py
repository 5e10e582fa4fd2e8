"""Our ordering service against etcd, in one run on this machine (issue 3's benchmark).

Runs, one after the other on 127.0.0.1: a 3-member etcd cluster (Debian's etcd-server,
installed with apt-get if missing; default fsync, warn logs), our ordering service with 3
members (ministry + 2 hospitals), a 5-member etcd cluster, and ours with 5 (the local
profile), each in a fresh temp directory. Each system gets closed-loop clients submitting
1 KiB payloads at 1, 16 and 64 clients for a fixed duration; the script prints throughput,
p50 and p99, the CPU the load generator and the cluster used during each run, the ratios
ours/etcd and the issue's targets (64 clients: ours >= 0.5x etcd; 1 client: p50 <= 2x etcd)
with PASS/MISS. Every run of ours is compared with etcd's 3 members, as the issue sets the
targets, and, where etcd ran with as many members (``etcd5``), with that too: like for like,
since a 5-member cluster on the same 2 cores does more work per commit, whichever system it is.

    .venv/bin/python bench/raft_vs_etcd.py [--seconds 10] [--clients 1,16,64] [--json]
        [--systems etcd,ours3,etcd5,ours5] [--rounds N] [--wait-quiet S]
        [--loadgen-procs auto|N] [--api http|stream] [--keep]

This machine's speed drifts by tens of percent over minutes (etcd at 1 client measured 556
and 731 puts/s twenty minutes apart), so ``--rounds N`` repeats the whole sequence N times
with fresh clusters, pairs each of our runs with etcd's of the same round, and judges the
targets on the median of the per-round ratios.

On a shared machine, ``--wait-quiet S`` waits (at most S seconds) before each run until other
work is off the CPU; rows where other work still took over 10% are marked with ``*``.

Load generators. Ours is ``node.loadgen.run_load`` (keep-alive HTTP/1.1 over TLS on raw
asyncio streams, one signed envelope per request, round-robin over the members, the same one
the integration tests use). Its envelopes are signed before the clock starts (up to
:data:`PRESIGNED_PER_S` per second of run): a client's ECDSA signature is the client's cost,
and signing in the window took about a quarter of the load generator's CPU from the cluster
it measures. For etcd,
Debian ships no load generator: etcd-server holds only ``etcd`` and etcd-client only
``etcdctl`` (whose ``check perf`` runs fixed, rate-limited 60 s loads of 50-1000 clients, not
a 1/16/64 closed-loop sweep); etcd's Go
``tools/benchmark`` exists only as source in golang-etcd-server-dev and there is no Go
toolchain here. So etcd is driven through its v3 JSON gRPC-gateway (``POST /v3/kv/put`` with
base64 key and value) by ``bench/etcd_loadgen.py``, which has exactly our closed-loop shape
(one request outstanding per client, member chosen round-robin per request, started only
before the deadline, retried on 5xx) and the same connection class, so both load generators
spend as little CPU per request as a Python client can. Both run on uvloop, as
``bench/e2e.py``'s workers do: on the standard asyncio loop, the Python-level TLS of our
client alone added 0.1-0.6 ms to each request's latency here, which measured the load
generator rather than the cluster. The gateway costs
etcd some CPU (JSON and an in-process gRPC hop) that its native gRPC clients would not pay,
so etcd's figures here are if anything on the low side: as a one-off calibration on this
machine, ``etcdctl check perf --load l`` (native gRPC, 500 clients, 1 KiB values) reached
3,262 puts/s where the gateway gave 2,492 at 64 clients. etcd's client port is plain HTTP
while ours is TLS; that is each system's default local setup.

``--api stream`` drives ours over its client stream instead (``/v1/stream``: one WebSocket
per member shared by all clients, a frame each way per request) and etcd over its native
gRPC (``KV/Put``, one HTTP/2 channel per member shared by all clients, as etcd's Go client
does; ``bench/etcd_loadgen.py``): each system's own multiplexed client protocol, against
each other. The default keeps both systems on keep-alive HTTP/1.1, and the targets are
judged on it: grpcio's asyncio client spends about three times the CPU per request of the
HTTP/1.1 one (here 26% of the machine at 64 clients against 9%, and etcd's 1-client p50
was 1.54 ms over it against 1.2-1.5 ms through the gateway), so over gRPC etcd's figures
are held down by its load generator.

Fairness of CPU. The load generators run as separate worker processes (this script with
``--worker``), started and connected before the clock starts, so their CPU is measured on its
own: each worker reports its getrusage over the measured window, the cluster's CPU is read
from /proc/PID/stat (utime+stime) of the server processes at the start and end of the
window, and the machine's idle share from /proc/stat. Percentages are of the whole machine
(all cores): loadgen + cluster + idle + other = 100, where other is this script, the kernel
and anything else running (the script warns if the machine is busy before it starts). With
``--loadgen-procs auto`` each run starts with one worker process and, if a worker used more
than 70% of a core, is repeated with the clients split over twice as many workers, so a
single Python process never bounds the figures (on this machine one worker used under a
third of a core even at 64 clients against etcd).

Every process this script starts is stopped by its pid, and the temp directory removed, on
success, on error and on Ctrl-C. Each run is bounded by its duration plus a timeout. A run
whose load generator exits without reporting (rarely; cause unknown) is measured again
once, and the console says so.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import platform
import resource
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvloop
from etcd_cluster import EtcdCluster, ensure_etcd

CLIENT_COUNTS = (1, 16, 64)
WORKER_READY_S = 60.0  # importing and connecting; seconds even on a loaded machine
WORKER_SLACK_S = 45.0  # past the duration: the last requests' timeout plus reporting
# Envelopes a worker signs before the clock starts, per second of run, over all its clients:
# twice what our service reaches here at any client count, so the measured window holds
# requests, not ECDSA (a worker signs on the fly only past that).
PRESIGNED_PER_S = 4_000
# How etcd is driven for each of our client APIs: HTTP/1.1 against HTTP/1.1, and each
# system's multiplexed client protocol against the other's.
ETCD_API = {"http": "http", "stream": "grpc"}
ADMIN_ORG = "northgate"  # a hospital admin present in both the 3- and 5-member networks
TARGET_ETCD_MEMBERS = 3  # the targets compare against etcd's 3 members
MEMBERS_MAX = 5  # the local profile's members (ministry + 4 hospitals); etcd as many at most
TARGET_THROUGHPUT_RATIO = 0.5  # at 64 clients, ours >= 0.5x etcd
TARGET_P50_RATIO = 2.0  # at 1 client, ours <= 2x etcd
SATURATED_CORE_PCT = 70.0  # a worker process busier than this may bound the load: split it
PROCS_MAX = 8
BUSY_WARN_PCT = 10.0  # warn when the machine is this busy before we start anything
OTHER_FLAG_PCT = 10.0  # rows where other work took more than this are marked with *
QUIET_PCT = 5.0  # with --wait-quiet, a run starts once other work uses less than this
CLK_TCK = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count() or 1


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# === CPU accounting ============================================================================


def proc_cpu_s(pid: int) -> float:
    """utime + stime of *pid* (all its threads) in seconds; 0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_times() -> tuple[float, float]:
    """(total, idle+iowait) jiffies of all cores, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return float(sum(values[:8])), float(values[3] + values[4])


def machine_busy_pct(seconds: float) -> float:
    """How busy all cores were over the next *seconds* (before we start anything)."""
    total0, idle0 = machine_times()
    time.sleep(seconds)
    total1, idle1 = machine_times()
    return 100 * (1 - (idle1 - idle0) / (total1 - total0)) if total1 > total0 else 0.0


def others_busy_pct(pids: list[int], seconds: float) -> float:
    """% of the machine used over *seconds* by anything but *pids* (the cluster at rest)."""
    before = sum(proc_cpu_s(pid) for pid in pids)
    total0, idle0 = machine_times()
    time.sleep(seconds)
    total1, idle1 = machine_times()
    ours = sum(proc_cpu_s(pid) for pid in pids) - before
    if total1 <= total0:
        return 0.0
    busy = 1 - (idle1 - idle0) / (total1 - total0)
    return max(0.0, 100 * (busy - ours / (seconds * NCPU)))


def wait_quiet(pids: list[int], max_wait_s: float) -> float:
    """Wait (at most *max_wait_s*) until nothing else uses the CPU; the last busy % seen."""
    deadline = time.monotonic() + max_wait_s
    busy = others_busy_pct(pids, 1.0)
    waited = False
    while busy > QUIET_PCT and time.monotonic() < deadline:
        if not waited:
            say(
                f"  waiting up to {max_wait_s:.0f} s for the machine to be quiet ({busy:.0f}% busy)"
            )
            waited = True
        busy = others_busy_pct(pids, 1.0)
    if busy > QUIET_PCT:
        say(f"  WARNING: the machine is {busy:.0f}% busy with other work; measuring anyway")
    return busy


def self_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# === load generator workers ====================================================================


def worker_main() -> int:
    """One load generator process: read a spec, connect, say "ready", wait for "go", run."""
    from node.allocator import tune_allocator

    tune_allocator()  # as the nodes do (both kinds of worker: the same process setup)
    spec = json.loads(sys.stdin.readline())
    result = _worker_etcd(spec) if spec["kind"] == "etcd" else _worker_ours(spec)
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def _ready_and_wait_for_go() -> float:
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("worker: expected go")
    return self_cpu_s()


class _StartGate:
    """A worker's before_start hook: once its connections are open it says "ready", waits
    (off the event loop) for "go", and notes its CPU time then."""

    def __init__(self) -> None:
        self.cpu_at_go = 0.0

    async def wait_for_go(self) -> None:
        import asyncio

        loop = asyncio.get_running_loop()
        self.cpu_at_go = await loop.run_in_executor(None, _ready_and_wait_for_go)


def _worker_etcd(spec: dict[str, Any]) -> dict[str, Any]:
    from etcd_loadgen import run_put_load

    gate = _StartGate()

    result = uvloop.run(
        run_put_load(
            [tuple(e) for e in spec["endpoints"]],
            clients=spec["clients"],
            duration_s=spec["duration_s"],
            key_prefix=spec["key_prefix"],
            first_client=spec["first_client"],
            before_start=gate.wait_for_go,
            api=spec["api"],
        )
    )
    return {
        "latencies_ms": [round(s * 1000, 4) for s in result.latencies_s],
        "failures": result.failures[:5],
        "failure_count": len(result.failures),
        "retries": result.retries,
        "elapsed_s": result.elapsed_s,
        "cpu_s": self_cpu_s() - gate.cpu_at_go,
    }


def _worker_ours(spec: dict[str, Any]) -> dict[str, Any]:
    import tomllib

    from identity.certs import cert_to_der
    from identity.keystore import read_cert, read_signing_key
    from node.bootstrap import load_network
    from node.client import network_ssl_context
    from node.loadgen import run_load
    from node.supervisor import api_url

    net = Path(spec["network"])
    urls = [api_url(e) for e in load_network(net)]
    ctx = network_ssl_context(net)
    network_id = tomllib.loads((net / "network.toml").read_text())["network_id"]
    admin = net / "orgs" / ADMIN_ORG / "admin"
    key = read_signing_key(admin / "admin.key")
    cert = cert_to_der(read_cert(admin / "admin.pem"))
    gate = _StartGate()

    result = uvloop.run(
        run_load(
            urls,
            ctx,
            network_id=network_id,
            key=key,
            cert_der=cert,
            clients=spec["clients"],
            duration_s=spec["duration_s"],
            before_start=gate.wait_for_go,
            presigned=math.ceil(
                PRESIGNED_PER_S * spec["duration_s"] * spec["clients"] / spec["all_clients"]
            ),
            api=spec["api"],
        )
    )
    return {
        "latencies_ms": [round(a.latency_s * 1000, 4) for a in result.acks],
        "failures": result.failures[:5],
        "failure_count": len(result.failures),
        "retries": sum(a.attempts - 1 for a in result.acks),
        "elapsed_s": result.elapsed_s,
        "cpu_s": self_cpu_s() - gate.cpu_at_go,
    }


class WorkerLost(RuntimeError):
    """A load generator process exited without reporting."""


class Worker:
    """A load generator process we started; read from it with a timeout."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C reaches only us; we stop it by its pid
        )
        self._buffer = b""
        self._started = time.monotonic()
        self.send(json.dumps(spec))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def line(self, timeout_s: float) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"load generator pid {self.pid} did not answer in time")
            readable, _, _ = select.select([fd], [], [], left)
            if readable:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self.proc.wait(timeout=5)
                    raise WorkerLost(
                        f"load generator pid {self.pid} exited (code {self.proc.returncode};"
                        " negative: killed by that signal)"
                        f" {time.monotonic() - self._started:.1f} s after it started, with"
                        f" {len(self._buffer)} bytes of an unfinished line"
                    )
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode()

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


# === one measured run ==========================================================================


@dataclasses.dataclass(slots=True)
class Run:
    """The figures of one system at one client count."""

    system: str
    members: int
    clients: int
    loadgen_procs: int
    acks: int
    elapsed_s: float
    throughput_per_s: float
    p50_ms: float
    p99_ms: float
    failures: int
    retries: int
    loadgen_cpu_pct: float  # of the whole machine (all cores)
    cluster_cpu_pct: float
    idle_pct: float
    other_pct: float  # the rest: this script, the kernel, anything else on the machine
    loadgen_busiest_core_pct: float  # the busiest worker process, in % of one core
    failure_samples: list[str]
    round: int = 0  # with --rounds: which repetition of the whole sequence


def quantile(ordered: list[float], q: float) -> float:
    """The same rule as ``node.loadgen.LoadResult.latency_ms``."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def loadgen_procs_for(clients: int, setting: str) -> int:
    """The first number of worker processes to try."""
    return 1 if setting == "auto" else max(1, min(clients, int(setting)))


def split(clients: int, procs: int) -> list[int]:
    return [clients // procs + (1 if i < clients % procs else 0) for i in range(procs)]


def measure(
    system: str,
    members: int,
    clients: int,
    duration_s: float,
    cluster_pids: list[int],
    spec: dict[str, Any],
    procs: int,
    workers_alive: list[Worker],
) -> Run:
    """Start the workers, let them connect, then run them together and account the CPU."""
    workers = []
    first = 0
    for share in split(clients, procs):
        worker_spec = {
            **spec,
            "clients": share,
            "all_clients": clients,
            "first_client": first,
            "duration_s": duration_s,
        }
        first += share
        worker = Worker(worker_spec)
        workers_alive.append(worker)
        workers.append(worker)
    try:
        for w in workers:
            if w.line(WORKER_READY_S) != "ready":
                raise RuntimeError(f"load generator pid {w.pid} did not get ready")
        cluster_before = sum(proc_cpu_s(pid) for pid in cluster_pids)
        machine_before = machine_times()
        wall_before = time.perf_counter()
        for w in workers:
            w.send("go")
        results = [json.loads(w.line(duration_s + WORKER_SLACK_S)) for w in workers]
        wall = time.perf_counter() - wall_before
        cluster_cpu = sum(proc_cpu_s(pid) for pid in cluster_pids) - cluster_before
        machine_after = machine_times()
    finally:
        for w in workers:
            w.stop()
            workers_alive.remove(w)
    total = machine_after[0] - machine_before[0]
    idle = machine_after[1] - machine_before[1]
    latencies = sorted(x for r in results for x in r["latencies_ms"])
    elapsed = max(r["elapsed_s"] for r in results)
    capacity = wall * NCPU
    loadgen_pct = 100 * sum(r["cpu_s"] for r in results) / capacity
    cluster_pct = 100 * cluster_cpu / capacity
    idle_pct = 100 * idle / total if total else float("nan")
    return Run(
        system=system,
        members=members,
        clients=clients,
        loadgen_procs=len(workers),
        acks=len(latencies),
        elapsed_s=elapsed,
        throughput_per_s=len(latencies) / elapsed if elapsed else 0.0,
        p50_ms=quantile(latencies, 0.5),
        p99_ms=quantile(latencies, 0.99),
        failures=sum(r["failure_count"] for r in results),
        retries=sum(r["retries"] for r in results),
        loadgen_cpu_pct=loadgen_pct,
        cluster_cpu_pct=cluster_pct,
        idle_pct=idle_pct,
        other_pct=max(0.0, 100 - loadgen_pct - cluster_pct - idle_pct),
        loadgen_busiest_core_pct=100 * max(r["cpu_s"] for r in results) / wall,
        failure_samples=[f for r in results for f in r["failures"]][:5],
    )


# === the systems ===============================================================================


class Bench:
    """Everything one benchmark run started, so that all of it can be stopped."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="medledger-raft-vs-etcd-"))
        self.etcd: EtcdCluster | None = None
        self.networks: list[tuple[Path, list[Any]]] = []  # (network dir, RunningNode list)
        self.workers: list[Worker] = []
        self.runs: list[Run] = []
        self.round = 0

    def run_all(self, systems: list[str], rounds: int = 1) -> None:
        """Every system in turn, the whole sequence *rounds* times (each round starts fresh
        clusters), so that each ratio compares runs minutes apart, not the two ends of a
        long benchmark on a machine whose speed drifts."""
        for self.round in range(rounds):
            if rounds > 1:
                say(f"round {self.round + 1} of {rounds}")
            for system in systems:
                kind, members = system_members(system)
                if kind == "etcd":
                    self.run_etcd(members)
                else:
                    self.run_ours(members)

    def _sweep(self, system: str, members: int, pids: list[int], spec: dict[str, Any]) -> None:
        args = self.args
        if args.warmup > 0:
            measure(system, members, 16, args.warmup, pids, spec, 1, self.workers)
        for clients in args.clients:
            procs = loadgen_procs_for(clients, args.loadgen_procs)
            while True:
                if args.wait_quiet > 0:
                    wait_quiet(pids, args.wait_quiet)
                try:
                    run = measure(
                        system, members, clients, args.seconds, pids, spec, procs, self.workers
                    )
                except WorkerLost as e:
                    # Once: the run is measured again from the start; a second loss stops all.
                    say(f"  {e}; no result, so this run is measured again")
                    run = measure(
                        system, members, clients, args.seconds, pids, spec, procs, self.workers
                    )
                more = min(clients, 2 * procs, PROCS_MAX)
                saturated = run.loadgen_busiest_core_pct > SATURATED_CORE_PCT
                if not (saturated and args.loadgen_procs == "auto" and more > procs):
                    break
                say(
                    f"  a load generator process used {run.loadgen_busiest_core_pct:.0f}% of a "
                    f"core; repeating with {more} processes"
                )
                procs = more
            run.round = self.round
            self.runs.append(run)
            say(
                f"  {system} x{members} {clients:>3} clients: {run.throughput_per_s:8.0f}/s "
                f"p50 {run.p50_ms:7.2f} ms p99 {run.p99_ms:7.2f} ms  "
                f"loadgen {run.loadgen_procs} proc {run.loadgen_cpu_pct:4.0f}% "
                f"(busiest {run.loadgen_busiest_core_pct:.0f}% of a core) "
                f"cluster {run.cluster_cpu_pct:4.0f}% "
                f"idle {run.idle_pct:4.0f}% other {run.other_pct:3.0f}%  "
                f"failures {run.failures} retries {run.retries}"
            )

    def run_etcd(self, members: int) -> None:
        say(f"etcd: starting {members} members on 127.0.0.1")
        self.etcd = EtcdCluster(self.root / f"etcd{members}-{self.round}", members=members)
        self.etcd.start()
        self.etcd.wait_healthy()
        spec = {
            "kind": "etcd",
            "endpoints": self.etcd.client_endpoints,
            "key_prefix": f"bench{os.getpid()}",
            "api": ETCD_API[self.args.api],
        }
        self._sweep("etcd", members, self.etcd.pids, spec)
        say("etcd: stopping")
        self.etcd.stop()
        self.etcd = None

    def run_ours(self, members: int) -> None:
        from node.bootstrap import InitOptions, init_network
        from node.profile import load_profile
        from node.supervisor import start_nodes, wait_for_leader

        local = load_profile("local")
        if members - 1 > len(local.hospitals):
            raise SystemExit(f"the local profile has only {len(local.hospitals) + 1} members")
        profile = dataclasses.replace(
            local, name=f"bench{members}", hospitals=local.hospitals[: members - 1]
        )
        net = self.root / f"ours{members}-{self.round}"
        say(f"ours: initialising and starting {members} members under {net}")
        init_network(profile, InitOptions(out=net, force=False, now=datetime.now(UTC)))
        nodes = start_nodes(net, detach=True)
        self.networks.append((net, nodes))
        leader = wait_for_leader(net, nodes)
        say(f"ours: leader {leader}")
        spec = {"kind": "ours", "network": str(net), "api": self.args.api}
        self._sweep("ours", members, [n.pid for n in nodes], spec)
        self._stop_network(net, nodes)

    def _stop_network(self, net: Path, nodes: list[Any]) -> None:
        from node.supervisor import stop_nodes

        say(f"ours: stopping {net.name}")
        stop_nodes(net, nodes)
        self.networks.remove((net, nodes))

    def cleanup(self) -> None:
        """Stop whatever is still running (by pid) and remove the temp directory."""
        for worker in list(self.workers):
            worker.stop()
        self.workers.clear()
        if self.etcd is not None:
            self.etcd.stop()
            self.etcd = None
        for net, nodes in list(self.networks):
            with contextlib.suppress(Exception):
                self._stop_network(net, nodes)
        if self.args.keep:
            say(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)


# === report ====================================================================================


def ratios(runs: list[Run]) -> list[dict[str, Any]]:
    """ours/etcd for throughput at every client count and p50 at 1 client, each against
    etcd's run of the same round: against etcd's 3 members (the issue's targets) and, where
    etcd also ran with as many members as ours, against that (like for like). With several
    rounds, one more item per (members, etcd members, clients) holds the median ratios
    (``round`` "median"), which the targets use."""
    etcd = {(r.round, r.members, r.clients): r for r in runs if r.system == "etcd"}
    out = []
    for r in runs:
        if r.system != "ours":
            continue
        for etcd_members in sorted({TARGET_ETCD_MEMBERS, r.members}):
            base = etcd.get((r.round, etcd_members, r.clients))
            if base is None:
                continue
            out.append(
                _with_target(
                    {
                        "round": r.round,
                        "members": r.members,
                        "etcd_members": etcd_members,
                        "clients": r.clients,
                        "throughput_ratio": r.throughput_per_s / base.throughput_per_s
                        if base.throughput_per_s
                        else float("nan"),
                        "p50_ratio": r.p50_ms / base.p50_ms if base.p50_ms else float("nan"),
                    }
                )
            )
    if len({item["round"] for item in out}) < 2:
        return out
    groups = sorted({(i["members"], i["etcd_members"], i["clients"]) for i in out})
    for group in groups:
        members, etcd_members, clients = group
        same = [i for i in out if (i["members"], i["etcd_members"], i["clients"]) == group]
        median: dict[str, Any] = {
            "round": "median",
            "members": members,
            "etcd_members": etcd_members,
            "clients": clients,
        }
        for key in ("throughput_ratio", "p50_ratio"):
            median[key] = statistics.median(i[key] for i in same)
        out.append(_with_target(median))
    return out


def _with_target(item: dict[str, Any]) -> dict[str, Any]:
    if item["clients"] == max(CLIENT_COUNTS):
        item["target"] = f"throughput >= {TARGET_THROUGHPUT_RATIO}x etcd"
        item["met"] = item["throughput_ratio"] >= TARGET_THROUGHPUT_RATIO
    elif item["clients"] == 1:
        item["target"] = f"p50 <= {TARGET_P50_RATIO}x etcd"
        item["met"] = item["p50_ratio"] <= TARGET_P50_RATIO
    return item


def print_table(runs: list[Run], versions: dict[str, str], busy: float, api: str) -> None:
    print(
        f"machine: {NCPU} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{busy:.0f}% busy before start; client APIs: ours {api}, etcd {ETCD_API[api]}"
    )
    for name, version in versions.items():
        print(f"{name}: {version}")
    print()
    print(
        "CPU % is of the whole machine (all cores): loadgen + cluster + idle + other = 100; "
        "other is this script, the kernel and anything else running.\n"
        "lg procs: load generator processes; lg core%: the busiest one, in % of one core."
    )
    rounds = len({r.round for r in runs})
    head = (
        ("round " if rounds > 1 else "")
        + f"{'system':<6} {'members':>7} {'clients':>7} {'throughput/s':>12} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'loadgen CPU%':>12} {'cluster CPU%':>12} {'idle%':>6} {'other%':>6} "
        f"{'fail':>5} {'lg procs':>8} {'lg core%':>8}"
    )
    print(head)
    print("-" * len(head))
    for r in runs:
        print(
            (f"{r.round + 1:>5} " if rounds > 1 else "")
            + f"{r.system:<6} {r.members:>7} {r.clients:>7} {r.throughput_per_s:>12.0f} "
            f"{r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {r.loadgen_cpu_pct:>12.0f} "
            f"{r.cluster_cpu_pct:>12.0f} {r.idle_pct:>6.0f} {r.other_pct:>6.0f} {r.failures:>5} "
            f"{r.loadgen_procs:>8} {r.loadgen_busiest_core_pct:>8.0f}"
            + (" *" if r.other_pct > OTHER_FLAG_PCT else "")
        )
    if any(r.other_pct > OTHER_FLAG_PCT for r in runs):
        print(
            f"* other work took over {OTHER_FLAG_PCT:.0f}% of the machine during this run: "
            "its figures are not clean (try --wait-quiet 60)"
        )
    print()
    print("ours / etcd:" if any(r.system == "etcd" for r in runs) else "(no etcd run: no ratios)")
    for item in ratios(runs):
        which = ""
        if rounds > 1:
            label = "median" if item["round"] == "median" else f"round {item['round'] + 1}"
            which = f"{label:>8} "
        line = (
            f"  {which}{item['members']} members vs etcd x{item['etcd_members']}, "
            f"{item['clients']:>2} clients: throughput {item['throughput_ratio']:.2f}x"
        )
        if item["clients"] == 1:
            line += f", p50 {item['p50_ratio']:.2f}x"
        if "target" in item:
            line += f"   target {item['target']}: {'PASS' if item['met'] else 'MISS'}"
        print(line)


# === main ======================================================================================


def add_run_options(parser: argparse.ArgumentParser, *, api_default: str) -> None:
    """The options every load benchmark here shares: our client API, load generator
    processes, waiting for a quiet machine, JSON output, keeping the temp dir, and the
    hidden worker mode."""
    parser.add_argument(
        "--api",
        choices=("http", "stream"),
        default=api_default,
        help="how our load generator reaches the nodes: a keep-alive HTTPS connection per"
        f" client per node, or one client stream per node (default {api_default})",
    )
    parser.add_argument(
        "--loadgen-procs",
        default="auto",
        help="load generator processes per run (auto: 1, more if one saturates a core)",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each run, wait up to S seconds until nothing else uses the CPU",
    )
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, data)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each measured run")
    parser.add_argument(
        "--clients",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(CLIENT_COUNTS),
        help="client counts, comma-separated (default 1,16,64)",
    )
    parser.add_argument(
        "--systems",
        type=lambda s: s.split(","),
        default=["etcd", "ours3", "etcd5", "ours5"],
        help="which systems, in order: etcd (3 members), etcdN, oursN "
        "(default etcd,ours3,etcd5,ours5)",
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured run per system")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the whole sequence; ratios per round and their median (default 1)",
    )
    add_run_options(parser, api_default="http")
    args = parser.parse_args(argv)
    for system in args.systems:
        try:
            system_members(system)
        except ValueError as e:
            parser.error(str(e))
    if args.seconds <= 0 or args.seconds > 600:
        parser.error("--seconds must be in (0, 600]")
    if not 1 <= args.rounds <= 20:
        parser.error("--rounds must be in [1, 20]")
    return args


def system_members(system: str) -> tuple[str, int]:
    """("etcd" or "ours", members) of a --systems name: etcd (3 members), etcdN with N from
    1 to MEMBERS_MAX, or oursN with N from 2 (ours needs a hospital: ADMIN_ORG signs the
    load); ValueError for anything else."""
    if system == "etcd":
        return "etcd", TARGET_ETCD_MEMBERS
    for kind, least in (("etcd", 1), ("ours", 2)):
        count = system.removeprefix(kind)
        digits = count != system and count.isascii() and count.isdigit()
        if digits and least <= int(count) <= MEMBERS_MAX:
            return kind, int(count)
    raise ValueError(
        f"unknown system {system!r}: etcd, etcdN (N from 1 to {MEMBERS_MAX}) or oursN "
        f"(N from 2 to {MEMBERS_MAX})"
    )


def _on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main()
    signal.signal(signal.SIGTERM, _on_sigterm)
    versions = {}
    if any(system_members(system)[0] == "etcd" for system in args.systems):
        versions = ensure_etcd(say)
        for name, version in versions.items():
            say(f"{name}: {version}")
    busy = machine_busy_pct(1.0)
    say(f"machine busy before start: {busy:.0f}% of {NCPU} cores")
    if busy > BUSY_WARN_PCT:
        say("WARNING: something else is using the CPU; the figures below share it (see other%)")
    bench = Bench(args)
    try:
        bench.run_all(args.systems, args.rounds)
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        return 130
    finally:
        bench.cleanup()
    if args.json:
        doc = {
            "machine": {
                "cores": NCPU,
                "python": platform.python_version(),
                "busy_before_pct": busy,
            },
            "versions": versions,
            "seconds": args.seconds,
            "rounds": args.rounds,
            "api": args.api,
            "runs": [dataclasses.asdict(r) for r in bench.runs],
            "ratios": ratios(bench.runs),
        }
        print(json.dumps(doc, indent=2))
    else:
        print_table(bench.runs, versions, busy, args.api)
    return 0


if __name__ == "__main__":
    sys.exit(main())
