"""End to end on the local network: committed registry writes per second against the
signature floor of this machine (issue 4's benchmark).

Starts the local profile's network (the ministry's orderer and four hospital peers, five
processes on 127.0.0.1 over mutual TLS) in a fresh temp directory and drives it with
closed-loop clients, each running the whole transaction flow one transaction at a time: sign
a ``registry.register`` proposal for a fresh subject id as the admin of its gateway's
hospital, ask a hospital peer to endorse it (it fans the proposal out to the four endorsers
and returns the prepared transaction with q=3 endorsements), sign the envelope, submit it to
the same peer and wait for the answer, which comes once the block holding it is committed,
validated on that peer and synced. By default (``--api stream``) the clients of one gateway
share one client stream to it (``/v1/stream``, :mod:`node.client_stream`), where each
request is a WebSocket frame each way; ``--api http`` gives every client its own keep-alive
HTTPS connections for ``POST /v1/gateway/endorse`` and ``POST /v1/envelopes``. Clients are
spread round-robin over the four hospital peers (the ministry is not a gateway); subject ids
never repeat, so transactions never conflict. At 1, 16, 64, 256 and 512 clients (one network
for the whole sweep, so later runs pay LevelDB's flushes and compactions of what earlier ones
wrote, as a node in service does) it prints committed VALID transactions per second, p50 and
p99 latency from sending the proposal to the commit answer (and the endorsement part of it),
invalid and failed transactions (never counted as committed), and the CPU the load generator
and the cluster used.

    .venv/bin/python bench/e2e.py [--seconds 10] [--clients 1,16,64,256,512] [--json]
        [--warmup S] [--loadgen-procs auto|N] [--wait-quiet S] [--profile] [--profile-node ID]
        [--floor-seconds S] [--api stream|http] [--keep]

The physical limit. Before the network starts, the script measures this machine's ECDSA
P-256 verify and sign rates on one core with ``bench/floors.py``'s timing rule. During each
run it reads every node's ``/metrics``: ``signatures_verified`` (ECDSA verifications a node
actually ran; each signature is verified once per node), ``endorser_proposals`` (each one
signed an endorsement) and the leader's ``ordering_blocks_cut``/``ordering_txs_cut`` (each
block header is signed once). Per committed transaction that gives V verifications and
S signatures across the whole network (S counts the client's two: proposal and envelope),
and the limit of this machine's cores if signatures were all they did::

    limit = cores / (V / verify_per_s + S / sign_per_s)

printed with the ratio of the measured throughput to it, and the CPU (cluster plus load
generator) each committed transaction took next to what its signatures alone take. The
nodes run as configured (every block and its state changes in one LevelDB batch, synced with
the Raft entries it shares the batch with or, for a block committed alone, within a tick);
that every signature was checked shows in V: checking each signature once on every node
that did not make it (a node remembers its own endorsement as verified) takes at least
5 envelope checks + q=3 endorsements x 4 other nodes + 4 proposal checks by the endorsers
= 21 per transaction, plus the gateway's check of the endorsement it collects beyond q
(unless that one is its own), which the script prints next to the measured V. Block
headers, signed by the leader, reach the other nodes inside Raft entries and are verified
only on catch-up, so they cost no steady-state verification. The share of the cluster's
CPU spent in signature checks is V x (1 / verify_per_s) / cluster CPU seconds (and
likewise for the nodes' signing).

With ``--profile`` one extra run at the best client count has py-spy (in the venv) sample
one node (``--profile-node``, default the first hospital peer; 100 Hz, non-blocking). It
prints the share of the node's non-idle samples inside ``identity.keys`` verify and sign
and in TLS handshakes, next to the verify share of that node's CPU its metrics give.
py-spy counts a thread as busy while it waits for a core or in fsync too, so its shares
are of busy time rather than strictly of CPU; on this machine they came within a few
points of the metrics (e.g. 8.6% against 8.8%, 23.5% against 17.7%).

Fairness of CPU, as in ``bench/raft_vs_etcd.py`` (whose helpers this script imports): the
load generators are separate worker processes (this script with ``--worker``, on uvloop,
requests over ``node.loadgen``'s connections), started, connected and warmed up before the
clock (``--warmup`` seconds of unmeasured load at the run's own client count, so that the
gateways' keep-alive pools of endorser connections have grown to that concurrency and the
measured window pays no TLS handshakes a steady state would not). Each worker reports its
getrusage over the measured window, the cluster's CPU comes from /proc/PID/stat of the node
processes and the idle share from /proc/stat. Percentages are of the whole machine:
loadgen + cluster + idle + other = 100. With ``--loadgen-procs auto`` a run whose busiest
worker used more than 70% of a core is repeated with twice as many workers. Client signing
happens in the load generator, which shares the machine's cores with the cluster (its CPU
is reported); the limit above counts it too.

Every process this script starts (nodes, workers, py-spy) is stopped by its pid and the
temp directory removed, on success, on error and on Ctrl-C. Each run is bounded by its
duration plus a timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import uvloop
from floors import rate
from raft_vs_etcd import (
    BUSY_WARN_PCT,
    NCPU,
    OTHER_FLAG_PCT,
    PROCS_MAX,
    SATURATED_CORE_PCT,
    WORKER_READY_S,
    WORKER_SLACK_S,
    Worker,
    _on_sigterm,
    _StartGate,
    add_run_options,
    loadgen_procs_for,
    machine_busy_pct,
    machine_times,
    proc_cpu_s,
    quantile,
    say,
    self_cpu_s,
    split,
    wait_quiet,
)

from consensus.endorse import quorum_size
from identity.certs import cert_to_der
from identity.keys import SigningKey
from identity.keystore import read_cert, read_signing_key
from node.allocator import tune_allocator
from node.bootstrap import InitOptions, init_network, load_network, network_id_of
from node.client import NodeClient, network_ssl_context
from node.client_stream import StreamClient
from node.loadgen import (
    REQUEST_ERRORS,
    REQUEST_TIMEOUT_S,
    RETRY_PAUSE_S,
    HttpConnection,
    StreamPoster,
)
from node.profile import load_profile
from node.supervisor import RunningNode, api_url, start_nodes, stop_nodes, wait_for_leader
from protocol import limits
from protocol.block import ValidationCode, code_name
from protocol.client_stream import ENDORSE, SUBMIT, CommitReceipt
from protocol.codec import decode, encode
from protocol.transaction import Envelope, Proposal, SignedProposal, Transaction

CLIENT_COUNTS = (1, 16, 64, 256, 512)
TARGET_PER_S = 500.0  # issue 4: committed tx/s at the best concurrency
ROLE = b"doctor"
SECRET_SHA256 = hashlib.sha256(b"medledger bench enrolment secret").hexdigest().encode()
GIVE_UP_AFTER_DEADLINE_S = 10.0  # no retry starts later; with two 15 s request timeouts a
# client is done within the 45 s slack the main process allows past the duration
PROFILE_RATE_HZ = 100
PROFILE_WAIT_S = 30.0  # py-spy writing its file after the sampled duration
METRICS = ("signatures_verified", "endorser_proposals", "ordering_blocks_cut", "ordering_txs_cut")


# === the load generator (worker processes) =====================================================


@dataclasses.dataclass(slots=True)
class InvokeResult:
    """What one worker's clients did during the measured window."""

    latencies_s: list[float] = dataclasses.field(default_factory=list)  # VALID only
    endorse_s: list[float] = dataclasses.field(default_factory=list)  # of the same requests
    invalid: list[str] = dataclasses.field(default_factory=list)  # committed, but not VALID
    failures: list[str] = dataclasses.field(default_factory=list)  # refused, or gave up
    retries: int = 0
    signatures: int = 0  # made by the clients
    elapsed_s: float = 0.0


