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
from typing import Any

import aiohttp

from consensus.endorse import (
    Reply,
    check_endorsement,
    endorsers_by_cert_hash,
    endorsing_members,
    gather,
)
from identity.validate import TrustStore
from node.endorse_link import EndorseLink, EndorserGone, reply_of
from node.endorser import run_endorsement
from node.logs import event
from node.metrics import Metrics
from protocol import limits
from protocol.codec import decode, encode
from protocol.config import MemberConfig, NetworkConfig
from protocol.errors import RemoteError
from protocol.ordering import EndorseAnswer
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
        chain_height: Callable[[], int] = lambda: 0,
    ) -> None:
        """*chain_height* reads this node's chain height, which each endorser is asked to
        reach before it simulates (:mod:`node.chain_watch`)."""
        self.node_id = node_id
        self._chain_height = chain_height
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
        answers = await self._ask_all(members, raw, signed)
        replies: list[Reply] = []
        answered: dict[str, EndorseReply] = {}
        refusals: dict[str, str] = {}
        for member in members:
            answer = answers[member.node_id]
            if isinstance(answer, RemoteError):
                refusals[member.node_id] = str(answer)
            if isinstance(answer, BaseException):
                continue  # missing: refused, unreachable or too slow
            answered[member.node_id] = answer
            replies.append(Reply(member.node_id, answer.response, self._signed_by(member, answer)))
        outcome = gather(replies, [m.node_id for m in members])
        if outcome.diverging:
            self.metrics.inc("gateway_diverging_endorsers", len(outcome.diverging))
            event(log, logging.WARNING, "gateway.diverging", endorsers=",".join(outcome.diverging))
        if outcome.response is None:
            refusal = self._common_refusal(answered)
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
        try:
            agreed = answered[outcome.agreeing[0]].decoded_response()
        except RemoteError as e:
            raise QuorumNotReached(
                f"the endorsers agreed on bytes that are no response: {e}"
            ) from None
        endorsements = tuple(
            answered[n].endorsements[0] for n in outcome.agreeing[: outcome.needed]
        )
        self.metrics.inc("gateway_endorsed")
        return encode(
            Transaction(proposal=signed.proposal, response=agreed, endorsements=endorsements)
        )

    async def _ask_all(
        self, members: tuple[MemberConfig, ...], raw: bytes, signed: SignedProposal
    ) -> dict[str, EndorseReply | BaseException]:
        """Every member's reply to *raw* (or why there is none), within the deadline.

        The other endorsers are asked first (over their streams, or HTTPS while a stream is
        down), then this node's own endorser runs while they simulate; their answers are
        futures waited on together, not a task per endorser."""
        deadline = asyncio.get_running_loop().time() + self.deadline_s
        height = self._chain_height()  # what this node's clients may have seen committed
        link = self._link
        pending: dict[str, asyncio.Future[Any]] = {}
        requests: list[int] = []
        ask_self = False
        for member in members:
            if member.node_id == self.node_id:  # this node's own endorser: no HTTP, no codec
                ask_self = True
                continue
            if link is not None:
                try:
                    request_id, pending[member.node_id] = link.request(member.node_id, raw, height)
                except EndorserGone:
                    self.metrics.inc("gateway_endorse_over_https")
                else:
                    self.metrics.inc("gateway_endorse_over_stream")
                    requests.append(request_id)
                    continue
            pending[member.node_id] = asyncio.ensure_future(
                self._ask_over_https(member, raw, height)
            )
        answers: dict[str, EndorseReply | BaseException] = {}
        try:
            if ask_self:
                try:
                    answers[self.node_id] = await run_endorsement(
                        self._endorse_locally, signed, metrics=self.metrics
                    )
                except Exception as error:  # a refusal, as a peer's would be
                    answers[self.node_id] = error
            if pending:
                left = deadline - asyncio.get_running_loop().time()
                await asyncio.wait(pending.values(), timeout=max(left, 0))
        finally:
            for request_id in requests:
                link.forget(request_id)  # type: ignore[union-attr]  # requests imply a link
            for waiting in pending.values():
                waiting.cancel()  # no-op once done
        for node_id, waiting in pending.items():
            answers[node_id] = _answer_of(node_id, waiting)
        return answers

    async def _ask_over_https(
        self, member: MemberConfig, raw: bytes, chain_height: int
    ) -> EndorseReply:
        url = f"https://{member.host}:{member.api_port}/v1/endorse?chain_height={chain_height}"
        headers = {"Content-Type": "application/msgpack"}
        session = self._client_session()
        async with session.post(url, data=raw, headers=headers, ssl=self._client_ctx) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise RemoteError(
                    _refusal_reason(body) or f"{member.node_id} answered {resp.status}"
                )
            return decode(body, EndorseReply)

    def _signed_by(self, member: MemberConfig, answer: EndorseReply) -> bool:
        """Whether *answer* carries *member*'s own valid endorsement of its response bytes, by
        a certificate that is not revoked (validators would not count it either)."""
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
                answer.response,
                self._trust(),
                at=datetime.now(UTC),
                revoked=self._revoked(),
            )
        except RemoteError:
            return False
        return True

    @staticmethod
    def _common_refusal(answered: dict[str, EndorseReply]) -> str | None:
        """The contract's message when the endorsers that answered all refused alike."""
        refusals = set()
        for reply in answered.values():
            try:
                response = reply.decoded_response()
            except RemoteError:
                return None  # not a response at all: no common refusal
            refusals.add((response.status, response.message))
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


def _answer_of(node_id: str, waiting: asyncio.Future[Any]) -> EndorseReply | BaseException:
    """What a finished (or abandoned) ask came to: the reply, or why there is none."""
    if waiting.cancelled():
        return TimeoutError(f"{node_id} did not answer in time")
    error = waiting.exception()
    if error is not None:
        return error
    result = waiting.result()
    if isinstance(result, EndorseAnswer):
        try:
            return reply_of(node_id, result)
        except RemoteError as refused:
            return refused
    return result  # type: ignore[no-any-return]
