"""The client API of a node: JSON over HTTPS (server-authenticated TLS), served by aiohttp.

Routes::

    GET  /healthz                 liveness and readiness (a leader is known)
    POST /v1/envelopes            submit a signed envelope or configuration update (msgpack);
                                  answers once it is in a committed block
    POST /v1/endorse              simulate a signed proposal (msgpack) against this
                                  endorser's committed state; its EndorseReply (msgpack);
                                  ``?chain_height=N``: once this node holds N blocks
                                  (waits up to node.chain_watch.CHAIN_WAIT_S, else 503)
    POST /v1/gateway/endorse      collect a quorum of endorsements for a signed proposal;
                                  the prepared Transaction (msgpack) for the client to sign
    GET  /v1/raft/status          this node's Raft view
    GET  /v1/chain                height and tip hash
    GET  /v1/config               the current network configuration (canonical bytes)
    GET  /v1/blocks/{number}      one block's canonical bytes
    GET  /v1/tx/{tx_id}           where a transaction is and its validation code (JSON)
    GET  /v1/state/{namespace}?key=HEX   one world-state entry and its version (JSON)
    GET  /v1/events?from=N        WebSocket: committed blocks' transactions and events (JSON)
    GET  /v1/stream               WebSocket: submit and gateway-endorse requests, many in
                                  flight at once (msgpack; see :mod:`node.client_stream`)
    GET  /metrics                 counters, Prometheus text format

Bad input gets a 4xx with a one-line reason and never a payload echo; the node keeps
serving. The service behind the routes is any object with the :class:`OrderingService`
shape, so the API can be tested without Raft.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Protocol

from aiohttp import web

from node.chain_watch import ChainWatch, catch_up, must_wait
from node.client_stream import ClientStreamServer, Operation
from node.endorser import run_endorsement
from node.events import EventHub
from node.gateway import Gateway, QuorumNotReached
from node.logs import event
from node.metrics import Metrics
from protocol import limits
from protocol.block import ValidationCode, code_meaning, code_name
from protocol.client_stream import ENDORSE, SUBMIT, CommitReceipt
from protocol.codec import encode
from protocol.errors import LocalError, OversizeError, RemoteError

log = logging.getLogger("medledger.api")


class NotLeaderError(LocalError):
    """No leader is known right now; the client should retry."""


class SubmitTimeoutError(LocalError):
    """The envelope was accepted but did not commit in time; its outcome is unknown."""


@dataclasses.dataclass(frozen=True, slots=True)
class Committed:
    """Where a submitted envelope landed."""

    tx_id: bytes
    block_number: int
    tx_index: int
    duplicate: bool  # it had been committed before this submission
    code: int = ValidationCode.VALID  # its validation code in that block
    reason: str = ""  # why it is invalid (empty when valid); ids and counts only


class OrderingService(Protocol):
    """What the API needs from the node."""

    node_id: str

    async def submit(self, raw: bytes) -> Committed: ...

    metrics: Metrics

    def endorse(self, raw: bytes, *, step_budget: int = ...) -> bytes: ...

    chain: ChainWatch

    def raft_status(self) -> dict[str, Any]: ...

    def chain_info(self) -> dict[str, Any]: ...

    def block_bytes(self, number: int) -> bytes | None: ...

    def tx_info(self, tx_id: bytes) -> dict[str, Any] | None: ...

    def state_info(self, namespace: str, key: bytes) -> dict[str, Any] | None: ...

    def config_bytes(self) -> bytes: ...

    def health(self) -> dict[str, Any]: ...

    def metrics_snapshot(self) -> dict[str, int]: ...


SERVICE_KEY = web.AppKey("service", OrderingService)
GATEWAY_KEY = web.AppKey("gateway", Gateway)


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


async def healthz(request: web.Request) -> web.Response:
    health = request.app[SERVICE_KEY].health()
    return web.json_response(health, status=200 if health.get("serving") else 503)


async def submit(request: web.Request) -> web.Response:
    service = request.app[SERVICE_KEY]
    if request.content_length is not None and request.content_length > limits.ENVELOPE_BYTES_MAX:
        event(log, logging.INFO, "api.refused", reason="oversize", size=request.content_length)
        return _error(413, _ENVELOPE_TOO_BIG)
    try:
        raw = await request.read()  # bounded by the app's client_max_size
    except web.HTTPRequestEntityTooLarge:
        event(log, logging.INFO, "api.refused", reason="oversize", size=-1)
        return _error(413, _ENVELOPE_TOO_BIG)
    status, outcome = await submit_outcome(service, raw)
    if not isinstance(outcome, Committed):
        return _error(status, outcome)
    return web.json_response(
        {
            "tx_id": outcome.tx_id.hex(),
            "block": outcome.block_number,
            "index": outcome.tx_index,
            "duplicate": outcome.duplicate,
            "code": outcome.code,
            "status": code_name(outcome.code),
            "reason": outcome.reason or code_meaning(outcome.code),
        }
    )


_ENVELOPE_TOO_BIG = f"envelope over the limit of {limits.ENVELOPE_BYTES_MAX} bytes"


async def submit_outcome(service: OrderingService, raw: bytes) -> tuple[int, Committed | str]:
    """What submitting *raw* comes to, for HTTPS and the client stream alike: (200, where it
    committed) or (an HTTP status, the one-line reason)."""
    if len(raw) > limits.ENVELOPE_BYTES_MAX:
        event(log, logging.INFO, "api.refused", reason="oversize", size=len(raw))
        return 413, _ENVELOPE_TOO_BIG
    try:
        return 200, await service.submit(raw)
    except OversizeError as e:
        return 413, str(e)
    except RemoteError as e:
        event(log, logging.INFO, "api.refused", reason=type(e).__name__, size=len(raw))
        return 400, str(e)
    except NotLeaderError as e:
        return 503, str(e)
    except SubmitTimeoutError as e:
        return 504, str(e)


async def endorse(request: web.Request) -> web.Response:
    """Simulate a signed proposal here and answer with this node's EndorseReply (msgpack)."""
    too_big = f"proposal over the limit of {limits.ENVELOPE_BYTES_MAX} bytes"
    try:
        raw = await request.read()  # bounded by the app's client_max_size
    except web.HTTPRequestEntityTooLarge:
        return _error(413, too_big)
    if len(raw) > limits.ENVELOPE_BYTES_MAX:
        return _error(413, too_big)
    service = request.app[SERVICE_KEY]
    wanted = request.query.get("chain_height", "0")
    if not (wanted.isascii() and wanted.isdigit()) or len(wanted) > 19:  # 19 digits: under 2**63
        return _error(400, "chain_height must be a non-negative integer")
    if must_wait(service.chain, int(wanted), service.metrics):
        refusal = await catch_up(service.chain, int(wanted), service.metrics)
        if refusal is not None:
            return _error(503, refusal)
    try:
        reply = await run_endorsement(service.endorse, raw, metrics=service.metrics)
    except RemoteError as e:
        event(log, logging.INFO, "api.endorse_refused", reason=type(e).__name__, size=len(raw))
        return _error(400, str(e))
    return web.Response(body=reply, content_type="application/msgpack")


