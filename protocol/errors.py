"""The error hierarchy shared by every layer.

Two roots, as in h11: :class:`RemoteError` means a peer or client sent bad input (malformed,
oversized, badly signed, unknown or revoked signer): count it, log it without its payload,
answer or drop it, and keep serving. :class:`LocalError` means our own caller misused an
API. :class:`InvariantViolation` means the node's own state is broken: stop loudly and let
the supervisor restart the process.

Messages of these errors never carry payload bytes: they name fields, types and sizes only.
"""

from __future__ import annotations


class MedledgerError(Exception):
    """Base of every error medledger raises on purpose."""


class RemoteError(MedledgerError):
    """Bad input from a peer or a client; the node keeps serving."""


class DecodeError(RemoteError):
    """Bytes that are not a canonical encoding of a known message."""


class UnknownTypeError(DecodeError):
    """A type tag that names no message kind."""


class FieldError(RemoteError):
    """A message field that is missing, nil, of the wrong type or out of range."""

    def __init__(self, message_kind: str, field: str, problem: str) -> None:
        super().__init__(f"{message_kind}.{field}: {problem}")
        self.message_kind = message_kind
        self.field = field
        self.problem = problem


class OversizeError(RemoteError):
    """Input larger than the limit that applies to it (see protocol.limits)."""


class IntegrityError(RemoteError):
    """A hash, signature or chain link that does not match what it commits to."""


class SignatureError(IntegrityError):
    """A signature that does not verify over the bytes it claims to sign."""


class CertificateError(RemoteError):
    """A certificate that is unknown, malformed, expired, revoked or not fit for its use."""


class LocalError(MedledgerError):
    """Our own caller misused an API (a bug on this side, not bad input)."""


class ConfigError(LocalError):
    """A configuration file or option with a bad field; the message names it."""


class InvariantViolation(MedledgerError):
    """The node's own state broke an invariant: stop the process, do not continue."""


def check_invariant(condition: bool, what: str) -> None:
    """Raise InvariantViolation naming *what* unless *condition* holds (survives python -O)."""
    if not condition:
        raise InvariantViolation(what)
