"""Storage: LevelDB (through plyvel) behind a small KV protocol, and the stores built on it.

One database per node, separated by key prefix (see :mod:`storage.schema`): Raft hard state
and log, blocks with their indexes, world state and the vault. Every store works on any
``KV``; :class:`storage.memory.MemoryKV` is the in-memory twin used by simulation, and one
contract suite runs against both backends. A block and its state changes are written in one
synced batch, so a node killed at any instant reopens to a consistent state.

Modules: ``kv`` (the KV and WriteBatch protocols), ``memory`` and ``leveldb`` (the two
backends), ``schema`` (key prefixes, schema version, ``open_store``), ``blocks``, ``state``,
``raftlog`` and ``vault`` (the stores), ``ledger`` (``commit_block`` and the ``Stores``
bundle) and ``errors``.

Imports: protocol only. plyvel is imported by :mod:`storage.leveldb` and nowhere else.
"""
