"""Endorsement requests over peer streams (node.endorse_link), two members wired back to
back in process: an answer reaches the asker, a refusal keeps its reason, an answer from
another member or after the deadline is not taken, an endorser past SERVING_MAX calls on
worker threads refuses as busy (calls answered inline never are), and a member without a
stream is reported gone (so the gateway uses HTTPS). An endorser behind the gateway's
chain simulates only once it has caught up, and refuses, saying so, if it does not."""

from __future__ import annotations

import asyncio
import threading

import pytest

from chaincode.runtime import STEP_BUDGET_DEFAULT
from node import chain_watch, endorse_link
from node.chain_watch import ChainWatch
from node.endorse_link import BUSY, EndorseLink, EndorserGone, reply_of
from node.endorser import ProposalTooCostly
from node.metrics import Metrics
from protocol.codec import encode
from protocol.errors import RemoteError
from protocol.ordering import EndorseAnswer
from protocol.transaction import EndorseReply, ProposalResponse, RwSet

REPLY = EndorseReply(
    response=encode(
        ProposalResponse(
            proposal_hash=bytes(32),
            status=200,
            message="",
            result=b"ok",
            rw_set=RwSet(reads=(), writes=()),
            events=(),
        )
    ),
    endorsements=(),
)


class Pair:
    """A gateway-side link 'g' and an endorser-side link 'e', each sending to the other."""

    def __init__(  # type: ignore[no-untyped-def]
        self,
        endorse,
        connected: frozenset[str] = frozenset({"g", "e"}),
        chain: ChainWatch | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self.sent: list[object] = []

        def wire(to: str):  # type: ignore[no-untyped-def]
            def send(msg: object) -> None:
                self.sent.append(msg)
                loop.call_soon(self.links[to].on_message, msg.sender, msg)  # type: ignore[attr-defined]

            return send

        self.links = {
            "g": EndorseLink(
                "g", send=wire("e"), connected=lambda: connected, endorse=endorse, metrics=Metrics()
            ),
            "e": EndorseLink(
                "e",
                send=wire("g"),
                connected=lambda: connected,
                endorse=endorse,
                metrics=Metrics(),
                chain=chain,
            ),
        }

    @property
    def gateway(self) -> EndorseLink:
        return self.links["g"]


async def ask(link: EndorseLink, *, timeout_s: float, chain_height: int = 0) -> EndorseReply:
    """What the gateway does with one endorser: request, wait up to *timeout_s*, forget."""
    request_id, answer = link.request("e", b"p", chain_height)
    try:
        async with asyncio.timeout(timeout_s):
            got = await answer
    finally:
        link.forget(request_id)
    return reply_of("e", got)


def _held_until(release: threading.Event):  # type: ignore[no-untyped-def]
    """An endorse call too long for the event loop, which then answers REPLY on the worker
    thread it moved to once *release* is set."""

    def endorse(proposal: bytes, step_budget: int) -> bytes:
        if step_budget < STEP_BUDGET_DEFAULT:
            raise ProposalTooCostly("needs more steps than the event loop grants")
        release.wait(5)
        return encode(REPLY)

    return endorse


@pytest.mark.asyncio
async def test_an_endorsement_comes_back_to_the_gateway() -> None:
    pair = Pair(lambda proposal, step_budget: encode(REPLY) if proposal == b"p" else b"")
    assert await ask(pair.gateway, timeout_s=5) == REPLY
    assert pair.links["e"].metrics.value("endorse_link_requests") == 1


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("raised", "answer"),
    [
        (RemoteError("contract 'x' raised ValueError"), r"^contract 'x' raised ValueError$"),
        (KeyError("a bug"), r"^the endorser failed$"),  # ours: the reason stays in the log
    ],
    ids=["refusal-keeps-its-reason", "bug-is-answered-as-failed"],
)
async def test_an_inline_call_that_raises_is_answered(raised: Exception, answer: str) -> None:
    def endorse(proposal: bytes, step_budget: int) -> bytes:
        raise raised

    pair = Pair(endorse)
    with pytest.raises(RemoteError, match=answer):
        await ask(pair.gateway, timeout_s=5)


@pytest.mark.asyncio
async def test_an_endorser_without_a_stream_is_gone() -> None:
    pair = Pair(lambda proposal, step_budget: encode(REPLY), connected=frozenset({"g"}))
    with pytest.raises(EndorserGone):
        await ask(pair.gateway, timeout_s=5)
    assert pair.sent == []


