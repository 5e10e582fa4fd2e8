"""Faults injected into the ordering service of real processes, under closed-loop load.

- A partition: the leader is cut off from every member (SIGUSR1). The other four elect a new
  leader and keep committing; the isolated leader steps down (check-quorum) without raising
  its term (pre-vote); once healed it follows the new leader at the new term. An isolated
  leader that clients keep submitting to steps down rather than exiting.
- Named failpoints (``MEDLEDGER_FAILPOINTS``): for each of the Raft fsync and block commit
  failpoints, nodes are restarted armed and die there (exit code 86) at least five times:
  the leader restarted armed, a follower restarted armed and armed again as it recovers, and
  the whole cluster power-cut and restarted armed at once (so whoever leads dies there too).
- A follower kept down while the others commit hundreds of blocks catches up by log
  replication, under load.
- The snapshot failpoints: a node dies while compacting its log, and a node kept down past
  a compaction point dies while installing the snapshot, five times each.

After each: no acknowledged envelope lost, none ordered twice, every node's chain verifies
and all chains are identical. Tests that use randomness print their seed (replay the choices
with ``MEDLEDGER_TEST_SEED``; timing is not replayed).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest

from node import loadgen
from node.client import NodeRefused, NodeUnavailable
from node.envelopes import opaque_envelope
from node.failpoints import ENV_VAR as FAILPOINTS_ENV
from node.failpoints import FAILPOINT_EXIT_CODE
from node.loadgen import Ack
from node.supervisor import api_url
from protocol.codec import encode
from tests.integration.cluster import NETWORK_ID, Cluster, chain_tx_ids, wait_for
from tests.integration.conftest import InitialisedNetwork, init_local_network

T = TypeVar("T")

CLIENTS = 6
ENVELOPE_PATIENCE_S = 60.0  # a client gives up on an envelope after this long
HITS = 5  # every failpoint is hit at least this often
MAJORITY = 3  # of five members


# === fixtures and helpers =======================================================================


@pytest.fixture
def rng() -> random.Random:
    """A seeded Random; the seed is printed, so a failing run shows it."""
    seed = int(os.environ.get("MEDLEDGER_TEST_SEED") or random.SystemRandom().randrange(2**32))
    print(f"seed {seed} (MEDLEDGER_TEST_SEED={seed} replays the test's choices)")
    return random.Random(seed)


def init_network_tuned(out: Path, raft_toml: str = "") -> InitialisedNetwork:
    """The local profile's network, with an optional [raft] table in every node's config."""
    net = init_local_network(out)
    if raft_toml:
        for entry in net.nodes:
            with entry.config.open("a") as f:
                f.write(f"\n[raft]\n{raft_toml}")
    return net


def running_cluster(net: InitialisedNetwork) -> Iterator[Cluster]:
    c = Cluster(net)
    try:
        c.leader()
        yield c
    finally:
        c.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A running local network (five node processes)."""
    yield from running_cluster(init_network_tuned(tmp_path / "net"))


@pytest.fixture
def compacting_cluster(tmp_path: Path) -> Iterator[Cluster]:
    """The same, with nodes that compact their Raft log every 20 entries."""
    net = init_network_tuned(
        tmp_path / "net", "snapshot_interval_entries = 20\nsnapshot_catchup_entries = 5\n"
    )
    yield from running_cluster(net)