@dataclasses.dataclass(frozen=True, slots=True)
class Gateway:
    """A hospital peer the clients use, and the admin identity they sign with there."""

    url: str
    key: SigningKey
    cert_der: bytes


class InvokeClient:
    """One closed-loop client: endorse, sign, submit, wait for the commit; then the next."""

    def __init__(
        self,
        gateway: Gateway,
        network_id: str,
        subject_prefix: str,
        ssl_context: ssl.SSLContext,
        stream: StreamClient | None = None,
    ) -> None:
        """Requests go over *stream* (shared with the other clients of this gateway) if
        given, else over two keep-alive HTTPS connections of this client's own."""
        where = urlsplit(gateway.url)
        host, port = str(where.hostname), where.port or 443
        self.gateway = gateway
        self.network_id = network_id
        self.subject_prefix = subject_prefix
        self.endorse_conn: HttpConnection | StreamPoster
        self.submit_conn: HttpConnection | StreamPoster
        if stream is not None:
            self.endorse_conn = StreamPoster(stream, ENDORSE)
            self.submit_conn = StreamPoster(stream, SUBMIT)
        else:
            self.endorse_conn = HttpConnection(
                host, port, "/v1/gateway/endorse", "application/msgpack", ssl_context
            )
            self.submit_conn = HttpConnection(
                host, port, "/v1/envelopes", "application/msgpack", ssl_context
            )
        self.sequence = 0

    async def open(self) -> None:
        await asyncio.gather(self.endorse_conn.open(), self.submit_conn.open())

    def close(self) -> None:
        self.endorse_conn.close()
        self.submit_conn.close()

    def signed_proposal(self) -> bytes:
        """A fresh register proposal, signed, in canonical bytes."""
        self.sequence += 1
        subject = f"{self.subject_prefix}n{self.sequence}".encode()
        proposal = Proposal(
            network_id=self.network_id,
            contract="registry",
            function="register",
            args=(subject, ROLE, SECRET_SHA256),
            creator=self.gateway.cert_der,
            nonce=os.urandom(limits.NONCE_BYTES),
            timestamp_ms=int(time.time() * 1000),
        )
        return encode(
            SignedProposal(proposal=proposal, signature=self.gateway.key.sign(encode(proposal)))
        )

    def envelope(self, prepared: bytes) -> bytes:
        """The client's envelope over the prepared transaction's canonical bytes."""
        transaction = decode(prepared, Transaction)  # canonical: encode(transaction) == prepared
        return encode(Envelope(transaction=transaction, signature=self.gateway.key.sign(prepared)))

    async def post(
        self,
        conn: HttpConnection | StreamPoster,
        body: bytes,
        give_up_at: float,
        out: InvokeResult,
    ) -> tuple[int, bytes]:
        """POST *body*, retrying 502-504 and connection errors (the same bytes each time:
        an envelope is ordered at most once) until an answer or *give_up_at*."""
        while True:
            try:
                # A timeout context, not wait_for: no task per request.
                async with asyncio.timeout(REQUEST_TIMEOUT_S):
                    status, answer = await conn.post(body)
            except REQUEST_ERRORS as e:
                conn.close()
                status, answer = 0, f"{type(e).__name__}: {e}".encode()
            if status not in (0, 502, 503, 504) or time.perf_counter() >= give_up_at:
                return status, answer
            out.retries += 1
            await asyncio.sleep(RETRY_PAUSE_S)

    async def run(self, take: Callable[[], bool], give_up_at: float, out: InvokeResult) -> None:
        """Invoke until *take* says the clock has stopped."""
        while take():
            body = self.signed_proposal()
            out.signatures += 1
            sent = time.perf_counter()
            status, prepared = await self.post(self.endorse_conn, body, give_up_at, out)
            if status != 200:
                out.failures.append(f"endorse {status}: {prepared[:160].decode(errors='replace')}")
                continue
            endorsed = time.perf_counter()
            envelope = self.envelope(prepared)
            out.signatures += 1
            status, answer = await self.post(self.submit_conn, envelope, give_up_at, out)
            if status != 200:
                out.failures.append(f"submit {status}: {answer[:160].decode(errors='replace')}")
                continue
            code, why = _outcome(answer, self.submit_conn)
            if code != ValidationCode.VALID:
                out.invalid.append(why[:160])
                continue
            out.latencies_s.append(time.perf_counter() - sent)
            out.endorse_s.append(endorsed - sent)


