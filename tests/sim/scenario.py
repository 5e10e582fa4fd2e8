"""Scenario scripts: small text files of commands with their expected output inline.

The format follows etcd-raft's ``testdata/*.txt`` (cockroachdb's datadriven): a command line,
a ``----`` line, the expected output, a blank line. ``#`` lines are comments. Running a file
replays the commands against a fresh cluster of :class:`~tests.sim.cluster.SimNode`s
(delivering messages only when told) and compares each output with the expected one; with
``MEDLEDGER_REWRITE_GOLDEN=1`` the file is rewritten with the actual output instead.

Commands (nodes are named 1, 2, ...):

``add-nodes N [voters=1,2,3] [learners=4] [pre-vote=false] [check-quorum=false]``
    N new nodes; the bootstrap membership defaults to the new nodes as voters.
``campaign ID`` / ``propose ID TEXT`` / ``transfer-leadership ID TO``
``propose-membership ID add_learner|promote_voter|remove_member NODE``
``tick ID [COUNT]`` / ``tick-election ID`` (election_ticks ticks) / ``tick-heartbeat ID``
``stabilize`` (handle Readies and deliver messages until nothing is left)
``process-ready ID`` / ``deliver-msgs ID``
``partition 1 | 2 3`` / ``heal`` / ``crash ID`` / ``restart ID``
``compact ID`` (snapshot at the applied index) / ``report-unreachable ID PEER``
``status ID`` / ``raft-log ID``
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from consensus.raft import RaftConfig, RaftRefused
from protocol.raft import MembershipChange
from tests.sim import describe
from tests.sim.cluster import Network, SimNode, is_snapshot

REWRITE_ENV = "MEDLEDGER_REWRITE_GOLDEN"


@dataclass
class Block:
    """One command with the comment lines before it and its expected output."""

    comments: list[str]
    command: str
    expected: list[str]
    line: int


def parse(text: str) -> tuple[list[Block], list[str]]:
    """The blocks of a scenario file, and the comment lines after the last one."""
    blocks: list[Block] = []
    comments: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            comments.append(line)
            i += 1
            continue
        if i + 1 >= len(lines) or lines[i + 1] != "----":
            raise ValueError(f"line {i + 2}: expected ---- after the command {line!r}")
        j = i + 2
        expected = []
        while j < len(lines) and lines[j].strip():
            expected.append(lines[j])
            j += 1
        blocks.append(Block(comments, line, expected, i + 1))
        comments = []
        i = j
    return blocks, comments


def render(blocks: list[Block], trailing: list[str]) -> str:
    out: list[str] = []
    for block in blocks:
        out += block.comments
        out += [block.command, "----", *block.expected]
    out += trailing
    while out and not out[-1].strip():
        out.pop()
    return "\n".join(out) + "\n"


class ScenarioCluster:
    """Nodes and a hand-driven FIFO network."""

    def __init__(self) -> None:
        self.nodes: dict[str, SimNode] = {}
        self.network = Network()
        self.now = 0

    def run(self, command: str) -> list[str]:
        words = command.split()
        name, args = words[0], words[1:]
        handler = getattr(self, "cmd_" + name.replace("-", "_"), None)
        if handler is None:
            raise ValueError(f"unknown command {name!r}")
        try:
            out: list[str] = handler(*args)
        except RaftRefused as e:
            out = [f"error: {type(e).__name__}: {e}"]
        return out or ["ok"]

    def node(self, node_id: str) -> SimNode:
        return self.nodes[node_id]

    # --- set-up -------------------------------------------------------------------------------

    def cmd_add_nodes(self, count: str, *options: str) -> list[str]:
        first = len(self.nodes) + 1
        ids = [str(i) for i in range(first, first + int(count))]
        opts = dict(o.split("=", 1) for o in options)
        voters = tuple(sorted(opts["voters"].split(","))) if "voters" in opts else tuple(ids)
        learners = tuple(sorted(opts["learners"].split(","))) if opts.get("learners") else ()
        for node_id in ids:
            config = RaftConfig(
                node_id=node_id,
                pre_vote=opts.get("pre-vote", "true") == "true",
                check_quorum=opts.get("check-quorum", "true") == "true",
                max_inflight_appends=int(opts.get("max-inflight", "256")),
            )
            self.nodes[node_id] = SimNode(node_id, voters, learners, config, seed=int(node_id))
        return []

    # --- application calls --------------------------------------------------------------------

    def cmd_campaign(self, node_id: str) -> list[str]:
        self.node(node_id).core.campaign()
        return []

    def cmd_propose(self, node_id: str, *text: str) -> list[str]:
        term, index = self.node(node_id).core.propose(" ".join(text).encode())
        return [f"ok {term}/{index}"]

    def cmd_propose_membership(self, node_id: str, change: str, target: str) -> list[str]:
        term, index = self.node(node_id).core.propose_membership(
            MembershipChange(change=change, node_id=target)
        )
        return [f"ok {term}/{index}"]

    def cmd_transfer_leadership(self, node_id: str, to: str) -> list[str]:
        self.node(node_id).core.transfer_leadership(to)
        return []

    def cmd_tick(self, node_id: str, count: str = "1") -> list[str]:
        for _ in range(int(count)):
            self.node(node_id).core.tick()
        return []

    def cmd_tick_election(self, node_id: str) -> list[str]:
        return self.cmd_tick(node_id, str(self.node(node_id).config.election_ticks))

    def cmd_tick_heartbeat(self, node_id: str) -> list[str]:
        return self.cmd_tick(node_id, str(self.node(node_id).config.heartbeat_ticks))

    def cmd_compact(self, node_id: str) -> list[str]:
        snap = self.node(node_id).compact()
        return [f"snapshot {describe.snapshot(snap)}"]

    def cmd_report_unreachable(self, node_id: str, peer: str) -> list[str]:
        self.node(node_id).core.report_unreachable(peer)
        return []

    # --- network and faults -------------------------------------------------------------------

    def cmd_partition(self, *spec: str) -> list[str]:
        groups = [g.split() for g in " ".join(spec).split("|")]
        self.network.partition(groups)
        return []

    def cmd_heal(self) -> list[str]:
        self.network.heal()
        return []

    def cmd_crash(self, node_id: str) -> list[str]:
        self.node(node_id).crash()
        return []

    def cmd_restart(self, node_id: str) -> list[str]:
        self.node(node_id).start()
        return []

    # --- the Ready loop -----------------------------------------------------------------------

    def cmd_process_ready(self, node_id: str) -> list[str]:
        return self._process_ready(self.node(node_id))

    def cmd_deliver_msgs(self, node_id: str) -> list[str]:
        return self._deliver(node_id)

    def cmd_stabilize(self) -> list[str]:
        out: list[str] = []
        while True:
            progressed = False
            for node_id in sorted(self.nodes):
                node = self.nodes[node_id]
                if node.alive and node.core.has_ready():
                    out.append(f"> {node_id} handling Ready")
                    out += ["  " + line for line in self._process_ready(node)]
                    progressed = True
            for node_id in sorted(self.nodes):
                lines = self._deliver(node_id)
                if lines:
                    out.append(f"> {node_id} receiving messages")
                    out += ["  " + line for line in lines]
                    progressed = True
            if not progressed:
                return out

    def _process_ready(self, node: SimNode) -> list[str]:
        if not node.core.has_ready():
            return []
        rd = node.core.ready()
        node.persist(rd)
        for msg in rd.messages:
            self.network.send(msg, self.now)
        node.apply(rd)
        node.core.advance(rd)
        return describe.ready(rd)

    def _deliver(self, node_id: str) -> list[str]:
        out = []
        node = self.nodes[node_id]
        for msg in self.network.take_for(node_id):
            line = describe.message(msg)
            delivered = node.alive and self.network.connected(msg.sender, node_id)
            sender = self.nodes.get(msg.sender)
            if is_snapshot(msg) and sender is not None and sender.alive:
                sender.core.report_snapshot(node_id, delivered)
            if not delivered:
                out.append(f"{line} (dropped)")
                continue
            out.append(line)
            node.core.step(msg)
        return out

    # --- inspection ---------------------------------------------------------------------------

    def cmd_status(self, node_id: str) -> list[str]:
        return describe.status(self.node(node_id).core.status())

    def cmd_raft_log(self, node_id: str) -> list[str]:
        core = self.node(node_id).core
        log = core.log
        out = []
        if log.snapshot_index() > 0:
            out.append(f"snapshot {log.term(log.snapshot_index())}/{log.snapshot_index()}")
        entries = log.entries(log.first_index(), log.last_index() + 1) or []
        out += [describe.entry(e) for e in entries]
        return out or ["log is empty"]


def run_file(path: Path) -> list[tuple[Block, list[str]]]:
    """Run the scenario in *path*; (block, actual output) for every block. Rewrites the
    file's expected output instead when MEDLEDGER_REWRITE_GOLDEN=1."""
    blocks, trailing = parse(path.read_text(encoding="utf-8"))
    cluster = ScenarioCluster()
    results = [(block, cluster.run(block.command)) for block in blocks]
    if os.environ.get(REWRITE_ENV) == "1":
        for block, actual in results:
            block.expected = actual
        path.write_text(render(blocks, trailing), encoding="utf-8")
    return results
