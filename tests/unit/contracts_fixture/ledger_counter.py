"""A well-behaved test contract: counters, ranges, events, refusals."""

from __future__ import annotations

from chaincode.api import Context, Contract, ContractError, function


class Counter(Contract):
    name = "counter"
    version = "1.0"

    @function
    def add(self, ctx: Context, key: bytes, amount: bytes) -> bytes:
        current = int(ctx.get(key) or b"0")
        if not amount.isdigit():
            raise ContractError("amount must be a whole number")
        total = current + int(amount)
        ctx.put(key, str(total).encode())
        ctx.emit("added", key)
        return str(total).encode()

    @function
    def move(self, ctx: Context, source: bytes, target: bytes) -> bytes:
        value = ctx.get(source)
        if value is None:
            raise ContractError("nothing to move")
        ctx.delete(source)
        ctx.put(target, value)
        return ctx.get(target) or b""

    @function
    def listing(self, ctx: Context, start: bytes, stop: bytes) -> bytes:
        return b",".join(k + b"=" + v for k, v in ctx.range(start, stop))

    @function
    def whoami(self, ctx: Context) -> bytes:
        creator = ctx.creator
        return f"{creator.org_id}/{creator.role}/{creator.subject_id}/{ctx.timestamp_ms}".encode()

    @function
    def spin(self, ctx: Context) -> bytes:
        n = 0
        while True:
            n += 1

    @function
    def crash(self, ctx: Context, secret: bytes) -> bytes:
        raise ValueError(secret.decode())

    @function
    def not_bytes(self, ctx: Context) -> bytes:
        return "text"  # type: ignore[return-value]

    @function
    def huge(self, ctx: Context) -> bytes:
        return b"x" * (64 * 1024 + 1)

    @function
    def many_events(self, ctx: Context) -> bytes:
        for i in range(17):
            ctx.emit("e", bytes([i]))
        return b""