def _outcome(answer: bytes, conn: HttpConnection | StreamPoster) -> tuple[int, str]:
    """A 200 submit answer's validation code, and its status and reason in words."""
    if isinstance(conn, StreamPoster):
        receipt = decode(answer, CommitReceipt)
        return receipt.code, f"{code_name(receipt.code)}: {receipt.reason}"
    doc = json.loads(answer)
    return doc["code"], f"{doc['status']}: {doc['reason']}"


async def run_invoke_load(
    gateways: list[Gateway],
    ssl_context: ssl.SSLContext,
    *,
    network_id: str,
    clients: int,
    first_client: int,
    warmup_s: float,
    duration_s: float,
    tag: str,
    before_start: Callable[[], Awaitable[None]],
    api: str = "stream",
) -> InvokeResult:
    """*clients* closed-loop clients (numbered from *first_client*, client n on gateway
    n mod len(gateways)): connect, invoke unmeasured for *warmup_s* (so the gateways' pools
    of endorser connections grow to this concurrency before the clock), await
    *before_start*, then invoke for *duration_s*; what the second phase did. With *api*
    ``stream`` the clients of a gateway share one client stream to it; with ``http`` each
    client keeps its own HTTPS connections."""
    streams = {g.url: StreamClient(g.url, ssl_context) for g in gateways} if api == "stream" else {}
    fleet = [
        InvokeClient(
            gateways[n % len(gateways)],
            network_id,
            f"{tag}c{n}",
            ssl_context,
            streams.get(gateways[n % len(gateways)].url),
        )
        for n in range(first_client, first_client + clients)
    ]
    try:
        await asyncio.gather(*(c.open() for c in fleet), return_exceptions=True)
        await _invoke_for(fleet, warmup_s, InvokeResult())
        await before_start()
        return await _invoke_for(fleet, duration_s, InvokeResult())
    finally:
        for c in fleet:
            c.close()
        await asyncio.gather(*(s.close() for s in streams.values()))


async def _invoke_for(
    fleet: list[InvokeClient], duration_s: float, out: InvokeResult
) -> InvokeResult:
    """Run every client of *fleet* until *duration_s* has passed (in-flight ones finish)."""
    start = time.perf_counter()
    deadline = start + duration_s

    def take() -> bool:
        return time.perf_counter() < deadline

    await asyncio.gather(*(c.run(take, deadline + GIVE_UP_AFTER_DEADLINE_S, out) for c in fleet))
    out.elapsed_s = time.perf_counter() - start
    return out


def worker_main() -> int:
    """One load generator process: read a spec, connect, say "ready", wait for "go", run."""
    tune_allocator()  # as the nodes do
    spec = json.loads(sys.stdin.readline())
    net = Path(spec["network"])
    gateways = []
    for url, org_id in spec["gateways"]:
        admin = net / "orgs" / org_id / "admin"
        key = read_signing_key(admin / "admin.key")
        gateways.append(Gateway(url, key, cert_to_der(read_cert(admin / "admin.pem"))))
    gate = _StartGate()
    result = uvloop.run(
        run_invoke_load(
            gateways,
            network_ssl_context(net),
            network_id=network_id_of(net),
            clients=spec["clients"],
            first_client=spec["first_client"],
            warmup_s=spec["warmup_s"],
            duration_s=spec["duration_s"],
            tag=spec["tag"],
            before_start=gate.wait_for_go,
            api=spec["api"],
        )
    )
    doc = {
        "latencies_ms": [round(s * 1000, 4) for s in result.latencies_s],
        "endorse_ms": [round(s * 1000, 4) for s in result.endorse_s],
        "invalid": len(result.invalid),
        "invalid_samples": result.invalid[:3],
        "failures": len(result.failures),
        "failure_samples": result.failures[:3],
        "retries": result.retries,
        "signatures": result.signatures,
        "elapsed_s": result.elapsed_s,
        "cpu_s": self_cpu_s() - gate.cpu_at_go,
    }
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()
    return 0


