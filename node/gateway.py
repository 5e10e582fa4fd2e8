"""The gateway: collect a quorum of endorsements for a client's signed proposal.

Any hospital peer is a gateway. It sends the proposal to every endorsing member at once
(itself directly, the others over the peer streams (:mod:`node.endorse_link`), or their
``POST /v1/endorse`` over TLS while no stream is up), each with a deadline, checks
each reply (the endorsement must name the member's own certificate and verify over the
response bytes), and lets :func:`consensus.endorse.gather` pick the response q endorsers
signed byte for byte. Endorsers that diverged are logged by node id and counted
(``gateway_diverging_endorsers``). The answer is the prepared
:class:`protocol.transaction.Transaction` (proposal, agreed response, the q endorsements),
which the client signs into an envelope and submits; the gateway never signs for it.

No quorum is a :class:`QuorumNotReached` naming how many agreed, who diverged and who did
not answer. When the endorsers agree on a refusal (the contract answered 400 or 404), the
contract's message is what the client sees.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import Callable
from datetime import UTC, datetime

import aiohttp

from consensus.endorse import (
    Reply,
    check_endorsement,
    endorsers_by_cert_hash,
    endorsing_members,
    gather,
)
from identity.validate import TrustStore
from node.endorse_link import EndorseLink, EndorserGone
from node.endorser import run_endorsement
from node.logs import event
from node.metrics import Metrics
from protocol import limits
from protocol.codec import decode, encode
from protocol.config import MemberConfig, NetworkConfig
from protocol.errors import RemoteError
from protocol.transaction import EndorseReply, SignedProposal, Transaction

log = logging.getLogger("medledger.gateway")

ENDORSE_DEADLINE_S = 5.0
ENDORSE_CONNECTIONS_MAX = 64  # open connections to one endorser at most


class QuorumNotReached(RemoteError):
    """Too few endorsers agreed on one response (the message says who did what)."""


class Gateway:
    """Fans proposals out to the endorsers of the current network configuration."""

    def __init__(
        self,
        *,
        node_id: str,
        network: Callable[[], NetworkConfig],
        trust: Callable[[], TrustStore],
        endorse_locally: Callable[..., EndorseReply],
        client_ctx: ssl.SSLContext,
        metrics: Metrics,
        revoked: Callable[[], frozenset[int]] = frozenset,
        deadline_s: float = ENDORSE_DEADLINE_S,
        link: EndorseLink | None = None,
    ) -> None:
        self.node_id = node_id
        self._link = link
        self._revoked = revoked
        self._network = network
        self._trust = trust
        self._endorse_locally = endorse_locally
        self._client_ctx = client_ctx
        self.metrics = metrics
        self.deadline_s = deadline_s
        self._session: aiohttp.ClientSession | None = None

    def _client_session(self) -> aiohttp.ClientSession:
        """One keep-alive session for every proposal: a TLS handshake per endorser, not per
        proposal (its connections are reused while they stay open)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=ENDORSE_CONNECTIONS_MAX),
                timeout=aiohttp.ClientTimeout(total=self.deadline_s),
            )
        return self._session

    async def close(self) -> None:
        """Close the session's connections (at node shutdown)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    def serving(self) -> bool:
        """Whether this node is an endorsing member now (only those act as gateways)."""
        member = self._network().member(self.node_id)
        return member is not None and member.endorser

    async def endorse(self, raw: bytes) -> bytes:
        """The prepared Transaction's canonical bytes for the signed proposal *raw*."""
        signed = decode(raw, SignedProposal)
        members = endorsing_members(self._network())
        session = self._client_session()
        answers = await asyncio.gather(
            *(self._ask(session, m, raw, signed) for m in members), return_exceptions=True
        )
        replies: list[Reply] = []
        decoded: dict[str, EndorseReply] = {}
        refusals: dict[str, str] = {}
        for member, answer in zip(members, answers, strict=True):
            if isinstance(answer, RemoteError):
                refusals[member.node_id] = str(answer)
            if isinstance(answer, BaseException):
                continue  # missing: refused, unreachable or too slow
            decoded[member.node_id] = answer
            response = encode(answer.response)
            replies.append(
                Reply(member.node_id, response, self._signed_by(member, answer, response))
            )
        outcome = gather(replies, [m.node_id for m in members])
        if outcome.diverging:
            self.metrics.inc("gateway_diverging_endorsers", len(outcome.diverging))
            event(log, logging.WARNING, "gateway.diverging", endorsers=",".join(outcome.diverging))
        if outcome.response is None:
            refusal = self._common_refusal(decoded)
            if refusal is not None:
                raise QuorumNotReached(refusal)
            reasons = set(refusals.values())
            if len(reasons) == 1 and len(refusals) >= len(members) - outcome.needed + 1:
                raise QuorumNotReached(f"the endorsers refused: {reasons.pop()}")
            raise QuorumNotReached(
                f"at most {len(outcome.agreeing)} of the {outcome.needed} endorsements needed"
                " agree;"
                f" diverging: {', '.join(outcome.diverging) or 'none'};"
                f" no answer: {', '.join(outcome.missing) or 'none'}"
            )
        agreed = decoded[outcome.agreeing[0]].response
        endorsements = tuple(decoded[n].endorsements[0] for n in outcome.agreeing[: outcome.needed])
        self.metrics.inc("gateway_endorsed")
        return encode(
            Transaction(proposal=signed.proposal, response=agreed, endorsements=endorsements)
        )

    async def _ask(
        self,
        session: aiohttp.ClientSession,
        member: MemberConfig,
        raw: bytes,
        signed: SignedProposal,
    ) -> EndorseReply:
        if member.node_id == self.node_id:  # this node's own endorser: no HTTP, no codec
            # On the event loop: first let the other asks send their requests (they start
            # in the same pass as this one), so the others simulate while this node does.
            await asyncio.sleep(0)
            return await run_endorsement(self._endorse_locally, signed, metrics=self.metrics)
        if self._link is not None:
            try:
                reply = await self._link.ask(member.node_id, raw, self.deadline_s)
            except EndorserGone:
                self.metrics.inc("gateway_endorse_over_https")
            else:
                self.metrics.inc("gateway_endorse_over_stream")
                return reply
        url = f"https://{member.host}:{member.api_port}/v1/endorse"
        headers = {"Content-Type": "application/msgpack"}
        async with session.post(url, data=raw, headers=headers, ssl=self._client_ctx) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RemoteError(
                    _refusal_reason(body) or f"{member.node_id} answered {resp.status}"
                )
            return decode(body, EndorseReply)

    def _signed_by(self, member: MemberConfig, answer: EndorseReply, response: bytes) -> bool:
        """Whether *answer* carries *member*'s own valid endorsement of its *response* bytes, by a
        certificate that is not revoked (validators would not count it either)."""
        if len(answer.endorsements) != 1:
            return False
        endorsement = answer.endorsements[0]
        named = endorsers_by_cert_hash(self._network()).get(endorsement.cert_hash)
        if named is None or named.node_id != member.node_id:
            return False
        try:
            check_endorsement(
                endorsement,
                member,
                response,
                self._trust(),
                at=datetime.now(UTC),
                revoked=self._revoked(),
            )
        except RemoteError:
            return False
        return True

    @staticmethod
    def _common_refusal(decoded: dict[str, EndorseReply]) -> str | None:
        """The contract's message when the endorsers that answered all refused alike."""
        refusals = {(r.response.status, r.response.message) for r in decoded.values()}
        if len(refusals) == 1:
            status, message = next(iter(refusals))
            if status != 200:
                return f"{status} {message}"
        return None


def _refusal_reason(body: bytes) -> str | None:
    """The one-line reason in an endorser's JSON error answer, if it has one."""
    try:
        reason = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    return reason[: limits.REASON_CHARS_MAX] if isinstance(reason, str) else None