async def gateway_endorse(request: web.Request) -> web.Response:
    """Fan a signed proposal out to the endorsers; the prepared Transaction (msgpack)."""
    raw = await request.read()  # bounded by the app's client_max_size
    status, outcome = await endorse_outcome(request.app.get(GATEWAY_KEY), raw)
    if isinstance(outcome, str):
        return _error(status, outcome)
    return web.Response(body=outcome, content_type="application/msgpack")


async def endorse_outcome(gateway: Gateway | None, raw: bytes) -> tuple[int, bytes | str]:
    """What asking the gateway to endorse *raw* comes to, for HTTPS and the client stream
    alike: (200, the prepared Transaction) or (an HTTP status, the one-line reason)."""
    if gateway is None or not gateway.serving():
        return 404, "this node is not a gateway"
    if len(raw) > limits.ENVELOPE_BYTES_MAX:
        return 413, f"proposal over the limit of {limits.ENVELOPE_BYTES_MAX} bytes"
    try:
        return 200, await gateway.endorse(raw)
    except QuorumNotReached as e:
        return 409, str(e)
    except RemoteError as e:
        return 400, str(e)


async def raft_status(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE_KEY].raft_status())


async def chain_info(request: web.Request) -> web.Response:
    return web.json_response(request.app[SERVICE_KEY].chain_info())