class InvokeWorker(Worker):
    """A load generator process running this script's worker (same protocol as
    raft_vs_etcd's: spec line, "ready", "go", result line)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        command = [sys.executable, str(Path(__file__).resolve()), "--worker"]
        # A new session: a Ctrl-C reaches only us, and we stop it by its pid.
        pipe = subprocess.PIPE
        self.proc = subprocess.Popen(command, stdin=pipe, stdout=pipe, start_new_session=True)
        self._buffer = b""
        self.send(json.dumps(spec))


# === the network, its metrics and a profiler ===================================================


@dataclasses.dataclass(frozen=True, slots=True)
class Floors:
    """This machine's ECDSA P-256 rates on one core (bench/floors.py's timing rule)."""

    verify_per_s: float
    sign_per_s: float

    @classmethod
    def measure(cls, seconds: float) -> Floors:
        key = SigningKey.generate()
        message = os.urandom(200)  # as bench/floors.py; hashing more adds about 1%
        signature = key.sign(message)
        public = key.public_key
        return cls(
            verify_per_s=rate(lambda: public.verify(message, signature), seconds),
            sign_per_s=rate(lambda: key.sign(message), seconds),
        )

    def limit_per_s(self, verifies_per_tx: float, signs_per_tx: float) -> float:
        """Transactions/s all cores could do if they did nothing but these signatures."""
        cost_s = verifies_per_tx / self.verify_per_s + signs_per_tx / self.sign_per_s
        return NCPU / cost_s if cost_s > 0 else float("nan")


def scrape_metrics(
    urls: dict[str, str], ssl_context: ssl.SSLContext | None
) -> dict[str, dict[str, int]]:
    """The counters in METRICS of every node (by node id), from its /metrics."""
    out = {}
    for node_id, url in urls.items():
        text = NodeClient(url, ssl_context, timeout_s=10).request_text("/metrics")
        values = dict(
            line.removeprefix("medledger_").split(" ", 1)
            for line in text.splitlines()
            if line.startswith("medledger_")
        )
        out[node_id] = {name: int(values.get(name, "0")) for name in METRICS}
    return out


class Profiler:
    """py-spy sampling one node for one run (raw collapsed stacks into a file)."""

    def __init__(self, pid: int, seconds: float, path: Path) -> None:
        self.path = path
        py_spy = Path(sys.executable).parent / "py-spy"
        if not py_spy.exists():
            raise SystemExit(f"--profile needs py-spy: {sys.executable} -m pip install py-spy")
        self.proc = subprocess.Popen(
            [
                str(py_spy), "record", "--pid", str(pid), "--duration", str(math.ceil(seconds)),
                "--rate", str(PROFILE_RATE_HZ), "--format", "raw", "--nonblocking",
                "--output", str(path),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )  # fmt: skip

    def finish(self) -> dict[str, float]:
        """Wait for py-spy; the samples in each PROFILE_CATEGORIES entry, and in all."""
        try:
            _, err = self.proc.communicate(timeout=PROFILE_WAIT_S)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError("py-spy did not finish in time") from None
        if self.proc.returncode != 0 or not self.path.exists():
            raise RuntimeError(f"py-spy failed: {err.decode(errors='replace')[-300:]}")
        return stack_counts(self.path.read_text())

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)


# A collapsed-stack frame: "Class.function (path/file.py:line)".
_FRAME = re.compile(r"^(?:[^ ]*\.)?(?P<function>[^ .]+) \((?P<file>[^:)]+)")
PROFILE_CATEGORIES = {  # name: (function, file it is defined in)
    "verify": ("verify", "identity/keys.py"),  # VerifyingKey.verify: one ECDSA verification
    "sign": ("sign", "identity/keys.py"),  # SigningKey.sign
    "tls_handshake": ("do_handshake", "ssl.py"),  # SSLObject.do_handshake (node to node)
}


def stack_counts(raw: str) -> dict[str, float]:
    """From py-spy's raw output (one "frame;frame;... count" line per stack, root first):
    the samples with a frame of each PROFILE_CATEGORIES entry, and all samples ("all")."""
    counts = dict.fromkeys([*PROFILE_CATEGORIES, "all"], 0.0)
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        counts["all"] += count
        frames = {m.groups() for m in map(_FRAME.match, stack.split(";")) if m is not None}
        for name, (function, file) in PROFILE_CATEGORIES.items():
            if any(f == function and path.endswith(file) for f, path in frames):
                counts[name] += count
    return counts


# === one measured run ==========================================================================


@dataclasses.dataclass(slots=True)
class E2ERun:
    """The figures of one client count."""

    clients: int
    loadgen_procs: int
    committed: int  # VALID
    invalid: int  # committed with another validation code
    failures: int  # not committed: refused, no quorum, or gave up
    retries: int
    elapsed_s: float  # the load generators' clock: go to the last answer
    wall_s: float  # the CPU accounting window: go to the last worker's report
    throughput_per_s: float  # VALID commits
    p50_ms: float  # proposal sent -> commit answer
    p99_ms: float
    endorse_p50_ms: float  # proposal sent -> prepared transaction back
    endorse_p99_ms: float
    txs_per_block: float
    verifies_per_tx: float  # across the network
    signs_per_tx: float  # across the network, the client's two included
    verify_cpu_pct: float  # of the cluster's CPU seconds
    sign_cpu_pct: float  # of the cluster's CPU seconds (endorsements, block headers)
    limit_per_s: float
    limit_ratio: float
    cpu_ms_per_tx: float  # cluster and load generator CPU per VALID commit
    floor_ms_per_tx: float  # the CPU its V verifications and S signatures take at the floors
    loadgen_cpu_pct: float  # of the whole machine (all cores)
    cluster_cpu_pct: float
    idle_pct: float
    other_pct: float
    loadgen_busiest_core_pct: float
    node_cpu_s: dict[str, float]
    node_verifies: dict[str, int]
    samples: list[str]  # a few invalid and failure reasons
    profile: dict[str, Any] | None = None


class Bench:
    """The network and everything else one benchmark run started, so all of it can stop."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="medledger-e2e-"))
        self.net = self.root / "local"
        self.nodes: list[RunningNode] = []
        self.workers: list[Worker] = []
        self.profiler: Profiler | None = None
        self.runs: list[E2ERun] = []
        self.floors: Floors | None = None
        self.leader = ""
        self.run_count = 0
        self.ssl_context: ssl.SSLContext | None = None  # set by start()
        self.urls: dict[str, str] = {}  # node id -> API URL
        self.gateways: list[list[str]] = []  # [API URL, org id] of each hospital peer
        self.pids: dict[str, int] = {}  # node id -> pid

    # --- lifecycle ---

    def start(self) -> None:
        say(f"initialising and starting the local network under {self.net}")
        init_network(load_profile("local"), InitOptions(out=self.net, force=False, now=_now()))
        self.nodes = start_nodes(self.net, detach=True)
        self.leader = wait_for_leader(self.net, self.nodes)
        say(f"leader {self.leader}")
        entries = load_network(self.net)
        self.ssl_context = network_ssl_context(self.net)
        self.urls = {e.node_id: api_url(e) for e in entries}
        self.gateways = [[api_url(e), e.org_id] for e in entries if e.role == "peer"]
        self.pids = {n.entry.node_id: n.pid for n in self.nodes}

    def cleanup(self) -> None:
        """Stop whatever is still running (by pid) and remove the temp directory."""
        if self.profiler is not None:
            self.profiler.stop()
        for worker in list(self.workers):
            worker.stop()
        self.workers.clear()
        if self.nodes:
            say("stopping the network")
            stop_nodes(self.net, self.nodes)
            self.nodes = []
        if self.args.keep:
            say(f"kept {self.root}")
        else:
            shutil.rmtree(self.root, ignore_errors=True)

    # --- runs ---

    def sweep(self) -> None:
        args = self.args
        for clients in args.clients:

            def run_once(procs: int, clients: int = clients) -> E2ERun:
                if args.wait_quiet > 0:
                    wait_quiet(list(self.pids.values()), args.wait_quiet)
                return self.measure(clients, args.seconds, procs)

            run = with_enough_loadgen(run_once, clients, args.loadgen_procs)
            self.runs.append(run)
            say(
                f"  {clients:>3} clients: {run.throughput_per_s:6.0f} committed/s "
                f"p50 {run.p50_ms:7.1f} ms p99 {run.p99_ms:7.1f} ms  "
                f"loadgen {run.loadgen_procs} proc {run.loadgen_cpu_pct:3.0f}% "
                f"cluster {run.cluster_cpu_pct:3.0f}% idle {run.idle_pct:3.0f}% "
                f"other {run.other_pct:3.0f}%  invalid {run.invalid} failed {run.failures}"
            )
        if args.profile and self.runs:
            best = max(self.runs, key=lambda r: r.throughput_per_s)
            node_id = args.profile_node or self.gateways[0][1]
            if node_id not in self.pids:
                raise SystemExit(f"--profile-node: no node {node_id!r}")
            say(f"profiling {node_id} with py-spy at {best.clients} clients")
            run = self.measure(best.clients, args.seconds, best.loadgen_procs, profile=node_id)
            best.profile = run.profile

    def measure(
        self, clients: int, duration_s: float, procs: int, profile: str | None = None
    ) -> E2ERun:
        """Start the workers, let them connect, then run them together; account CPU and
        signatures (and, with *profile*, have py-spy sample that node)."""
        self.run_count += 1
        workers = []
        first = 0
        for share in split(clients, procs):
            spec = {
                "network": str(self.net),
                "gateways": self.gateways,
                "clients": share,
                "first_client": first,
                "warmup_s": self.args.warmup,
                "duration_s": duration_s,
                "tag": f"r{self.run_count}",
                "api": self.args.api,
            }
            first += share
            worker = InvokeWorker(spec)
            self.workers.append(worker)
            workers.append(worker)
        try:
            ready_s = WORKER_READY_S + self.args.warmup + WORKER_SLACK_S  # connect, warm up
            for w in workers:
                if w.line(ready_s) != "ready":
                    raise RuntimeError(f"load generator pid {w.pid} did not get ready")
            metrics_before = scrape_metrics(self.urls, self.ssl_context)
            cpu_before = {node: proc_cpu_s(pid) for node, pid in self.pids.items()}
            machine_before = machine_times()
            wall_before = time.perf_counter()
            for w in workers:
                w.send("go")
            if profile is not None:
                self.profiler = Profiler(
                    self.pids[profile], duration_s, self.root / f"profile-{self.run_count}.txt"
                )
            results = [json.loads(w.line(duration_s + WORKER_SLACK_S)) for w in workers]
            wall = time.perf_counter() - wall_before
            cpu_after = {node: proc_cpu_s(pid) for node, pid in self.pids.items()}
            machine_after = machine_times()
            metrics_after = scrape_metrics(self.urls, self.ssl_context)
            samples = self.profiler.finish() if self.profiler is not None else None
        finally:
            for w in workers:
                w.stop()
                self.workers.remove(w)
            if self.profiler is not None:
                self.profiler.stop()
                self.profiler = None
        node_cpu = {node: cpu_after[node] - cpu_before[node] for node in self.pids}
        delta = {
            node: {k: metrics_after[node][k] - metrics_before[node][k] for k in METRICS}
            for node in self.urls
        }
        run = self._figures(clients, results, wall, node_cpu, delta, machine_before, machine_after)
        if profile is not None and samples is not None:
            run.profile = self._profile_figures(profile, samples, node_cpu[profile], delta[profile])
        return run

    def _profile_figures(
        self, node_id: str, samples: dict[str, float], node_cpu_s: float, delta: dict[str, int]
    ) -> dict[str, Any]:
        """py-spy's samples of each category as % of all its (non-idle) samples of the node,
        next to the verify share of the node's CPU that its metrics give."""
        verify_s = delta["signatures_verified"] / self._floors().verify_per_s
        return {
            "node": node_id,
            "samples": samples,
            "py_spy_pct": {
                name: 100 * count / samples["all"] if samples["all"] else math.nan
                for name, count in samples.items()
                if name != "all"
            },
            "metrics_verify_pct": 100 * verify_s / node_cpu_s if node_cpu_s else math.nan,
        }

    def _floors(self) -> Floors:
        if self.floors is None:
            raise RuntimeError("floors not measured")
        return self.floors

    def _figures(
        self,
        clients: int,
        results: list[dict[str, Any]],
        wall: float,
        node_cpu: dict[str, float],
        delta: dict[str, dict[str, int]],
        machine_before: tuple[float, float],
        machine_after: tuple[float, float],
    ) -> E2ERun:
        floors = self._floors()
        latencies = sorted(x for r in results for x in r["latencies_ms"])
        endorse = sorted(x for r in results for x in r["endorse_ms"])
        invalid = sum(r["invalid"] for r in results)
        elapsed = max(r["elapsed_s"] for r in results)
        ordered = len(latencies) + invalid  # transactions that reached a block
        total = {k: sum(d[k] for d in delta.values()) for k in METRICS}
        verifies = total["signatures_verified"]
        node_signs = total["endorser_proposals"] + total["ordering_blocks_cut"]
        client_signs = sum(r["signatures"] for r in results)
        per_tx = 1 / ordered if ordered else float("nan")
        cluster_cpu = sum(node_cpu.values())
        capacity = wall * NCPU
        loadgen_cpu = sum(r["cpu_s"] for r in results)
        loadgen_pct = 100 * loadgen_cpu / capacity
        cluster_pct = 100 * cluster_cpu / capacity
        jiffies = machine_after[0] - machine_before[0]
        idle_pct = 100 * (machine_after[1] - machine_before[1]) / jiffies if jiffies else math.nan
        throughput = len(latencies) / elapsed if elapsed else 0.0
        limit = floors.limit_per_s(verifies * per_tx, (node_signs + client_signs) * per_tx)
        return E2ERun(
            clients=clients,
            loadgen_procs=len(results),
            committed=len(latencies),
            invalid=invalid,
            failures=sum(r["failures"] for r in results),
            retries=sum(r["retries"] for r in results),
            elapsed_s=elapsed,
            wall_s=wall,
            throughput_per_s=throughput,
            p50_ms=quantile(latencies, 0.5),
            p99_ms=quantile(latencies, 0.99),
            endorse_p50_ms=quantile(endorse, 0.5),
            endorse_p99_ms=quantile(endorse, 0.99),
            txs_per_block=total["ordering_txs_cut"] / total["ordering_blocks_cut"]
            if total["ordering_blocks_cut"]
            else math.nan,
            verifies_per_tx=verifies * per_tx,
            signs_per_tx=(node_signs + client_signs) * per_tx,
            verify_cpu_pct=100 * verifies / floors.verify_per_s / cluster_cpu
            if cluster_cpu
            else math.nan,
            sign_cpu_pct=100 * node_signs / floors.sign_per_s / cluster_cpu
            if cluster_cpu
            else math.nan,
            limit_per_s=limit,
            limit_ratio=throughput / limit if limit else math.nan,
            cpu_ms_per_tx=1000 * (cluster_cpu + loadgen_cpu) / len(latencies)
            if latencies
            else math.nan,
            floor_ms_per_tx=1000 * NCPU / limit if limit else math.nan,
            loadgen_cpu_pct=loadgen_pct,
            cluster_cpu_pct=cluster_pct,
            idle_pct=idle_pct,
            other_pct=max(0.0, 100 - loadgen_pct - cluster_pct - idle_pct),
            loadgen_busiest_core_pct=100 * max(r["cpu_s"] for r in results) / wall,
            node_cpu_s=node_cpu,
            node_verifies={node: d["signatures_verified"] for node, d in delta.items()},
            samples=[s for r in results for s in r["invalid_samples"] + r["failure_samples"]][:5],
        )


