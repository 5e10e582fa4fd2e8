"""Where `medledger chain show|verify` reads a chain: the node's database, or, when the running
node holds it, the node's API; a held database with no API to fall back on is an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.chain import NodeData, open_chain
from node.store import open_node_store
from protocol.errors import ConfigError
from storage.errors import DatabaseLockedError


def test_a_database_nobody_holds_is_read_directly(tmp_path: Path) -> None:
    with open_node_store(tmp_path / "db", create=True):
        pass
    with open_chain(tmp_path, NodeData("n", tmp_path / "db", None, api=None)) as chain:
        assert (chain.height, chain.via_api) == (0, None)


def test_a_held_database_without_an_api_is_refused_with_the_lock_reason(tmp_path: Path) -> None:
    held = NodeData("n", tmp_path / "db", None, api=None)
    with (
        open_node_store(tmp_path / "db", create=True),  # as a running node holds it
        pytest.raises(DatabaseLockedError, match="locked"),
        open_chain(tmp_path, held),
    ):
        pass


def test_no_database_and_no_api_is_a_configuration_error(tmp_path: Path) -> None:
    with (
        pytest.raises(ConfigError, match="neither a database nor an API"),
        open_chain(tmp_path, NodeData("n", None, None, api=None)),
    ):
        pass
