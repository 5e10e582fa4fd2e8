"""A node's LevelDB and the stores on it, opened together.

Every node keeps one database in its data directory; :func:`open_node_store` opens it with
the schema checked and yields :class:`storage.ledger.Stores`, closing the database on exit.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from node.genesis import config_writes, genesis_envelope
from protocol.block import Block
from protocol.errors import ConfigError
from storage.ledger import Stores
from storage.leveldb import LevelDBKV
from storage.schema import open_store


@contextmanager
def open_node_store(data_dir: Path, *, create: bool = False) -> Iterator[Stores]:
    """Open the node database in *data_dir* (ConfigError if it is missing and not *create*)."""
    kv = LevelDBKV(data_dir, create_if_missing=create)
    try:
        yield open_store(kv)
    finally:
        kv.close()


def install_genesis(stores: Stores, genesis: Block) -> None:
    """Commit the genesis block and its configuration writes to an empty node database."""
    if stores.blocks.height != 0:
        raise ConfigError("the node database already holds a chain")
    config = genesis_envelope(genesis).update.config
    stores.commit_block(genesis, [(0, config_writes(config))])