def full_check_verifies(nodes: int, endorsers: int) -> int:
    """The fewest ECDSA verifications per transaction with every signature in it checked
    once by every node that did not make it: the envelope's on each node, each of the q
    endorsements on every node but its endorser's, the proposal's on each endorser. (The
    gateway also checks the endorsements it collects beyond q, unless they are its own.)"""
    q = quorum_size(endorsers)
    return nodes + q * (nodes - 1) + endorsers


def with_enough_loadgen(run_once: Callable[[int], E2ERun], clients: int, setting: str) -> E2ERun:
    """*run_once* with the worker count *setting* asks for; with "auto", again with twice
    the workers (up to PROCS_MAX, at most one per client) while the busiest one used more
    than SATURATED_CORE_PCT of a core, so one Python process never bounds the figures."""
    procs = loadgen_procs_for(clients, setting)
    run = run_once(procs)
    while setting == "auto" and run.loadgen_busiest_core_pct > SATURATED_CORE_PCT:
        more = min(clients, 2 * procs, PROCS_MAX)
        if more <= procs:
            break
        say(
            f"  a load generator process used {run.loadgen_busiest_core_pct:.0f}% of a core; "
            f"repeating with {more} processes"
        )
        procs = more
        run = run_once(procs)
    return run


def _now() -> datetime:
    return datetime.now(UTC)


