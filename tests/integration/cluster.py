"""A running network of real node processes for integration tests, and chain readers.

:class:`Cluster` starts every node of a freshly initialised network as its own process
(`medledger node start`), and can SIGKILL, restart, isolate and heal single nodes, always by
the pids it started; :func:`chain_tx_ids` reads a stopped node's chain back.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from identity.certs import cert_to_der
from identity.keys import SigningKey
from identity.keystore import read_cert, read_signing_key
from node.bootstrap import NodeEntry
from node.chain_audit import audit_chain
from node.client import NodeClient, NodeRefused, NodeUnavailable, network_ssl_context
from node.daemon import FAULT_SIGNALS_ENV
from node.store import open_node_store
from node.supervisor import (
    RunningNode,
    api_url,
    pid_file,
    start_node,
    start_nodes,
    stop_nodes,
    wait_for_leader,
)
from protocol.block import tx_ids_of
from tests.integration.conftest import InitialisedNetwork


def medledger(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the real CLI in a subprocess (with *env* added to this process's environment)."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


NETWORK_ID = "medledger-local"
T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout_s: float, what: Callable[[], str]) -> T:
    """Poll *probe* until it returns something other than None."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what()}")
        time.sleep(0.1)


class Cluster:
    """A running network whose node processes this test started."""

    def __init__(self, net: InitialisedNetwork) -> None:
        self.net = net
        self.out = net.out
        self.ctx = network_ssl_context(net.out)
        self.env = {FAULT_SIGNALS_ENV: "1"}
        self.nodes: dict[str, RunningNode] = {
            n.entry.node_id: n for n in start_nodes(net.out, detach=True, extra_env=self.env)
        }
        # Handles of the processes started by :meth:`spawn`, whose exit status we read.
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def entry(self, node_id: str) -> NodeEntry:
        return self.nodes[node_id].entry

    def client(self, node_id: str, timeout_s: float = 15.0) -> NodeClient:
        return NodeClient(api_url(self.entry(node_id)), self.ctx, timeout_s=timeout_s)

    def leader(self) -> str:
        return wait_for_leader(self.out, list(self.nodes.values()))

    def kill(self, node_id: str) -> None:
        os.kill(self.nodes[node_id].pid, signal.SIGKILL)  # our own child, by its pid
        os.waitpid(self.nodes[node_id].pid, 0)

    def restart(self, node_id: str, extra_env: dict[str, str] | None = None) -> None:
        """Start *node_id* again (after a kill or an exit), with extra environment if given."""
        self.nodes[node_id] = start_node(
            self.out, self.entry(node_id), detach=True, extra_env={**self.env, **(extra_env or {})}
        )

    def spawn(self, node_id: str, extra_env: dict[str, str] | None = None) -> None:
        """Like :meth:`restart`, but keep the process handle so :meth:`wait_exit` can read
        the exit status. (``start_node`` drops its ``Popen``; ``subprocess`` then reaps the
        exited child on its next ``Popen`` and the status is lost to ``os.waitpid``.)"""
        entry = self.entry(node_id)
        log_path = entry.config.parent / "node.out"
        config = str(entry.config.resolve())
        with open(log_path, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "node", "start", "--config", config],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, **self.env, **(extra_env or {})},
            )
        pid_file(self.out, node_id).write_text(f"{proc.pid}\n")
        self.nodes[node_id] = RunningNode(entry, proc.pid, log_path)
        self.procs[node_id] = proc

    def exit_code(self, node_id: str) -> int | None:
        """The exit code of *node_id*'s process started by :meth:`spawn`; None while it runs."""
        return self.procs[node_id].poll()

    def metric(self, node_id: str, name: str) -> int:
        """The counter *name* in *node_id*'s ``/metrics`` (0 if it was never counted)."""
        text = self.client(node_id).request_text("/metrics")
        found = re.search(rf"^medledger_{name} (\d+)$", text, re.MULTILINE)
        return int(found.group(1)) if found else 0

    def pause(self, node_id: str) -> None:
        """Freeze *node_id* (SIGSTOP): its sockets stay open and what peers send it waits."""
        os.kill(self.nodes[node_id].pid, signal.SIGSTOP)

    def resume(self, node_id: str) -> None:
        os.kill(self.nodes[node_id].pid, signal.SIGCONT)

    def isolate(self, node_id: str) -> None:
        """Cut *node_id* off from every member (its client API stays up)."""
        os.kill(self.nodes[node_id].pid, signal.SIGUSR1)

    def heal(self, node_id: str) -> None:
        os.kill(self.nodes[node_id].pid, signal.SIGUSR2)

    def stop(self) -> None:
        stop_nodes(self.out, list(self.nodes.values()))

    def wait_converged(
        self, timeout_s: float = 30.0, between: Callable[[], None] = lambda: None
    ) -> int:
        """Wait until every node has the same chain height and tip; returns the height.
        *between* runs before every poll.

        A client's answer means its block is in the answering node's chain; Raft does not
        promise that every other member has applied it by then, so a test that compares
        chains waits for this first."""
        seen: dict[str, Any] = {}

        def probe() -> int | None:
            between()
            seen.clear()
            for n in sorted(self.nodes):
                try:
                    seen[n] = self.client(n, timeout_s=3.0).chain_info()
                except (NodeUnavailable, NodeRefused):
                    return None
            tips = {(i["height"], i["tip"]) for i in seen.values()}
            return next(iter(tips))[0] if len(tips) == 1 else None

        return wait_for(probe, timeout_s, lambda: f"identical chains: {seen}")

    def admin(self, org: str = "northgate") -> tuple[SigningKey, bytes]:
        d = self.out / "orgs" / org / "admin"
        return read_signing_key(d / "admin.key"), cert_to_der(read_cert(d / "admin.pem"))


def chain_tx_ids(node_dir: Path) -> tuple[list[bytes], list[tuple[int, int, bytes]]]:
    """Every (block, index, tx_id) in a stopped node's chain, and the block hashes."""
    with open_node_store(node_dir / "data") as stores:
        report = audit_chain(stores.blocks.height, stores.blocks.get_raw)
        assert report.ok, f"{node_dir.name}: block {report.bad_block}: {report.reason}"
        hashes, located = [], []
        for block in stores.blocks.iter_blocks(1):
            hashes.append(block.hash())
            located += [(block.number, i, t) for i, t in enumerate(tx_ids_of(block))]
    return hashes, located
