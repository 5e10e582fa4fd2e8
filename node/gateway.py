"""The gateway: collect a quorum of endorsements for a client's signed proposal.

Any hospital peer is a gateway. It sends the proposal to every endorsing member at once
(itself directly, the others over the peer streams (:mod:`node.endorse_link`), or their
``POST /v1/endorse`` over TLS while no stream is up), each with a deadline, checks
each reply (the endorsement must name the member's own certificate and verify over the
response bytes), and lets :func:`consensus.endorse.gather` pick the response q endorsers
signed byte for byte, as soon as q of them agree: a slow or hung endorser holds up no
proposal (the others are heard out in the background until the deadline). Endorsers that
diverged, before or after the answer, are logged by node id and counted
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

from chaincode.runtime import answer_text
from consensus.endorse import (
    QuorumOutcome,
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
        self._late: set[asyncio.Future[None]] = set()  # endorsers heard out after a quorum

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
        """Stop hearing out late endorsers and close the session's connections (at node
        shutdown)."""
        for late in list(self._late):
            late.cancel()
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
        tally = _Tally(members, self._signed_by)
        await self._ask_all(members, raw, signed, tally)
        outcome = tally.outcome()
        self._report_diverging(outcome.diverging)
        answered, refusals = tally.answered, tally.refusals
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
        self,
        members: tuple[MemberConfig, ...],
        raw: bytes,
        signed: SignedProposal,
        tally: _Tally,
    ) -> None:
        """Put every member's reply to *raw* (or why there is none) in *tally*, until q of
        them agree or every member has answered or the deadline has passed.

        The other endorsers are asked first (over their streams, or HTTPS while a stream is
        down), then this node's own endorser runs while they simulate; their answers are
        futures waited on together, not a task per endorser. Once q agree, the proposal is
        answered without waiting for the rest (a slow or hung endorser holds up nobody);
        they are heard out in the background until the deadline, only to report any that
        diverge."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.deadline_s
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
        try:
            if ask_self:
                try:
                    answer: EndorseReply | BaseException = await run_endorsement(
                        self._endorse_locally, signed, metrics=self.metrics
                    )
                except Exception as error:  # a refusal, as a peer's would be
                    answer = error
                tally.add(self.node_id, answer)
            while pending and not tally.outcome().reached:
                left = deadline - loop.time()
                if left <= 0:
                    break
                await asyncio.wait(
                    pending.values(), timeout=left, return_when=asyncio.FIRST_COMPLETED
                )
                for node_id in [n for n, waiting in pending.items() if waiting.done()]:
                    tally.add(node_id, _answer_of(node_id, pending.pop(node_id)))
        except BaseException:
            self._give_up(pending, requests)
            raise
        if pending and tally.outcome().reached:
            late = asyncio.ensure_future(self._hear_out(pending, requests, deadline, tally))
            self._late.add(late)

            def done(late: asyncio.Future[None]) -> None:
                self._late.discard(late)
                self._give_up(pending, requests)  # also if cancelled before it ran

            late.add_done_callback(done)
            return
        self._give_up(pending, requests)
        for node_id, waiting in pending.items():
            tally.add(node_id, _answer_of(node_id, waiting))

    async def _hear_out(
        self,
        pending: dict[str, asyncio.Future[Any]],
        requests: list[int],
        deadline: float,
        tally: _Tally,
    ) -> None:
        """After a quorum answered: wait (until *deadline*) for the endorsers still asked, and
        report those whose answer diverges from the quorum's."""
        reported = set(tally.outcome().diverging)
        try:
            left = deadline - asyncio.get_running_loop().time()
            if left > 0:
                await asyncio.wait(pending.values(), timeout=left)
        finally:
            self._give_up(pending, requests)
        for node_id, waiting in pending.items():
            tally.add(node_id, _answer_of(node_id, waiting))
        self._report_diverging(tuple(n for n in tally.outcome().diverging if n not in reported))

    def _give_up(self, pending: dict[str, asyncio.Future[Any]], requests: list[int]) -> None:
        """Stop waiting for *pending* answers (and the link's *requests*)."""
        for request_id in requests:
            self._link.forget(request_id)  # type: ignore[union-attr]  # requests imply a link
        for waiting in pending.values():
            waiting.cancel()  # no-op once done

    def _report_diverging(self, diverging: tuple[str, ...]) -> None:
        if diverging:
            self.metrics.inc("gateway_diverging_endorsers", len(diverging))
            event(log, logging.WARNING, "gateway.diverging", endorsers=",".join(diverging))

    async def settle(self) -> None:
        """Wait until the endorsers still heard out after a quorum have answered or timed out."""
        while self._late:
            await asyncio.wait(list(self._late))

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
                return answer_text(status, message)
        return None


class _Tally:
    """The answers to one proposal so far, and the quorum outcome they give."""

    def __init__(
        self,
        members: tuple[MemberConfig, ...],
        signed_by: Callable[[MemberConfig, EndorseReply], bool],
    ) -> None:
        self._members = {m.node_id: m for m in members}
        self._names = [m.node_id for m in members]
        self._signed_by = signed_by
        self._replies: list[Reply] = []
        self.answered: dict[str, EndorseReply] = {}
        self.refusals: dict[str, str] = {}

    def add(self, node_id: str, answer: EndorseReply | BaseException) -> None:
        """*node_id*'s reply, or why there is none (a refusal is remembered with its reason)."""
        if isinstance(answer, RemoteError):
            self.refusals[node_id] = str(answer)
        if isinstance(answer, BaseException):
            return  # missing: refused, unreachable or too slow
        self.answered[node_id] = answer
        member = self._members[node_id]
        self._replies.append(Reply(node_id, answer.response, self._signed_by(member, answer)))

    def outcome(self) -> QuorumOutcome:
        return gather(self._replies, self._names)


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