@pytest.mark.asyncio
async def test_a_late_answer_or_one_from_another_member_is_not_taken() -> None:
    release = threading.Event()

    pair = Pair(_held_until(release))
    asking = asyncio.create_task(ask(pair.gateway, timeout_s=5))
    await asyncio.sleep(0.05)
    # Someone else claims to answer request 0: not the member asked.
    impostor = EndorseAnswer(
        sender="x", recipient="g", request_id=0, reply=encode(REPLY), refusal=""
    )
    pair.gateway.on_message("x", impostor)
    assert pair.gateway.metrics.value("endorse_link_answers_unexpected") == 1
    assert not asking.done()
    release.set()
    assert await asking == REPLY
    assert pair.links["e"].metrics.value("endorser_calls_moved_to_thread") == 1
    # The deadline passes before the answer: TimeoutError, and the late answer is dropped.
    release.clear()
    with pytest.raises(TimeoutError):
        await ask(pair.gateway, timeout_s=0.05)
    release.set()
    await asyncio.sleep(0.1)
    assert pair.gateway.metrics.value("endorse_link_answers_unexpected") == 2


@pytest.mark.asyncio
async def test_past_its_limit_an_endorser_refuses_as_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(endorse_link, "SERVING_MAX", 1)
    release = threading.Event()

    pair = Pair(_held_until(release))
    first = asyncio.create_task(ask(pair.gateway, timeout_s=5))
    await asyncio.sleep(0.05)
    with pytest.raises(RemoteError, match=BUSY):
        await ask(pair.gateway, timeout_s=5)
    release.set()
    assert await first == REPLY
    assert pair.links["e"].metrics.value("endorse_link_busy") == 1


@pytest.mark.asyncio
async def test_a_burst_of_inline_calls_is_answered_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Calls within the inline budget are answered as they arrive, so a burst larger than
    SERVING_MAX (all of it delivered in one pass, as one TLS read delivers it) is not busy."""
    monkeypatch.setattr(endorse_link, "SERVING_MAX", 1)
    pair = Pair(lambda proposal, step_budget: encode(REPLY))
    asks = [ask(pair.gateway, timeout_s=5) for _ in range(20)]
    assert await asyncio.gather(*asks) == [REPLY] * 20
    assert pair.links["e"].metrics.value("endorse_link_busy") == 0
    assert pair.links["e"].metrics.value("endorse_link_requests") == 20


def _reply_at(height: list[int]):  # type: ignore[no-untyped-def]
    """An endorse call whose result is the chain height it simulated at."""

    def endorse(proposal: bytes, step_budget: int) -> bytes:
        response = ProposalResponse(
            proposal_hash=bytes(32),
            status=200,
            message="",
            result=str(height[0]).encode(),
            rw_set=RwSet(reads=(), writes=()),
            events=(),
        )
        return encode(EndorseReply(response=encode(response), endorsements=()))

    return endorse


@pytest.mark.asyncio
async def test_an_endorser_behind_the_gateway_simulates_once_it_has_caught_up() -> None:
    height = [5]
    chain = ChainWatch(lambda: height[0])
    pair = Pair(_reply_at(height), chain=chain)
    # At or below its own height: answered at once, nothing waits.
    assert (await ask(pair.gateway, timeout_s=5, chain_height=5)).decoded_response().result == b"5"
    asking = asyncio.create_task(ask(pair.gateway, timeout_s=5, chain_height=7))
    await asyncio.sleep(0.05)
    assert not asking.done()
    height[0] = 6
    chain.advanced()
    await asyncio.sleep(0.05)
    assert not asking.done()  # one block short
    height[0] = 7
    chain.advanced()
    assert (await asking).decoded_response().result == b"7"
    metrics = pair.links["e"].metrics
    assert metrics.value("endorser_waited_for_chain") == 1
    assert metrics.value("endorser_behind_chain") == 0


@pytest.mark.asyncio
async def test_an_endorser_still_behind_after_the_wait_refuses_saying_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chain_watch, "CHAIN_WAIT_S", 0.05)
    calls: list[bytes] = []

    def endorse(proposal: bytes, step_budget: int) -> bytes:
        calls.append(proposal)
        return encode(REPLY)

    pair = Pair(endorse, chain=ChainWatch(lambda: 3))
    with pytest.raises(
        RemoteError,
        match=r"^this endorser's chain has 3 blocks, the gateway's 9;"
        r" it did not catch up within 0.05 s$",
    ):
        await ask(pair.gateway, timeout_s=5, chain_height=9)
    assert calls == []  # nothing simulated against the older state
    assert pair.links["e"].metrics.value("endorser_behind_chain") == 1


@pytest.mark.asyncio
async def test_the_chain_watch_forgets_waiters_and_bounds_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    height = [0]
    chain = ChainWatch(lambda: height[0])
    assert await chain.reach(0, timeout_s=0)
    assert not await chain.reach(1, timeout_s=0.01)
    monkeypatch.setattr(chain_watch, "WAITERS_MAX", 2)
    waiting = [asyncio.create_task(chain.reach(2, timeout_s=5)) for _ in range(2)]
    await asyncio.sleep(0)
    assert not await chain.reach(1, timeout_s=5)  # over the bound: refused at once
    height[0] = 2
    chain.advanced()
    assert await asyncio.gather(*waiting) == [True, True]
    assert await chain.reach(2, timeout_s=0)
    chain.advanced()  # no waiter left to wake
