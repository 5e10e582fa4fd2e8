"""Child process of test_crash_safety: commits blocks to a LevelDB store until it is killed.

Usage: python crash_writer.py DB_PATH SEED

Each block n carries two transactions, both valid:
  tx 0 writes ``block/<n>/<i>`` = ``<n>`` for i in range(KEYS_PER_BLOCK) (padded values);
  tx 1 writes ``last`` = ``<n>``, deletes ``tmp/<n-1>`` and writes ``tmp/<n>``.
so after any crash the parent can tell exactly which blocks' writes landed. The process
prints ``ready`` once the store is open, then commits blocks as fast as it can.
"""

from __future__ import annotations

import random
import sys

from storage.leveldb import LevelDBKV
from storage.schema import open_store
from tests.contract.blocks_factory import ChainBuilder, delete, put

NAMESPACE = "crash"
KEYS_PER_BLOCK = 16
PADDING = b"." * 512


def block_key(number: int, i: int) -> bytes:
    return b"block/%08d/%02d" % (number, i)


def tmp_key(number: int) -> bytes:
    return b"tmp/%08d" % number


def value_of(number: int) -> bytes:
    return b"%d|" % number + PADDING


def tx_writes_for(number: int) -> list[list]:  # type: ignore[type-arg]
    first = [put(NAMESPACE, block_key(number, i), value_of(number)) for i in range(KEYS_PER_BLOCK)]
    second = [put(NAMESPACE, b"last", b"%d" % number), put(NAMESPACE, tmp_key(number), b"x")]
    if number > 0:
        second.insert(1, delete(NAMESPACE, tmp_key(number - 1)))
    return [first, second]


def main(path: str, seed: int) -> None:
    stores = open_store(LevelDBKV(path))
    height = stores.blocks.height
    chain = ChainBuilder(
        random.Random(seed * 1_000_003 + height), height=height, tip_hash=stores.blocks.tip_hash
    )
    print("ready", flush=True)
    while True:
        block, valid_writes = chain.next_block(tx_writes_for(chain.height))
        stores.commit_block(block, valid_writes)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