class Load:
    """Closed-loop clients in a thread, as node.loadgen's: each signs an envelope, submits it
    to the nodes in turn, resends the *same* envelope after 503, 504 or a connection error,
    and submits the next once it is acknowledged.

    Unlike ``run_load`` it runs until :meth:`stop`, which abandons the envelopes in flight
    (unacknowledged, so nothing is claimed about them), and every acknowledgement is visible
    at once. A client that gets no acknowledgement within :data:`ENVELOPE_PATIENCE_S` (the
    whole cluster down that long) records a failure.
    """

    def __init__(
        self,
        cluster: Cluster,
        clients: int = CLIENTS,
        payload_bytes: int = 256,
        avoid: tuple[str, ...] = (),
    ) -> None:
        self.urls = [api_url(cluster.entry(n)) for n in sorted(cluster.nodes) if n not in avoid]
        self.ctx = cluster.ctx
        self.key, self.cert = cluster.admin()
        self.clients = clients
        self.payload_bytes = payload_bytes
        self.acks: list[Ack] = []
        self.failures: list[str] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._running = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._running.set()
        timeout = aiohttp.ClientTimeout(total=loadgen.REQUEST_TIMEOUT_S)
        connector = aiohttp.TCPConnector(ssl=self.ctx, limit=0)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            tasks = [asyncio.create_task(self._client(i, session)) for i in range(self.clients)]
            await self._stopping.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _client(self, number: int, session: aiohttp.ClientSession) -> None:
        turn = number
        payload = bytes([number % 256]) * self.payload_bytes
        while True:
            body = self.envelope(payload)
            sent = time.perf_counter()
            attempt = 0
            while True:
                attempt += 1
                url = self.urls[turn % len(self.urls)] + "/v1/envelopes"
                turn += 1
                try:
                    async with session.post(
                        url, data=body, headers={"Content-Type": "application/msgpack"}
                    ) as response:
                        if response.status == 200:
                            doc = await response.json()
                            latency = time.perf_counter() - sent
                            self.acks.append(
                                Ack(doc["tx_id"], doc["block"], doc["index"], latency, attempt)
                            )
                            break
                        if response.status not in (503, 504):
                            text = (await response.text())[:200]
                            self.failures.append(f"{url}: {response.status} {text}")
                            break
                except (aiohttp.ClientError, OSError, TimeoutError):
                    pass
                if time.perf_counter() - sent > ENVELOPE_PATIENCE_S:
                    self.failures.append(f"not acknowledged within {ENVELOPE_PATIENCE_S} s")
                    break
                await asyncio.sleep(loadgen.RETRY_PAUSE_S)

    def __enter__(self) -> Load:
        self._thread.start()
        self._running.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive() and self._loop is not None and self._stopping is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(timeout=30)

    def envelope(self, payload: bytes) -> bytes:
        """One more signed envelope, for a direct submission."""
        return encode(
            opaque_envelope(
                payload,
                network_id=NETWORK_ID,
                key=self.key,
                cert_der=self.cert,
                timestamp_ms=int(time.time() * 1000),
            )
        )

    def wait_acks(self, more: int, timeout_s: float = 30.0) -> None:
        """Wait until *more* envelopes beyond those acknowledged so far are acknowledged."""
        target = len(self.acks) + more
        wait_for(
            lambda: len(self.acks) >= target or None,
            timeout_s,
            lambda: f"{more} more acknowledgements ({len(self.acks)}/{target})",
        )

    def stop(self) -> list[Ack]:
        """Stop the clients and return every acknowledgement."""
        self.__exit__()
        assert not self._thread.is_alive(), "the clients did not stop"
        assert not self.failures, self.failures[:5]
        assert len({a.tx_id for a in self.acks}) == len(self.acks), "an envelope acked twice"
        return list(self.acks)


class Laps:
    """Named phase durations, printed with a test's result."""

    def __init__(self) -> None:
        self.last = time.monotonic()
        self.laps: list[str] = []

    def __call__(self, name: str) -> None:
        now = time.monotonic()
        self.laps.append(f"{name} {now - self.last:.1f} s")
        self.last = now

    def __str__(self) -> str:
        return "; ".join(self.laps)


def direct_ack(doc: dict[str, Any]) -> Ack:
    """The acknowledgement of a direct submission (NodeClient.submit)."""
    return Ack(doc["tx_id"], doc["block"], doc["index"], 0.0, 1)