async def block(request: web.Request) -> web.Response:
    try:
        number = int(request.match_info["number"])
    except ValueError:
        return _error(400, "block number must be an integer")
    raw = request.app[SERVICE_KEY].block_bytes(number) if number >= 0 else None
    if raw is None:
        return _error(404, f"no block {number}")
    return web.Response(body=raw, content_type="application/msgpack")


async def tx_info(request: web.Request) -> web.Response:
    try:
        tx_id = bytes.fromhex(request.match_info["tx_id"])
    except ValueError:
        return _error(400, "tx_id must be hex")
    if len(tx_id) != limits.HASH_BYTES:
        return _error(400, f"tx_id must be {limits.HASH_BYTES} bytes of hex")
    info = request.app[SERVICE_KEY].tx_info(tx_id)
    if info is None:
        return _error(404, "no such transaction in this node's chain")
    return web.json_response(info)


async def state_info(request: web.Request) -> web.Response:
    namespace = request.match_info["namespace"]
    try:
        key = bytes.fromhex(request.query.get("key", ""))
    except ValueError:
        return _error(400, "key must be hex")
    if not key or len(key) > limits.STATE_KEY_BYTES_MAX or len(namespace) > limits.ID_CHARS_MAX:
        return _error(400, "a namespace and a key (1 to the key limit in bytes) are needed")
    info = request.app[SERVICE_KEY].state_info(namespace, key)
    if info is None:
        return _error(404, "no such key")
    return web.json_response(info)


async def network_config(request: web.Request) -> web.Response:
    """The current network configuration's canonical bytes."""
    return web.Response(
        body=request.app[SERVICE_KEY].config_bytes(), content_type="application/msgpack"
    )


async def metrics(request: web.Request) -> web.Response:
    """Counters in the Prometheus text exposition format."""
    lines = []
    for name, value in sorted(request.app[SERVICE_KEY].metrics_snapshot().items()):
        lines.append(f"# TYPE medledger_{name} counter")
        lines.append(f"medledger_{name} {value}")
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


def build_api_app(
    service: OrderingService, gateway: Gateway | None = None, events: EventHub | None = None
) -> web.Application:
    """The aiohttp application serving the client API for *service* (and *gateway*, and
    the *events* stream)."""
    app = web.Application(client_max_size=limits.ENVELOPE_BYTES_MAX + limits.KIB)
    app[SERVICE_KEY] = service
    if gateway is not None:
        app[GATEWAY_KEY] = gateway
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/v1/envelopes", submit)
    app.router.add_post("/v1/endorse", endorse)
    app.router.add_post("/v1/gateway/endorse", gateway_endorse)
    app.router.add_get("/v1/raft/status", raft_status)
    app.router.add_get("/v1/chain", chain_info)
    app.router.add_get("/v1/config", network_config)
    app.router.add_get("/v1/blocks/{number}", block)
    app.router.add_get("/v1/tx/{tx_id}", tx_info)
    app.router.add_get("/v1/state/{namespace}", state_info)
    if events is not None:
        app.router.add_get("/v1/events", events.serve)
    ClientStreamServer(_stream_operations(service, gateway), service.metrics).add_routes(app)
    return app


def _stream_operations(service: OrderingService, gateway: Gateway | None) -> dict[str, Operation]:
    """The client stream's operations: the HTTPS routes' outcomes as (status, bytes)."""

    async def submit(raw: bytes) -> tuple[int, bytes]:
        status, outcome = await submit_outcome(service, raw)
        if not isinstance(outcome, Committed):
            return status, outcome.encode()
        receipt = CommitReceipt(
            tx_id=outcome.tx_id,
            block=outcome.block_number,
            index=outcome.tx_index,
            duplicate=outcome.duplicate,
            code=outcome.code,
            reason=outcome.reason or code_meaning(outcome.code),
        )
        return status, encode(receipt)

    async def endorse(raw: bytes) -> tuple[int, bytes]:
        status, outcome = await endorse_outcome(gateway, raw)
        return status, outcome.encode() if isinstance(outcome, str) else outcome

    return {SUBMIT: submit, ENDORSE: endorse}
