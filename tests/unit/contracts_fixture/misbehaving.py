"""A contract with one well-behaved function and three that misbehave after writing a key:
one raises (with its argument in the message), one loops forever, one returns more than a
result may hold. The integration tests install it in real node processes (entry point)."""

from __future__ import annotations

from chaincode.api import Context, Contract, function
from protocol import limits


class Misbehaving(Contract):
    name = "misbehaving"
    version = "1.0"

    @function
    def put(self, ctx: Context, key: bytes, value: bytes) -> bytes:
        ctx.put(key, value)
        return value

    @function
    def crash(self, ctx: Context, key: bytes, secret: bytes) -> bytes:
        ctx.put(key, secret)
        raise ValueError(secret.decode())

    @function
    def spin(self, ctx: Context, key: bytes, secret: bytes) -> bytes:
        ctx.put(key, secret)
        n = 0
        while True:
            n += 1

    @function
    def flood(self, ctx: Context, key: bytes, secret: bytes) -> bytes:
        ctx.put(key, secret)
        return secret * (limits.RESULT_BYTES_MAX // len(secret) + 1)
