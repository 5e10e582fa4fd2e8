"""Endorsement requests between members over their peer streams.

The gateway used to ask each other endorser over HTTPS (``POST /v1/endorse``): an HTTP
request and response, client and server side, for every endorser of every transaction. The
members already hold mutually authenticated streams to each other (:mod:`node.transport`),
so a gateway sends :class:`protocol.ordering.EndorseRequest` on the stream instead, and the
endorser answers with :class:`protocol.ordering.EndorseAnswer` on its own: one frame each
way. When the stream to an endorser is down the gateway falls back to HTTPS.

An endorser answers a request as soon as it arrives, on the event loop, when the contract
call fits the inline step budget (:func:`node.endorser.endorse_inline`; every built-in call
does). A call that needs more runs on the default thread pool, at most :data:`SERVING_MAX`
at a time; past that the endorser refuses at once ("busy"), and the gateway counts it as not
answering. (Counting inline calls against that limit too refused bursts that had already
been done by the time they were counted: a burst of a few hundred requests in one read.)
An answer is taken only from the member it was asked of, and only while the request waits.

A request carries the gateway's chain height; an endorser with fewer blocks first waits for
them (:class:`node.chain_watch.ChainWatch`, bounded), so it does not simulate against
older state than the gateway's client has seen; still behind, it refuses and says so.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable

from node.chain_watch import ChainWatch, catch_up, must_wait
from node.endorser import ProposalTooCostly, endorse_inline, endorse_on_thread
from node.logs import event
from node.metrics import Metrics
from protocol import limits
from protocol.codec import decode
from protocol.errors import RemoteError
from protocol.ordering import EndorseAnswer, EndorseRequest
from protocol.transaction import EndorseReply

log = logging.getLogger("medledger.endorse_link")

SERVING_MAX = 256  # requests one endorser simulates at once; more are refused as busy
BUSY = "the endorser is busy; retry"


class EndorserGone(Exception):
    """The endorser cannot be asked over its stream (not connected): use another way."""


class EndorseLink:
    """One member's side: asks other endorsers (:meth:`request`) and answers them
    (:meth:`on_message` with their requests)."""

    def __init__(
        self,
        node_id: str,
        *,
        send: Callable[[object], None],
        connected: Callable[[], frozenset[str]],
        endorse: Callable[..., bytes],
        metrics: Metrics,
        chain: ChainWatch | None = None,
    ) -> None:
        """*send* queues a message on the stream to its recipient; *connected* says which
        members have a live stream; *endorse* turns a SignedProposal's bytes into this
        node's EndorseReply bytes (RemoteError if it refuses), with a step budget (see the
        module docstring); *chain* is this node's chain, which a request's chain height
        waits for (None: never wait)."""
        self.node_id = node_id
        self._send = send
        self._connected = connected
        self._endorse = endorse
        self.metrics = metrics
        self._chain = chain
        self._ids = itertools.count()
        self._waiting: dict[int, tuple[str, asyncio.Future[EndorseAnswer]]] = {}
        self._serving = 0
        self._catching_up: set[asyncio.Future[None]] = set()  # held until they finish

    def request(
        self, member_id: str, proposal: bytes, chain_height: int = 0
    ) -> tuple[int, asyncio.Future[EndorseAnswer]]:
        """Send *proposal* to *member_id*, to be endorsed once its chain holds
        *chain_height* blocks: the request id and the future its answer will complete
        (:meth:`forget` the id once done waiting). EndorserGone if no stream is up to it.
        A fan-out waits on these futures together, without a task per endorser."""
        if member_id not in self._connected():
            raise EndorserGone(member_id)
        request_id = next(self._ids)
        answer: asyncio.Future[EndorseAnswer] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (member_id, answer)
        try:
            self._send(
                EndorseRequest(
                    sender=self.node_id,
                    recipient=member_id,
                    request_id=request_id,
                    proposal=proposal,
                    chain_height=chain_height,
                )
            )
        except BaseException:
            self.forget(request_id)
            raise
        return request_id, answer

    def forget(self, request_id: int) -> None:
        """Stop waiting for *request_id*'s answer (a late one is counted as unexpected)."""
        self._waiting.pop(request_id, None)

    def on_message(self, sender: str, msg: object) -> None:
        """A peer's EndorseRequest or EndorseAnswer (the transport checked *sender*)."""
        if isinstance(msg, EndorseRequest):
            self._serve(sender, msg)
        elif isinstance(msg, EndorseAnswer):
            waiting = self._waiting.get(msg.request_id)
            if waiting is None or waiting[0] != sender or waiting[1].done():
                self.metrics.inc("endorse_link_answers_unexpected")  # late, or not asked
                return
            waiting[1].set_result(msg)

    def _serve(self, sender: str, msg: EndorseRequest) -> None:
        self.metrics.inc("endorse_link_requests")
        chain = self._chain
        if chain is not None and must_wait(chain, msg.chain_height, self.metrics):
            waiting = asyncio.ensure_future(self._serve_when_caught_up(chain, sender, msg))
            self._catching_up.add(waiting)
            waiting.add_done_callback(self._catching_up.discard)
            return
        self._simulate(sender, msg)

    async def _serve_when_caught_up(
        self, chain: ChainWatch, sender: str, msg: EndorseRequest
    ) -> None:
        refusal = await catch_up(chain, msg.chain_height, self.metrics)
        if refusal is None:
            self._simulate(sender, msg)
            return
        event(log, logging.INFO, "endorse_link.behind", peer=sender, height=chain.height)
        self._answer(sender, msg.request_id, b"", refusal)

    def _simulate(self, sender: str, msg: EndorseRequest) -> None:
        try:
            reply = endorse_inline(self._endorse, msg.proposal)
        except ProposalTooCostly:
            self.metrics.inc("endorser_calls_moved_to_thread")
            self._serve_on_thread(sender, msg)
        except Exception as error:  # every failure is answered, none raised
            self._refuse(sender, msg.request_id, error)
        else:
            self._answer(sender, msg.request_id, reply, "")

    def _serve_on_thread(self, sender: str, msg: EndorseRequest) -> None:
        if self._serving >= SERVING_MAX:
            self.metrics.inc("endorse_link_busy")
            self._answer(sender, msg.request_id, b"", BUSY)
            return
        self._serving += 1
        work = asyncio.ensure_future(endorse_on_thread(self._endorse, msg.proposal))

        def done(work: asyncio.Future[bytes]) -> None:
            self._serving -= 1
            error = work.exception()
            if error is None:
                self._answer(sender, msg.request_id, work.result(), "")
            else:
                self._refuse(sender, msg.request_id, error)

        work.add_done_callback(done)

    def _refuse(self, sender: str, request_id: int, error: BaseException) -> None:
        if isinstance(error, RemoteError):
            event(
                log, logging.INFO, "endorse_link.refused", peer=sender, reason=type(error).__name__
            )
            self._answer(sender, request_id, b"", _fit(str(error)))
        else:  # a bug of ours: the gateway hears a refusal, the log keeps the type
            event(log, logging.ERROR, "endorse_link.failed", error=type(error).__name__)
            self._answer(sender, request_id, b"", "the endorser failed")

    def _answer(self, recipient: str, request_id: int, reply: bytes, refusal: str) -> None:
        if len(reply) > limits.ENVELOPE_BYTES_MAX:
            reply, refusal = b"", "the endorsement is over the size limit"
        self._send(
            EndorseAnswer(
                sender=self.node_id,
                recipient=recipient,
                request_id=request_id,
                reply=reply,
                refusal=refusal,
            )
        )


def _fit(reason: str) -> str:
    """*reason* cut to what a refusal field holds (UTF-8 bytes, whole characters)."""
    raw = reason.encode("utf-8", "replace")[: limits.REASON_CHARS_MAX]
    return raw.decode("utf-8", "ignore")


def reply_of(member_id: str, answer: EndorseAnswer) -> EndorseReply:
    """The EndorseReply in *member_id*'s *answer*; RemoteError with its reason if it refused
    (or if the reply does not decode)."""
    if not answer.reply:
        raise RemoteError(answer.refusal or f"{member_id} refused without a reason")
    return decode(answer.reply, EndorseReply)
