"""Chaincode: the contract API, the simulation runtime and the built-in contracts.

Contracts are deterministic: no I/O, clocks, randomness or floats. The runtime simulates a
call against committed state and returns its read set (with versions), write set, result and
events.

Imports: protocol, identity.
"""