def status(cluster: Cluster, node: str) -> dict[str, Any] | None:
    """*node*'s Raft status, or None if it does not answer."""
    try:
        return cluster.client(node, timeout_s=3.0).raft_status()
    except (NodeUnavailable, NodeRefused):
        return None


def status_when(
    cluster: Cluster, node: str, ok: Callable[[dict[str, Any]], bool]
) -> Callable[[], dict[str, Any] | None]:
    """A probe for :func:`wait_for`: *node*'s Raft status once *ok* holds for it."""

    def probe() -> dict[str, Any] | None:
        s = status(cluster, node)
        return s if s is not None and ok(s) else None

    return probe


def find_leader(cluster: Cluster, among: list[str], timeout_s: float = 30.0) -> tuple[str, int]:
    """(leader, term) once a majority of *among* follow one node that says it leads."""
    seen: dict[str, Any] = {}

    def probe() -> tuple[str, int] | None:
        seen.clear()
        seen.update({n: status(cluster, n) for n in among})
        votes = collections.Counter(
            (s["leader"], s["term"]) for s in seen.values() if s is not None and s["leader"]
        )
        for (leader, term), count in votes.items():
            own = seen.get(leader)
            if count >= MAJORITY and own and own["role"] == "leader" and own["term"] == term:
                return leader, term
        return None

    return wait_for(probe, timeout_s, lambda: f"a leader among {among}: {summary(seen)}")


def summary(statuses: dict[str, Any]) -> str:
    keys = ("role", "term", "leader", "commit_index", "last_index", "height")
    return str({n: s and {k: s[k] for k in keys} for n, s in sorted(statuses.items())})


def check_chains(cluster: Cluster, acks: list[Ack]) -> tuple[int, int]:
    """Stop the cluster; every chain verifies, all are identical, every acknowledged envelope
    is in them exactly once where it was acknowledged. Returns (blocks, envelopes)."""
    cluster.stop()
    chains = {n: chain_tx_ids(cluster.out / "nodes" / n) for n in sorted(cluster.nodes)}
    first, (hashes, located) = next(iter(chains.items()))
    for node, (other, _) in chains.items():
        assert other == hashes, f"{node}'s chain ({len(other)} blocks) differs from {first}'s"
    counts = collections.Counter(t for _, _, t in located)
    twice = [t.hex() for t, c in counts.items() if c > 1]
    assert not twice, f"{len(twice)} envelopes ordered more than once, e.g. {twice[:3]}"
    where = {t.hex(): (b, i) for b, i, t in located}
    lost = [a for a in acks if where.get(a.tx_id) != (a.block, a.index)]
    assert not lost, f"{len(lost)} of {len(acks)} acknowledged envelopes lost, e.g. {lost[:3]}"
    return len(hashes), len(located)


def node_file(cluster: Cluster, node: str, name: str) -> Path:
    return cluster.out / "nodes" / node / name


