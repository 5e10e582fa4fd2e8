"""Consensus: the Raft core, endorsement quorum rules and block cutting, as pure state machines.

No I/O here: no asyncio, sockets, files, clocks or module-level randomness. Time arrives as
ticks; randomness as an injected ``random.Random``. The node package drives these cores.

Imports: protocol, identity.
"""