# === report ====================================================================================


def print_table(
    runs: list[E2ERun],
    columns: list[tuple[str, str, str]],
    mark: Callable[[E2ERun], str] = lambda run: "",
) -> None:
    """One row per run; *columns* are (header, E2ERun field, format spec), right-aligned to
    the header's width (7 at least); *mark* may append a note to a row."""
    widths = [max(7, len(header)) for header, _, _ in columns]
    print(" ".join(f"{header:>{w}}" for (header, _, _), w in zip(columns, widths, strict=True)))
    print("-" * (sum(widths) + len(widths) - 1))
    for run in runs:
        cells = (
            f"{getattr(run, field):>{w}{spec}}"
            for (_, field, spec), w in zip(columns, widths, strict=True)
        )
        print(" ".join(cells) + mark(run))


def print_report(bench: Bench, busy: float) -> None:
    runs, floors = bench.runs, bench._floors()
    print(
        f"machine: {NCPU} cores, {platform.python_implementation()} {platform.python_version()}, "
        f"{busy:.0f}% busy before start; network: local profile (5 nodes, 4 endorsing "
        f"hospitals, q=3), leader {bench.leader}; client API: {bench.args.api}"
    )
    print(
        f"floors (one core): ECDSA P-256 verify {floors.verify_per_s:,.0f}/s, "
        f"sign {floors.sign_per_s:,.0f}/s"
    )
    print()
    print(
        "committed/s counts VALID commits; latency is from sending the proposal to the commit "
        "answer (endorse: to the prepared transaction).\n"
        "CPU % is of the whole machine (all cores): loadgen + cluster + idle + other = 100."
    )
    print_table(
        runs,
        [
            ("clients", "clients", "d"),
            ("committed/s", "throughput_per_s", ".0f"),
            ("p50 ms", "p50_ms", ".1f"),
            ("p99 ms", "p99_ms", ".1f"),
            ("endorse p50", "endorse_p50_ms", ".1f"),
            ("invalid", "invalid", "d"),
            ("failed", "failures", "d"),
            ("loadgen CPU%", "loadgen_cpu_pct", ".0f"),
            ("cluster CPU%", "cluster_cpu_pct", ".0f"),
            ("idle%", "idle_pct", ".0f"),
            ("other%", "other_pct", ".0f"),
            ("lg procs", "loadgen_procs", "d"),
        ],
        mark=lambda r: " *" if r.other_pct > OTHER_FLAG_PCT else "",
    )
    if any(r.other_pct > OTHER_FLAG_PCT for r in runs):
        print(
            f"* other work took over {OTHER_FLAG_PCT:.0f}% of the machine during this run: "
            "its figures are not clean (try --wait-quiet 60)"
        )
    print()
    print(
        "Signatures per committed transaction across the network (S includes the client's 2);"
        " CPU shares are of the cluster's CPU seconds;\n"
        f"limit = {NCPU} cores / (V / verify_per_s + S / sign_per_s); CPU ms/tx: cluster and "
        "load generator CPU per VALID commit; floor ms/tx: what its signatures alone take."
    )
    print_table(
        runs,
        [
            ("clients", "clients", "d"),
            ("txs/block", "txs_per_block", ".1f"),
            ("V verifies", "verifies_per_tx", ".2f"),
            ("S signs", "signs_per_tx", ".2f"),
            ("verify CPU%", "verify_cpu_pct", ".1f"),
            ("sign CPU%", "sign_cpu_pct", ".1f"),
            ("limit/s", "limit_per_s", ".0f"),
            ("measured/limit", "limit_ratio", ".2f"),
            ("CPU ms/tx", "cpu_ms_per_tx", ".2f"),
            ("floor ms/tx", "floor_ms_per_tx", ".2f"),
        ],
    )
    samples = [s for r in runs for s in r.samples][:5]
    if samples:
        print()
        print("invalid/failed samples:")
        for s in samples:
            print(f"  {s}")
    if not runs:
        return
    best = max(runs, key=lambda r: r.throughput_per_s)
    nodes, endorsers = len(bench.urls), len(bench.gateways)
    needed = full_check_verifies(nodes, endorsers)
    measured = [r.verifies_per_tx for r in runs if r.committed + r.invalid]
    checked = bool(measured) and min(measured) >= needed - 0.01
    print()
    print(
        f"every signature checked once by every node that did not make it needs at least "
        f"{needed} verifications per tx ({nodes} envelope checks + q endorsements x "
        f"{nodes - 1} other nodes + {endorsers} proposal checks by the endorsers; the gateway "
        f"also checks the endorsements beyond q); block headers, signed by the "
        f"leader, reach the others over Raft and are verified on catch-up only. Measured V: "
        f"{', '.join(f'{v:.2f}' for v in measured)} -> "
        f"{'all checked' if checked else 'SOME NOT CHECKED'}"
    )
    print(
        f"best: {best.throughput_per_s:.0f} committed/s at {best.clients} clients; physical "
        f"limit there {best.limit_per_s:.0f}/s ({best.verifies_per_tx:.1f} verifies + "
        f"{best.signs_per_tx:.1f} signs per tx); measured/limit {best.limit_ratio:.2f}"
    )
    by_node = ", ".join(
        f"{node} {100 * cpu / best.wall_s:.0f}" + (" (leader)" if node == bench.leader else "")
        for node, cpu in best.node_cpu_s.items()
    )
    print(f"CPU by node at {best.clients} clients, % of one core: {by_node}")
    met = best.throughput_per_s >= TARGET_PER_S
    print(f"target >= {TARGET_PER_S:.0f} committed/s at the best concurrency: "
          f"{'PASS' if met else 'MISS'}")  # fmt: skip
    if best.profile is not None:
        p = best.profile
        pct = p["py_spy_pct"]
        print(
            f"profile of {p['node']} (a separate run at {best.clients} clients; py-spy, "
            f"{PROFILE_RATE_HZ} Hz, {p['samples']['all']:.0f} non-idle samples): verify "
            f"{pct['verify']:.1f}% of samples (metrics: {p['metrics_verify_pct']:.1f}% of its "
            f"CPU), sign {pct['sign']:.1f}%, TLS handshakes {pct['tls_handshake']:.1f}%"
        )