def tail(path: Path, chars: int = 2000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.exists() else ""


def read_from(path: Path, offset: int) -> str:
    with path.open("rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def role_at_exit(log_text: str) -> str:
    """The role the process that wrote *log_text* last took (it starts as a follower)."""
    role = "follower"
    for line in log_text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        if doc.get("event") == "raft.role":
            role = doc["role"]
    return role


# === failpoints =================================================================================


@dataclasses.dataclass(frozen=True)
class Hit:
    node: str
    k: int  # the hit number it was armed with
    role: str  # its role when it died
    round: str  # what was restarted armed: leader, follower, all, ...
    recovering: bool  # armed again as it restarted after dying at the failpoint


@dataclasses.dataclass
class _Armed:
    k: int
    out_mark: int
    log_mark: int
    round: str
    k_range: tuple[int, int]
    rearm_p: float
    recovering: bool


class Crasher:
    """Restarts nodes with one failpoint armed and restarts them as they die there."""

    def __init__(self, cluster: Cluster, name: str, rng: random.Random) -> None:
        self.cluster = cluster
        self.name = name
        self.rng = rng
        self.hits: list[Hit] = []
        self.missed: list[str] = []  # armed but not hit in time (killed and restarted)
        self.armed: dict[str, _Armed] = {}

    def arm(
        self,
        node: str,
        round_: str,
        k_range: tuple[int, int],
        *,
        rearm_p: float = 0.0,
        recovering: bool = False,
    ) -> None:
        """(Re)start *node* (already down) to die at the failpoint's k-th hit, k drawn from
        *k_range*; when it does, it is armed again with probability *rearm_p*."""
        k = self.rng.randint(*k_range)
        out = size(node_file(self.cluster, node, "node.out"))
        log = size(node_file(self.cluster, node, "node.log"))
        self.armed[node] = _Armed(k, out, log, round_, k_range, rearm_p, recovering)
        self.cluster.spawn(node, {FAILPOINTS_ENV: f"{self.name}={k}"})

    def poll(self) -> None:
        """Restart every armed node that died: armed again with the probability it was armed
        with (so it dies again while it recovers) until there are enough hits, else clean."""
        for node, armed in list(self.armed.items()):
            code = self.cluster.exit_code(node)
            if code is None:
                continue
            del self.armed[node]
            out = read_from(node_file(self.cluster, node, "node.out"), armed.out_mark)
            assert code == FAILPOINT_EXIT_CODE, (
                f"{node} armed with {self.name}={armed.k} exited with {code}:\n{out[-3000:]}"
            )
            assert f"failpoint {self.name} fired" in out, out[-3000:]
            log = read_from(node_file(self.cluster, node, "node.log"), armed.log_mark)
            self.hits.append(Hit(node, armed.k, role_at_exit(log), armed.round, armed.recovering))
            if len(self.hits) < HITS and self.rng.random() < armed.rearm_p:
                self.arm(node, armed.round, armed.k_range, rearm_p=armed.rearm_p, recovering=True)
            else:
                self.cluster.spawn(node)

    def give_up(self) -> None:
        """Kill and restart clean the nodes still armed (not wrong in itself; not counted)."""
        for node in list(self.armed):
            del self.armed[node]
            self.cluster.kill(node)
            self.cluster.spawn(node)
            self.missed.append(node)

    def report(self) -> str:
        roles = collections.Counter(h.role for h in self.hits)
        rounds = collections.Counter(
            h.round + (" recovering" if h.recovering else "") for h in self.hits
        )
        return (
            f"{self.name}: {len(self.hits)} hits (roles {dict(roles)}, restarted armed as "
            f"{dict(rounds)}, k {[h.k for h in self.hits]}), missed {self.missed}"
        )


def reap(*crashers: Crasher, timeout_s: float) -> None:
    """Wait until no node is armed any more, restarting them as they die."""
    deadline = time.monotonic() + timeout_s
    while any(c.armed for c in crashers) and time.monotonic() < deadline:
        for c in crashers:
            c.poll()
        revive(*crashers)
        time.sleep(0.05)
    for c in crashers:
        c.give_up()


def process_alive(cluster: Cluster, node: str) -> bool:
    """Whether *node*'s current process runs (a zombie is reaped and counts as dead)."""
    pid = cluster.nodes[node].pid
    proc = cluster.procs.get(node)
    if proc is not None and proc.pid == pid:
        return proc.poll() is None
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state != "Z":
        return True
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    return False


def revive(*crashers: Crasher) -> None:
    """Fail the test if an unarmed node exited: only armed failpoints may end a node."""
    cluster = crashers[0].cluster
    armed = {n for c in crashers for n in c.armed}
    for node in sorted(cluster.nodes):
        if node in armed or process_alive(cluster, node):
            continue
        out = tail(node_file(cluster, node, "node.out"), 3000)
        raise AssertionError(f"{node} exited though not armed:\n{out}")


# The range k is drawn from, for one node restarted armed and for the whole cluster.
FAILPOINT_K = {
    # Every Ready passes both: heartbeats alone make about 20 a second.
    "raft-before-fsync": ((3, 60), (3, 60)),
    "raft-after-fsync": ((3, 60), (3, 60)),
    # Passed once per new block applied: a restarted node first applies those it missed.
    # After a leader dies, clients whose envelopes were forwarded to it wait out their 10 s
    # submit timeout, so few new blocks come for a while: keep k small.
    "block-before-commit": ((1, 6), (1, 4)),
    "block-after-commit": ((1, 6), (1, 4)),
}


@pytest.mark.parametrize("name", sorted(FAILPOINT_K))
def test_nodes_dying_at_a_failpoint_under_load_lose_nothing(
    cluster: Cluster, rng: random.Random, name: str
) -> None:
    crasher = Crasher(cluster, name, rng)
    one, everyone = FAILPOINT_K[name]
    nodes = sorted(cluster.nodes)
    # The leader restarted armed (a failover, then it dies as a follower), the whole cluster
    # power-cut and restarted armed (whoever is elected dies there as the leader), a
    # follower restarted armed; then leader and follower in turn until there are enough.
    plan = ["leader", "all", "follower"] + ["leader", "follower"] * 3
    lap = Laps()
    with Load(cluster) as load:
        load.wait_acks(30)
        lap("warm-up")
        for number, kind in enumerate(plan):
            if number >= 3 and len(crasher.hits) >= HITS:
                break
            revive(crasher)
            leader, _ = find_leader(cluster, nodes)
            if kind == "all":
                victims = nodes
            elif kind == "leader":
                victims = [leader]
            else:
                victims = [rng.choice([n for n in nodes if n != leader])]
            for victim in victims:
                cluster.kill(victim)  # SIGKILL our own child, by its pid
            for victim in victims:
                if kind == "all":
                    crasher.arm(victim, kind, everyone)
                else:
                    crasher.arm(victim, kind, one, rearm_p=0.5)
            reap(crasher, timeout_s=30)
            lap(kind)
            load.wait_acks(2, timeout_s=60)  # serving again before the next round
            lap("serving")
        acks = load.stop()
        lap("load stopped")
    print(crasher.report())
    assert len(crasher.hits) >= HITS, crasher.report()
    cluster.wait_converged(between=lambda: revive(crasher))
    lap("converged")
    blocks, envelopes = check_chains(cluster, acks)
    lap("checked")
    print(f"{len(acks)} acknowledged; {envelopes} envelopes in {blocks} blocks on every node")
    print(lap)


# === partition ==================================================================================


def test_isolated_leader_is_replaced_and_follows_the_new_leader_when_healed(
    cluster: Cluster,
) -> None:
    nodes = sorted(cluster.nodes)
    lap = Laps()
    old, old_term = find_leader(cluster, nodes)
    # The clients are on the majority's side: they do not submit to the node about to be
    # isolated (a leader taking client envelopes when it steps down exits: see the next test).
    with Load(cluster, avoid=(old,)) as load:
        load.wait_acks(40)
        lap("warm-up")
        others = [n for n in nodes if n != old]
        cluster.isolate(old)
        isolated_at = time.monotonic()

        new, new_term = find_leader(cluster, others, timeout_s=15)
        elected_s = time.monotonic() - isolated_at
        assert new != old and new_term > old_term, (old, old_term, new, new_term)
        lap("elected")
        # Check-quorum: cut off from a majority, the old leader steps down by itself.
        alone = wait_for(
            status_when(cluster, old, lambda s: s["role"] != "leader"),
            10,
            lambda: f"{old} stepping down: {status(cluster, old)}",
        )
        assert alone["term"] == old_term, alone
        lap("stepped down")
        # The majority commits without it; the clients keep getting acknowledgements.
        direct = cluster.client(new).submit(load.envelope(b"direct"))
        load.wait_acks(5 * CLIENTS, timeout_s=30)
        lap("committed without it")
        still = status(cluster, old)
        assert still is not None and still["role"] != "leader", still
        assert still["term"] == old_term, f"pre-vote: an isolated node keeps its term {still}"
        assert still["height"] == alone["height"] <= direct["block"], (alone, still, direct)

        cluster.heal(old)
        rejoined = wait_for(
            status_when(
                cluster,
                old,
                lambda s: (s["role"], s["leader"], s["term"]) == ("follower", new, new_term),
            ),
            15,
            lambda: f"{old} following {new} at term {new_term}: {status(cluster, old)}",
        )
        lap("rejoined")
        # It serves again: an envelope through it is forwarded to the new leader.
        through = cluster.client(old).submit(load.envelope(b"through"))
        assert through["block"] > direct["block"], (direct, through)
        load.wait_acks(CLIENTS, timeout_s=30)
        # Pre-vote: the healed node did not force an election in the majority.
        assert find_leader(cluster, nodes) == (new, new_term)
        acks = load.stop()
        lap("load stopped")
    cluster.wait_converged()
    blocks, envelopes = check_chains(cluster, [*acks, direct_ack(direct), direct_ack(through)])
    lap("checked")
    print(
        f"{old} isolated at term {old_term}; {new} elected at term {new_term} in "
        f"{elected_s:.1f} s; {old} rejoined as {rejoined['role']}; {len(acks)} acknowledged, "
        f"{envelopes} envelopes in {blocks} blocks"
    )
    print(lap)


async def _flood(url: str, ctx: ssl.SSLContext, bodies: list[bytes], every_s: float) -> None:
    """Submit *bodies* to *url* one every *every_s*, without waiting for the answers."""
    timeout = aiohttp.ClientTimeout(total=3)
    connector = aiohttp.TCPConnector(ssl=ctx, limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def one(body: bytes) -> None:
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                async with session.post(
                    url + "/v1/envelopes",
                    data=body,
                    headers={"Content-Type": "application/msgpack"},
                ):
                    pass

        tasks = []
        for body in bodies:
            tasks.append(asyncio.create_task(one(body)))
            await asyncio.sleep(every_s)
        await asyncio.gather(*tasks)


def test_isolated_leader_taking_client_envelopes_steps_down_instead_of_exiting(
    cluster: Cluster,
) -> None:
    nodes = sorted(cluster.nodes)
    old, old_term = find_leader(cluster, nodes)
    load = Load(cluster)
    bodies = [load.envelope(b"%d" % i) for i in range(200)]
    cluster.isolate(old)
    # Clients keep submitting to it (its API still answers): 200 envelopes over 3 s, so its
    # cutter has a batch at every tick, the one where check-quorum steps it down included.
    flood = threading.Thread(
        target=lambda: asyncio.run(
            _flood(api_url(cluster.entry(old)), cluster.ctx, bodies, every_s=0.015)
        ),
        daemon=True,
    )
    flood.start()
    try:
        alone = wait_for(
            status_when(cluster, old, lambda s: s["role"] != "leader"),
            5,
            lambda: (
                f"{old} stepping down: {status(cluster, old)}; it wrote:\n"
                + tail(node_file(cluster, old, "node.out"))
            ),
        )
    finally:
        flood.join(timeout=10)
    assert alone["term"] == old_term, alone
    cluster.heal(old)
    new, new_term = find_leader(cluster, nodes)
    assert new_term > old_term
    wait_for(
        status_when(cluster, old, lambda s: (s["role"], s["term"]) == ("follower", new_term)),
        15,
        lambda: f"{old} following {new}: {status(cluster, old)}",
    )


# === catch-up ===================================================================================


BEHIND_BLOCKS = 200


def test_follower_kept_down_while_hundreds_of_blocks_commit_catches_up_by_log_replication(
    cluster: Cluster, rng: random.Random
) -> None:
    nodes = sorted(cluster.nodes)
    leader, _ = find_leader(cluster, nodes)
    laggard = rng.choice([n for n in nodes if n != leader])
    cluster.kill(laggard)
    down_at = cluster.client(leader, timeout_s=3.0).chain_info()["height"]
    with Load(cluster, clients=CLIENTS) as load:
        ahead = wait_for(
            status_when(cluster, leader, lambda s: s["height"] >= down_at + BEHIND_BLOCKS),
            60,
            lambda: f"{BEHIND_BLOCKS} blocks committed without {laggard}",
        )["height"]
        cluster.restart(laggard)  # under load: it catches up with a moving target
        restarted_at = time.monotonic()
        wait_for(
            status_when(cluster, laggard, lambda s: s["height"] >= ahead),
            30,
            lambda: f"{laggard} reaching height {ahead}: {status(cluster, laggard)}",
        )
        caught_up_s = time.monotonic() - restarted_at
        load.wait_acks(CLIENTS)
        acks = load.stop()
    cluster.wait_converged()
    mine = status(cluster, laggard)
    assert mine is not None and mine["snapshot_index"] == 0, mine  # the log was not compacted
    blocks, envelopes = check_chains(cluster, acks)
    assert "raft.snapshot_installed" not in node_file(cluster, laggard, "node.log").read_text()
    print(
        f"{laggard} down from height {down_at} to {ahead}, caught up in {caught_up_s:.1f} s; "
        f"{len(acks)} acknowledged, {envelopes} envelopes in {blocks} blocks"
    )


# === snapshot failpoints ========================================================================


def test_nodes_dying_while_writing_or_installing_a_snapshot_lose_nothing(
    compacting_cluster: Cluster, rng: random.Random
) -> None:
    cluster = compacting_cluster
    nodes = sorted(cluster.nodes)
    lap = Laps()
    with Load(cluster) as load:
        load.wait_acks(30)
        lap("warm-up")
        # A follower is kept down past compaction points, then restarted to die half-way
        # through pulling the blocks of the snapshot it is sent; armed again, it resumes and
        # dies again. Meanwhile another node dies compacting its own log, and armed again as
        # it restarts, dies compacting again (replaying its log takes it past the interval).
        leader, _ = find_leader(cluster, nodes)
        laggard = rng.choice([n for n in nodes if n != leader])
        last = wait_for(lambda: status(cluster, laggard), 10, lambda: f"{laggard} status")
        cluster.kill(laggard)
        writer = Crasher(cluster, "snapshot-mid-write", rng)
        victim = rng.choice([n for n in nodes if n != laggard])
        cluster.kill(victim)
        writer.arm(victim, "leader" if victim == leader else "follower", (1, 3), rearm_p=1.0)
        steady = [n for n in nodes if n not in (laggard, victim)]

        def compacted_past_laggard() -> bool | None:
            indexes = [s["snapshot_index"] for s in map(lambda n: status(cluster, n), steady) if s]
            return max(indexes, default=0) > last["last_index"] + 40 or None

        wait_for(compacted_past_laggard, 60, lambda: f"compaction past {laggard}'s log")
        installer = Crasher(cluster, "snapshot-mid-install", rng)
        installer.arm(laggard, "laggard", (1, 4), rearm_p=1.0)
        lap("laggard down")
        reap(writer, installer, timeout_s=60)
        lap("both failpoints")
        load.wait_acks(CLIENTS)
        acks = load.stop()
        lap("load stopped")
    print(writer.report())
    print(installer.report())
    assert len(writer.hits) >= HITS, writer.report()
    assert len(installer.hits) >= HITS, installer.report()
    cluster.wait_converged(between=lambda: revive(writer, installer))
    lap("converged")
    blocks, envelopes = check_chains(cluster, acks)
    lap("checked")
    assert "raft.snapshot_installed" in node_file(cluster, laggard, "node.log").read_text()
    print(f"{len(acks)} acknowledged; {envelopes} envelopes in {blocks} blocks on every node")
    print(lap)
