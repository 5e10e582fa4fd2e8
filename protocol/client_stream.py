"""Messages of the client stream: many requests in flight on one WebSocket.

A client sends :class:`ClientRequest` frames, each with an id of its choosing that is unique
among its requests still in flight; the node answers each with one :class:`ClientAnswer`
carrying the same id, in whatever order the requests finish. ``kind`` names the operation
(:data:`SUBMIT` or :data:`ENDORSE`), ``body`` is what the matching HTTPS route takes
(``POST /v1/envelopes`` and ``POST /v1/gateway/endorse``), and ``status`` uses that route's
HTTP status codes. The answer's ``body`` is, for status 200, a :class:`CommitReceipt`'s
canonical bytes (submit) or the prepared Transaction's (endorse); otherwise the one-line
reason, UTF-8.
"""

from __future__ import annotations

from protocol import limits
from protocol.codec import UINT64_MAX, field, message

SUBMIT = "submit"
ENDORSE = "endorse"
KINDS = (SUBMIT, ENDORSE)
_KIND_CHARS_MAX = 16
_STATUS_MIN, _STATUS_MAX = 100, 599


@message("client_request")
class ClientRequest:
    """One request on a client stream."""

    request_id: int = field(min=0, max=UINT64_MAX)
    kind: str = field(max_len=_KIND_CHARS_MAX)
    body: bytes = field(max_len=limits.ENVELOPE_BYTES_MAX)


@message("client_answer")
class ClientAnswer:
    """The node's answer to the request ``request_id`` of the same stream."""

    request_id: int = field(min=0, max=UINT64_MAX)
    status: int = field(min=_STATUS_MIN, max=_STATUS_MAX)
    body: bytes = field(max_len=limits.ENVELOPE_BYTES_MAX)


@message("commit_receipt")
class CommitReceipt:
    """Where a submitted envelope committed: what ``POST /v1/envelopes`` answers in JSON."""

    tx_id: bytes = field(exact_len=limits.HASH_BYTES)
    block: int = field(min=0, max=UINT64_MAX)
    index: int = field(min=0, max=limits.BLOCK_TXS_MAX)
    duplicate: bool
    code: int = field(min=0, max=255)
    reason: str = field(max_len=limits.REASON_CHARS_MAX)
