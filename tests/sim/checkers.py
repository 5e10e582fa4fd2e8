"""Safety checkers run by the simulation after every step, and as entries flow.

Each property of Raft (§5.2, Figure 3) is checked incrementally, so checking after every
step stays cheap:

* election safety: at most one leader per term (``leaders``: term -> node);
* log matching: an (index, term) pair names one entry, and one predecessor term, in every
  log that ever persisted it; by induction two logs holding the same (index, term) agree
  on everything before it (``entries``);
* leader completeness: a node that becomes leader of a term holds every entry any node
  knew committed before (``committed_terms``, from every node's commit index);
* state machine safety: every node that applies index i reaches the same hash-chain
  digest there, so applied prefixes are identical (``digests``);
* no acknowledged proposal lost: a proposal the leader saw applied at (term, index) is the
  entry committed at that index forever (``acked``), and finally on every member.
"""

from __future__ import annotations

from consensus.raft import Ready, Role
from protocol.raft import RaftEntry, RaftSnapshot
from tests.sim.cluster import SimNode


class SafetyChecker:
    """Collects violations (strings); the run fails if there are any."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.leaders: dict[int, str] = {}
        self.entries: dict[tuple[int, int], tuple[bytes, int | None]] = {}
        self.committed_terms: list[int] = [0]  # committed_terms[i]: term of committed entry i
        self.digests: dict[int, bytes] = {}
        self.acked: dict[int, tuple[int, bytes]] = {}
        self.proposals: dict[tuple[int, int], tuple[str, bytes]] = {}
        self.checked_commit: dict[str, int] = {}

    def fail(self, what: str) -> None:
        if len(self.violations) < 20:
            self.violations.append(what)

    # --- hooks from the nodes -----------------------------------------------------------------

    def on_persist(self, node: SimNode, rd: Ready) -> None:
        log = node.core.log
        for entry in rd.entries:
            prev_term = log.term(entry.index - 1)
            key = (entry.index, entry.term)
            seen = self.entries.get(key)
            if seen is None:
                self.entries[key] = (entry.data, prev_term)
                continue
            data, seen_prev = seen
            if data != entry.data:
                self.fail(f"log matching: node {node.node_id} holds another entry at {key}")
            if prev_term is not None and seen_prev is not None and prev_term != seen_prev:
                self.fail(
                    f"log matching: node {node.node_id} has term {prev_term} before {key}, "
                    f"another log has {seen_prev}"
                )

    def on_apply(self, node: SimNode, entry: RaftEntry, digest: bytes) -> None:
        self._check_digest(node, entry.index, digest)
        proposal = self.proposals.get((entry.term, entry.index))
        if proposal is not None and proposal[0] == node.node_id and entry.payload == proposal[1]:
            self.acked.setdefault(entry.index, (entry.term, proposal[1]))

    def on_snapshot(self, node: SimNode, snap: RaftSnapshot) -> None:
        self._check_digest(node, node.applied_index, node.digest)

    def _check_digest(self, node: SimNode, index: int, digest: bytes) -> None:
        seen = self.digests.setdefault(index, digest)
        if seen != digest:
            self.fail(f"state machine safety: node {node.node_id} applied another entry {index}")

    # --- after every step ---------------------------------------------------------------------

    def check_step(self, nodes: list[SimNode]) -> None:
        for node in nodes:
            if not node.alive:
                continue
            core = node.core
            self._record_commits(node)
            if core.role is Role.LEADER:
                known = self.leaders.get(core.term)
                if known is None:
                    self.leaders[core.term] = node.node_id
                    self._check_leader_completeness(node)
                elif known != node.node_id:
                    self.fail(f"election safety: {known} and {node.node_id} lead term {core.term}")

    def _record_commits(self, node: SimNode) -> None:
        log = node.core.log
        terms = self.committed_terms
        start = max(self.checked_commit.get(node.node_id, 0), log.snapshot_index()) + 1
        self.checked_commit[node.node_id] = max(start - 1, log.committed)
        for index in range(start, log.committed + 1):
            term = log.term(index)
            if term is None:
                continue
            if index < len(terms):
                if terms[index] not in (term, -1):
                    self.fail(
                        f"commit disagreement: node {node.node_id} has {term}/{index} committed, "
                        f"another node {terms[index]}/{index}"
                    )
                elif terms[index] == -1:
                    terms[index] = term
            else:
                while len(terms) < index:
                    terms.append(-1)  # committed, term not seen (installed by snapshot)
                terms.append(term)

    def _check_leader_completeness(self, node: SimNode) -> None:
        log = node.core.log
        terms = self.committed_terms
        if log.last_index() < len(terms) - 1:
            self.fail(
                f"leader completeness: leader {node.node_id} of term {node.core.term} ends at "
                f"{log.last_index()}, entries up to {len(terms) - 1} are committed"
            )
            return
        for index in range(log.snapshot_index() + 1, len(terms)):
            if terms[index] != -1 and log.term(index) != terms[index]:
                self.fail(
                    f"leader completeness: leader {node.node_id} of term {node.core.term} lacks "
                    f"committed {terms[index]}/{index}"
                )
                return

    def check_acked_everywhere(self, nodes: list[SimNode]) -> None:
        """Every acknowledged proposal is applied, with its payload, on every given node."""
        for index in sorted(self.acked):
            term, payload = self.acked[index]
            if index < len(self.committed_terms) and self.committed_terms[index] not in (
                term,
                -1,
            ):
                self.fail(f"acknowledged proposal {term}/{index} lost")
            for node in nodes:
                if node.applied_index < index:
                    self.fail(f"node {node.node_id} never applied acknowledged {term}/{index}")
                    return
                got = node.applied_payloads.get(index)
                if got is not None and got != (term, payload):
                    self.fail(f"node {node.node_id} applied another entry at acked {index}")
