"""The built-in ``registry`` contract: who belongs to the network, and who no longer does.

Identities follow the register/enrol model of Fabric's CA. A hospital admin *registers* a
person of their own organisation under a pseudonymous subject id (never a name or a
national id) with a role and the sha256 of a one-time enrolment secret. The person's
client makes its own keys, gets a certificate from the hospital CA with that secret, and
*enrols* on chain: signed with the new certificate, it shows the secret, which binds the
record to the certificate's serial number. The person then publishes an encryption public
key (what record keys are wrapped for). An admin of the same organisation, or of the
ministry, *revokes* an identity: its serial joins the revocation list that every peer
checks when it validates transactions and endorsements.

Keys (namespace ``registry``): ``id/<subject id>`` holds the identity as canonical JSON;
``revoked/<serial, 20 digits>`` holds the subject id of each revoked certificate, so the
revocation list is one ordered range read.
"""

from __future__ import annotations

import hashlib
import json

from chaincode.api import Context, Contract, ContractError, function

ROLES = ("admin", "doctor", "nurse", "patient")
MINISTRY = "ministry"
SUBJECT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.@_-")
ENCRYPTION_KEY_BYTES_MAX = 256
REVOKED = b"revoked/"


def _text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        raise ContractError(f"{what} must be ASCII") from None


def _subject(raw: bytes) -> str:
    subject = _text(raw, "subject id")
    if not 0 < len(subject) <= 64 or not set(subject) <= SUBJECT_CHARS:
        raise ContractError("subject id must be 1-64 of [a-z0-9.@_-]")
    return subject


def _identity_key(subject: str) -> bytes:
    return b"id/" + subject.encode("ascii")


def _revoked_key(serial: int) -> bytes:
    return REVOKED + b"%020d" % serial


def _load(ctx: Context, subject: str) -> dict[str, object]:
    raw = ctx.get(_identity_key(subject))
    if raw is None:
        raise ContractError(f"no identity {subject}")
    record: dict[str, object] = json.loads(raw)
    return record


def _store(ctx: Context, record: dict[str, object]) -> None:
    raw = json.dumps(record, sort_keys=True, separators=(",", ":")).encode("ascii")
    ctx.put(_identity_key(str(record["subject_id"])), raw)


def _public(record: dict[str, object]) -> bytes:
    shown = {k: v for k, v in record.items() if k != "secret_sha256"}
    return json.dumps(shown, sort_keys=True, separators=(",", ":")).encode("ascii")


class Registry(Contract):
    name = "registry"
    version = "1.0"

    @function
    def register(self, ctx: Context, subject: bytes, role: bytes, secret_sha256: bytes) -> bytes:
        """An admin registers a person of their own organisation; returns the record."""
        creator = ctx.creator
        if creator.role != "admin":
            raise ContractError("only an admin may register identities")
        subject_id = _subject(subject)
        role_name = _text(role, "role")
        if role_name not in ROLES:
            raise ContractError(f"role must be one of {', '.join(ROLES)}")
        digest = _text(secret_sha256, "secret hash")
        if len(digest) != 64 or not set(digest) <= set("0123456789abcdef"):
            raise ContractError("the secret hash must be 64 lowercase hex digits")
        if ctx.get(_identity_key(subject_id)) is not None:
            raise ContractError(f"identity {subject_id} is already registered")
        record: dict[str, object] = {
            "subject_id": subject_id,
            "org_id": creator.org_id,
            "role": role_name,
            "status": "registered",
            "secret_sha256": digest,
            "serial": None,
            "encryption_key": None,
            "registered_by": creator.subject_id,
            "registered_ms": ctx.timestamp_ms,
        }
        _store(ctx, record)
        ctx.emit("identity.registered", subject_id.encode("ascii"))
        return _public(record)

    @function
    def enroll(self, ctx: Context, secret: bytes) -> bytes:
        """The registered person, signing with their new certificate, shows the one-time
        secret; the record is bound to that certificate's serial."""
        creator = ctx.creator
        record = _load(ctx, creator.subject_id)
        if record["status"] != "registered":
            raise ContractError(f"identity {creator.subject_id} is {record['status']}")
        if (record["org_id"], record["role"]) != (creator.org_id, creator.role):
            raise ContractError("the certificate's organisation or role differs from the record")
        if hashlib.sha256(secret).hexdigest() != record["secret_sha256"]:
            raise ContractError("the enrolment secret does not match")
        record.update(status="enrolled", serial=creator.serial, secret_sha256="")
        _store(ctx, record)
        ctx.emit("identity.enrolled", creator.subject_id.encode("ascii"))
        return _public(record)

    @function
    def set_encryption_key(self, ctx: Context, public_key: bytes) -> bytes:
        """An enrolled person publishes the public key their record keys are wrapped for."""
        creator = ctx.creator
        record = _load(ctx, creator.subject_id)
        if record["status"] != "enrolled" or record["serial"] != creator.serial:
            raise ContractError("only the enrolled certificate may set its encryption key")
        if not 0 < len(public_key) <= ENCRYPTION_KEY_BYTES_MAX:
            raise ContractError(f"an encryption key is 1-{ENCRYPTION_KEY_BYTES_MAX} bytes")
        record["encryption_key"] = public_key.hex()
        _store(ctx, record)
        return _public(record)

    @function
    def revoke(self, ctx: Context, subject: bytes) -> bytes:
        """An admin of the person's organisation, or of the ministry, revokes them."""
        creator = ctx.creator
        record = _load(ctx, _subject(subject))
        if creator.role != "admin" or creator.org_id not in (record["org_id"], MINISTRY):
            raise ContractError("only an admin of the same organisation or the ministry")
        if record["status"] == "revoked":
            raise ContractError(f"identity {record['subject_id']} is already revoked")
        serial = record["serial"]
        record["status"] = "revoked"
        _store(ctx, record)
        if isinstance(serial, int):
            ctx.put(_revoked_key(serial), str(record["subject_id"]).encode("ascii"))
        ctx.emit("identity.revoked", str(record["subject_id"]).encode("ascii"))
        return _public(record)

    @function
    def show(self, ctx: Context, subject: bytes) -> bytes:
        """An identity's record (without its secret hash)."""
        return _public(_load(ctx, _subject(subject)))

    @function
    def revoked(self, ctx: Context) -> bytes:
        """The revoked certificate serials, ascending, as a JSON list."""
        serials = [int(key[len(REVOKED) :]) for key, _ in ctx.range(REVOKED, b"revoked0")]
        return json.dumps(serials).encode("ascii")
