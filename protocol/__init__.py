"""Wire protocol: the messages nodes and clients exchange, and their one canonical encoding.

Every message kind is a frozen, slotted dataclass that validates its fields in its
constructor (types, lengths from :mod:`protocol.limits`). :mod:`protocol.codec` is the only
module that touches msgpack; its encoding is canonical (sorted keys, no floats, no nil, no
extension types), and decoding accepts only canonical bytes, so a message has exactly one
encoding and its SHA-256 hash is the same on every node.

Errors come in two families (:mod:`protocol.errors`): ``RemoteError`` for bad input from a
peer or client, ``LocalError`` for misuse by the caller; ``InvariantViolation`` stops the
process.

This package imports nothing else of medledger's.
"""
