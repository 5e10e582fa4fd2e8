"""This machine's floors: the raw rates every later benchmark is measured against.

Prints, in one run: ECDSA P-256 sign/s and verify/s (one core), SHA-256 MB/s, canonical
encode+decode/s of a 1 KiB envelope, and LevelDB synced single puts/s and synced 100-entry
batches/s. Each figure is the best of a few timed rounds, each bounded in time.

    make bench            # or: .venv/bin/python bench/floors.py [--json] [--seconds S]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable

from identity.keys import SigningKey
from protocol import limits
from protocol.codec import decode, encode
from protocol.transaction import (
    Endorsement,
    Envelope,
    Proposal,
    ProposalResponse,
    RwSet,
    Transaction,
)
from storage.leveldb import LevelDBKV

ROUNDS = 3


def rate(operation: Callable[[], object], seconds: float) -> float:
    """Operations per second: the best of ROUNDS rounds of about *seconds* / ROUNDS each."""
    best = 0.0
    budget = seconds / ROUNDS
    for _ in range(ROUNDS):
        count = 0
        start = time.perf_counter()
        deadline = start + budget
        while True:
            for _ in range(10):
                operation()
            count += 10
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def envelope_of_about(size_bytes: int) -> Envelope:
    """An envelope whose canonical encoding is about *size_bytes* long."""
    cert = os.urandom(600)  # a DER certificate is about this long
    proposal = Proposal(
        network_id="medledger-local",
        contract="registry",
        function="put",
        args=(os.urandom(max(0, size_bytes - 1_000)),),
        creator=cert,
        nonce=os.urandom(limits.NONCE_BYTES),
        timestamp_ms=1_700_000_000_000,
    )
    response = ProposalResponse(
        proposal_hash=os.urandom(32),
        status=200,
        message="",
        result=b"",
        rw_set=RwSet(reads=(), writes=()),
        events=(),
    )
    tx = Transaction(
        proposal=proposal,
        response=response,
        endorsements=(Endorsement(cert_hash=os.urandom(32), signature=os.urandom(70)),),
    )
    return Envelope(transaction=tx, signature=os.urandom(70))


def measure(seconds: float) -> dict[str, float]:
    """Every floor, keyed by name with its unit last."""
    key = SigningKey.generate()
    message = os.urandom(200)
    signature = key.sign(message)
    public = key.public_key
    chunk = os.urandom(1 << 20)
    envelope = envelope_of_about(1024)
    raw = encode(envelope)

    figures = {
        "ecdsa_p256_sign_per_s": rate(lambda: key.sign(message), seconds),
        "ecdsa_p256_verify_per_s": rate(lambda: public.verify(message, signature), seconds),
        "sha256_mib_per_s": rate(lambda: hashlib.sha256(chunk).digest(), seconds),
        "envelope_1kib_encode_decode_per_s": rate(lambda: decode(encode(envelope)), seconds),
        "envelope_bytes": float(len(raw)),
    }
    with tempfile.TemporaryDirectory(prefix="medledger-floors-") as tmp:
        kv = LevelDBKV(os.path.join(tmp, "db"))
        counter = iter(range(10**9))
        value = os.urandom(1024)

        def single_put() -> None:
            kv.put(next(counter).to_bytes(8, "big"), value, sync=True)

        def batch_put() -> None:
            with kv.batch(sync=True) as batch:
                for _ in range(100):
                    batch.put(next(counter).to_bytes(8, "big"), value)

        figures["leveldb_synced_puts_per_s"] = rate(single_put, seconds)
        figures["leveldb_synced_100_batches_per_s"] = rate(batch_put, seconds)
        kv.close()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per figure")
    parser.add_argument("--json", action="store_true", help="print JSON")
    args = parser.parse_args()
    figures = measure(args.seconds)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    print(
        f"floors on {platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()})"
    )
    print(f"  ECDSA P-256 sign           {figures['ecdsa_p256_sign_per_s']:>12,.0f} /s (one core)")
    print(
        f"  ECDSA P-256 verify         {figures['ecdsa_p256_verify_per_s']:>12,.0f} /s (one core)"
    )
    print(f"  SHA-256                    {figures['sha256_mib_per_s']:>12,.0f} MiB/s")
    print(
        f"  encode+decode 1 KiB envelope {figures['envelope_1kib_encode_decode_per_s']:>10,.0f} /s"
        f" ({figures['envelope_bytes']:.0f} bytes)"
    )
    print(f"  LevelDB synced put         {figures['leveldb_synced_puts_per_s']:>12,.0f} /s")
    print(f"  LevelDB synced 100-batch   {figures['leveldb_synced_100_batches_per_s']:>12,.0f} /s")


if __name__ == "__main__":
    main()