# === main ======================================================================================


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="each measured run")
    parser.add_argument(
        "--clients",
        type=lambda s: [int(x) for x in s.split(",")],
        default=list(CLIENT_COUNTS),
        help="client counts, comma-separated (default 1,16,64,256,512)",
    )
    parser.add_argument(
        "--warmup",
        type=float,
        default=2.0,
        help="unmeasured seconds of load before each run, at its client count",
    )
    parser.add_argument(
        "--floor-seconds", type=float, default=1.5, help="time for each floor (verify, sign)"
    )
    parser.add_argument(
        "--profile", action="store_true", help="one more run with py-spy sampling a node"
    )
    parser.add_argument(
        "--profile-node", default=None, help="the node to profile (default: the first peer)"
    )
    add_run_options(parser, api_default="stream")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.seconds > 600:
        parser.error("--seconds must be in (0, 600]")
    if not args.clients or min(args.clients) < 1 or max(args.clients) > 1024:
        parser.error("--clients must be between 1 and 1024")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker_main()
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = time.monotonic()
    busy = machine_busy_pct(1.0)
    say(f"machine busy before start: {busy:.0f}% of {NCPU} cores")
    if busy > BUSY_WARN_PCT:
        say("WARNING: something else is using the CPU; the figures below share it (see other%)")
    bench = Bench(args)
    try:
        if args.wait_quiet > 0:
            wait_quiet([], args.wait_quiet)
        bench.floors = Floors.measure(args.floor_seconds)
        say(
            f"floors: verify {bench.floors.verify_per_s:,.0f}/s, "
            f"sign {bench.floors.sign_per_s:,.0f}/s (one core)"
        )
        bench.start()
        bench.sweep()
    except KeyboardInterrupt:
        say("interrupted; stopping everything")
        return 130
    finally:
        bench.cleanup()
    if args.json:
        doc = {
            "machine": {"cores": NCPU, "python": platform.python_version(), "busy_pct": busy},
            "floors": dataclasses.asdict(bench._floors()),
            "seconds": args.seconds,
            "api": args.api,
            "runs": [dataclasses.asdict(r) for r in bench.runs],
            "target_per_s": TARGET_PER_S,
        }
        print(json.dumps(doc, indent=2))
    else:
        print_report(bench, busy)
    say(f"took {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
