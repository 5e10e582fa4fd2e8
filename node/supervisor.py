"""`medledger up` / `down`: run every node of a local network as its own OS process.

``up`` starts one ``medledger node start --config NODE.toml`` process per node, with its
output appended to ``nodes/NODE/node.out``, records each pid in ``run/NODE.pid`` and waits
until the nodes report a leader. In the foreground it then watches the processes until
Ctrl-C (or SIGTERM), and stops every one of them; detached, it returns and ``down`` stops
them later by the recorded pids. Only processes this module started are ever signalled.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from node.bootstrap import NodeEntry, load_network
from node.client import NodeClient, NodeRefused, NodeUnavailable, network_ssl_context
from protocol.errors import ConfigError

RUN_DIR = "run"
STOP_GRACE_S = 10.0  # a node flushes and closes LevelDB well within this
LEADER_WAIT_S = 30.0  # elections take a few hundred ms; leave room for slow first starts
POLL_INTERVAL_S = 0.1


@dataclasses.dataclass(frozen=True, slots=True)
class RunningNode:
    """A node process we started."""

    entry: NodeEntry
    pid: int
    log_path: Path


def pid_file(network: Path, node_id: str) -> Path:
    return network / RUN_DIR / f"{node_id}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a child of ours that exited is a zombie until reaped: it answers kill(0)
        reaped, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True  # not our child: kill(0) said enough
    return reaped == 0


def _last_line(path: Path) -> str:
    """The last non-empty line of a node's output file (its error, if it exited on one)."""
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no output"
    return lines[-1][-300:] if lines else "no output"


def _is_our_node(pid: int, config: Path) -> bool:
    """Whether *pid* is still a medledger node for *config* (not a recycled pid)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return str(config).encode() in cmdline and b"node" in cmdline


def running_nodes(network: Path) -> list[RunningNode]:
    """The nodes of *network* whose recorded process is alive."""
    out = []
    for entry in load_network(network):
        path = pid_file(network, entry.node_id)
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            continue
        if _alive(pid) and _is_our_node(pid, entry.config.resolve()):
            out.append(RunningNode(entry, pid, entry.config.parent / "node.out"))
    return out


def start_node(
    network: Path, entry: NodeEntry, *, detach: bool, extra_env: dict[str, str] | None = None
) -> RunningNode:
    """Start one node process of *network* and record its pid."""
    (network / RUN_DIR).mkdir(exist_ok=True)
    config = entry.config.resolve()
    log_path = entry.config.parent / "node.out"
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "node", "start", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=detach,
            env={**os.environ, **(extra_env or {})},
        )
    pid_file(network, entry.node_id).write_text(f"{proc.pid}\n")
    return RunningNode(entry, proc.pid, log_path)


def start_nodes(
    network: Path, *, detach: bool, extra_env: dict[str, str] | None = None
) -> list[RunningNode]:
    """Start every node of *network* (ConfigError if any of them is already running)."""
    if running_nodes(network):
        raise ConfigError(f"{network}: nodes are already running (use `medledger down` first)")
    return [
        start_node(network, entry, detach=detach, extra_env=extra_env)
        for entry in load_network(network)
    ]


def api_url(entry: NodeEntry) -> str:
    return f"https://{entry.host}:{entry.api_port}"


def wait_for_leader(
    network: Path, nodes: list[RunningNode], timeout_s: float = LEADER_WAIT_S
) -> str:
    """Poll the nodes until all answer and agree on a leader; returns its node id."""
    ctx = network_ssl_context(network)
    deadline = time.monotonic() + timeout_s
    last_problem = "no answer yet"
    while time.monotonic() < deadline:
        leaders = set()
        for node in nodes:
            if not _alive(node.pid):
                raise ConfigError(
                    f"node {node.entry.node_id} exited: {_last_line(node.log_path)} "
                    f"(see {node.log_path})"
                )
            try:
                health = NodeClient(api_url(node.entry), ctx, timeout_s=2).health()
                leaders.add(health.get("leader") or "")
            except (NodeUnavailable, NodeRefused) as e:
                last_problem = f"{node.entry.node_id}: {e}"
                leaders.add("")
        if len(leaders) == 1 and "" not in leaders:
            return leaders.pop()
        time.sleep(POLL_INTERVAL_S)
    raise ConfigError(f"no leader elected within {timeout_s:.0f} s ({last_problem})")


def stop_nodes(
    network: Path, nodes: list[RunningNode] | None = None, grace_s: float = STOP_GRACE_S
) -> list[str]:
    """SIGTERM every running node, SIGKILL those still alive after *grace_s*; their ids."""
    nodes = running_nodes(network) if nodes is None else nodes
    for node in nodes:
        _signal(node.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for node in nodes:
        while _alive(node.pid) and time.monotonic() < deadline:
            _reap(node.pid)
            time.sleep(0.05)
        if _alive(node.pid):
            _signal(node.pid, signal.SIGKILL)
        _reap(node.pid)
        pid_file(network, node.entry.node_id).unlink(missing_ok=True)
    return [n.entry.node_id for n in nodes]


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _reap(pid: int) -> None:
    """Collect a child's exit status if it is our child (no zombies); ignore otherwise."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def watch(nodes: list[RunningNode], on_exit: Callable[[RunningNode, int], None]) -> None:
    """Block until a node exits or we are interrupted; report exits through *on_exit*."""
    remaining = {n.pid: n for n in nodes}
    while remaining:
        for pid, node in list(remaining.items()):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done, status = pid, 0
            if done:
                del remaining[pid]
                on_exit(node, os.waitstatus_to_exitcode(status) if status else 0)
        time.sleep(0.2)
