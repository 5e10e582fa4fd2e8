"""Shared fixtures of the integration tests: networks laid out by `network init` in tmp dirs.

The session-scoped networks are read-only by convention (several tests start nodes or
transports from them); a test that changes files copies the directory first.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from node.bootstrap import GENESIS_FILE, InitOptions, NodeEntry, init_network
from node.genesis import genesis_envelope
from node.profile import load_profile
from protocol.block import Block
from protocol.codec import decode
from protocol.config import NetworkConfig

if TYPE_CHECKING:
    from tests.integration.cluster import Cluster


@dataclasses.dataclass(frozen=True)
class InitialisedNetwork:
    """A network directory as `network init` wrote it, with its genesis configuration."""

    out: Path
    nodes: tuple[NodeEntry, ...]
    config: NetworkConfig

    def node_dir(self, node_id: str) -> Path:
        return self.out / "nodes" / node_id

    def org_dir(self, org_id: str) -> Path:
        return self.out / "orgs" / org_id


def init_local_network(
    out: Path, *, passphrase: bytes | None = None, env: str = ""
) -> InitialisedNetwork:
    """Lay out the local profile's network in *out* and read back its configuration."""
    entries = init_network(
        load_profile("local"),
        InitOptions(
            out=out,
            force=False,
            now=datetime.now(UTC),
            passphrase=passphrase,
            passphrase_env=env,
        ),
    )
    genesis = decode((out / GENESIS_FILE).read_bytes(), Block)
    config = genesis_envelope(genesis).update.config
    return InitialisedNetwork(out=out, nodes=tuple(entries), config=config)


@pytest.fixture(scope="session")
def local_network(tmp_path_factory: pytest.TempPathFactory) -> InitialisedNetwork:
    """The local profile's network (ministry + 4 hospitals), initialised once per session."""
    return init_local_network(tmp_path_factory.mktemp("local") / "net")


@pytest.fixture(scope="session")
def foreign_network(tmp_path_factory: pytest.TempPathFactory) -> InitialisedNetwork:
    """A second, unrelated network of the same shape: another root CA, same node ids."""
    return init_local_network(tmp_path_factory.mktemp("foreign") / "net")


@contextlib.contextmanager
def running_local_network(net: Path) -> Iterator[Cluster]:
    """The local network initialised at *net*, its five node processes running with a
    leader; stopped on the way out."""
    from tests.integration.cluster import Cluster  # it imports this module

    c = Cluster(init_local_network(net))
    try:
        c.leader()
        yield c
    finally:
        c.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """A running local network (five node processes) with a leader; stopped afterwards."""
    with running_local_network(tmp_path / "net") as c:
        yield c
