"""A client of a node's API, for the CLI and tests: HTTPS with the network's CAs as trust.

Synchronous wrappers over aiohttp so click commands stay simple; every call is bounded by a
timeout and turns connection problems into :class:`NodeUnavailable` with the URL named.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from identity.certs import cert_to_pem
from identity.keystore import read_cert
from protocol.errors import LocalError, MedledgerError

REQUEST_TIMEOUT_S = 30.0  # a submit waits for commit; elections take well under a second


class NodeUnavailable(MedledgerError):
    """The node did not answer (down, wrong URL, TLS failure)."""


class NodeRefused(MedledgerError):
    """The node answered with an error status; the message is the node's reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{reason} (HTTP {status})")
        self.status = status
        self.reason = reason


def network_ssl_context(network_dir: Path) -> ssl.SSLContext:
    """A client TLS context trusting the network's root CA and its organisation CAs."""
    pems = [cert_to_pem(read_cert(network_dir / "ca" / "root.pem"))]
    for org_ca in sorted((network_dir / "orgs").glob("*/ca.pem")):
        pems.append(cert_to_pem(read_cert(org_ca)))
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.load_verify_locations(cadata="".join(p.decode() for p in pems))
    return ctx


class NodeClient:
    """Calls one node's API at *base_url* (``https://host:api_port``)."""

    def __init__(
        self,
        base_url: str,
        ssl_context: ssl.SSLContext | None,
        *,
        timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise LocalError(f"node URL must start with https:// ({base_url})")
        self.base_url = base_url.rstrip("/")
        self.ssl_context = ssl_context
        self.timeout_s = timeout_s

    def _run(self, method: str, path: str, body: bytes | None = None, *, raw: bool = False) -> Any:
        return asyncio.run(self.request(method, path, body, raw=raw))

    async def request(
        self, method: str, path: str, body: bytes | None = None, *, raw: bool = False
    ) -> Any:
        """One request; JSON (or raw bytes) on success, NodeRefused / NodeUnavailable otherwise."""
        url = self.base_url + path
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        headers = {"Content-Type": "application/msgpack"} if body is not None else {}
        try:
            async with (
                aiohttp.ClientSession(timeout=timeout) as session,
                session.request(
                    method, url, data=body, headers=headers, ssl=self.ssl_context or False
                ) as response,
            ):
                if response.status >= 400:
                    try:
                        reason = (await response.json()).get("error", response.reason)
                    except (aiohttp.ContentTypeError, ValueError):
                        reason = response.reason or "error"
                    raise NodeRefused(response.status, str(reason))
                return await response.read() if raw else await response.json()
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise NodeUnavailable(f"{url}: {type(e).__name__}: {e}") from None

    def health(self) -> dict[str, Any]:
        """GET /healthz (raises NodeRefused 503 while not ready)."""
        return self._run("GET", "/healthz")  # type: ignore[no-any-return]

    def submit(self, envelope: bytes) -> dict[str, Any]:
        """POST /v1/envelopes; returns once committed."""
        return self._run("POST", "/v1/envelopes", envelope)  # type: ignore[no-any-return]

    def endorse(self, signed_proposal: bytes, *, chain_height: int = 0) -> bytes:
        """POST /v1/endorse; the node's EndorseReply bytes, simulated once the node holds
        *chain_height* blocks (503 if it does not within node.chain_watch.CHAIN_WAIT_S)."""
        path = f"/v1/endorse?chain_height={chain_height}" if chain_height else "/v1/endorse"
        raw: bytes = self._run("POST", path, signed_proposal, raw=True)
        return raw

    def gateway_endorse(self, signed_proposal: bytes) -> bytes:
        """POST /v1/gateway/endorse; the prepared Transaction bytes."""
        raw: bytes = self._run("POST", "/v1/gateway/endorse", signed_proposal, raw=True)
        return raw

    def tx_info(self, tx_id: str) -> dict[str, Any] | None:
        """GET /v1/tx/{tx_id} (hex); None if the node has no such transaction."""
        return self._get_or_none(f"/v1/tx/{tx_id}")

    def state_info(self, namespace: str, key: bytes) -> dict[str, Any] | None:
        """GET /v1/state/{namespace}?key=HEX; None if the key is absent."""
        return self._get_or_none(f"/v1/state/{quote(namespace, safe='')}?key={key.hex()}")

    def _get_or_none(self, path: str) -> dict[str, Any] | None:
        try:
            return self._run("GET", path)  # type: ignore[no-any-return]
        except NodeRefused as e:
            if e.status == 404:
                return None
            raise

    def follow_events(
        self, start: int | None, on_block: Callable[[dict[str, Any]], None], *, follow: bool
    ) -> None:
        """Stream committed blocks' event messages from block *start* (None: from the
        current height) to *on_block*; without *follow*, stop at the height when called."""
        asyncio.run(self._follow_events(start, on_block, follow))

    async def _follow_events(
        self, start: int | None, on_block: Callable[[dict[str, Any]], None], follow: bool
    ) -> None:
        height = (await self.request("GET", "/v1/chain"))["height"]
        start = height if start is None else start
        if not follow and start >= height:
            return
        url = f"{self.base_url}/v1/events?from={start}"
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(url, ssl=self.ssl_context or False, heartbeat=30.0) as ws,
            ):
                while True:
                    msg = await ws.receive()
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        block = json.loads(msg.data)
                        on_block(block)
                        if not follow and block["block"] >= height - 1:
                            return
                    elif msg.type == aiohttp.WSMsgType.CLOSE and msg.data != 1000:
                        raise NodeRefused(msg.data, str(msg.extra or "the node closed the stream"))
                    else:
                        raise NodeUnavailable(f"{url}: the node closed the stream")
        except aiohttp.WSServerHandshakeError as e:
            raise NodeRefused(e.status, e.message) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise NodeUnavailable(f"{url}: {type(e).__name__}: {e}") from None

    def raft_status(self) -> dict[str, Any]:
        return self._run("GET", "/v1/raft/status")  # type: ignore[no-any-return]

    def chain_info(self) -> dict[str, Any]:
        return self._run("GET", "/v1/chain")  # type: ignore[no-any-return]

    def request_text(self, path: str) -> str:
        """GET *path* as text (e.g. /metrics)."""
        raw: bytes = self._run("GET", path, raw=True)
        return raw.decode("utf-8")

    def config_bytes(self) -> bytes:
        """GET /v1/config: the current network configuration's canonical bytes."""
        return self._run("GET", "/v1/config", raw=True)  # type: ignore[no-any-return]

    def block_bytes(self, number: int) -> bytes | None:
        """One block's canonical bytes, or None if the node has no such block."""
        try:
            return self._run("GET", f"/v1/blocks/{number}", raw=True)  # type: ignore[no-any-return]
        except NodeRefused as e:
            if e.status == 404:
                return None
            raise
