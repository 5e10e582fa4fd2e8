"""`medledger node start`: the composition root of one node.

Loads the configuration, opens the node's database (installing the genesis block into an
empty one), and wires one subsystem per helper: TLS and the member transport, the ordering
service, the p2p site (mutual TLS) and the client API site (server TLS). Runs until SIGTERM
or SIGINT, then stops accepting, stops the loop and closes the database.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import os
import signal
import ssl
from pathlib import Path

import uvloop
from aiohttp import web

from chaincode.builtin import node_registry
from chaincode.registry import ContractRegistry
from identity.certs import cert_to_der
from identity.keystore import read_cert, read_signing_key
from node.allocator import tune_allocator
from node.api import build_api_app
from node.catchup import add_delivery_route, catch_up
from node.config import NodeConfig, load_node_config
from node.endorse_link import EndorseLink
from node.events import EventHub
from node.gateway import Gateway
from node.genesis import CONFIG_KEY, CONFIG_NAMESPACE, genesis_envelope
from node.ledger_view import endorser_names
from node.logs import event, setup_logging
from node.metrics import Metrics
from node.ordering import OrderingNode
from node.store import install_genesis, open_node_store
from node.tls import (
    PeerAuthenticator,
    api_server_context,
    load_crls,
    node_tls_contexts,
    published_crls,
    trust_store,
)
from node.transport import Transport, start_tls_site
from protocol.block import Block
from protocol.codec import decode
from protocol.config import NetworkConfig
from protocol.errors import ConfigError, FieldError, RemoteError
from protocol.ordering import ChainPoint, EndorseAnswer, EndorseRequest
from storage.ledger import Stores

log = logging.getLogger("medledger.node")

# Test hook: with this set to 1, SIGUSR1 cuts the node off from every member (frames dropped
# both ways, client API still up) and SIGUSR2 heals it. Never set in production.
FAULT_SIGNALS_ENV = "MEDLEDGER_FAULT_SIGNALS"
GC_GEN0_THRESHOLD = 20_000


def run_node(config_path: Path) -> None:
    """Run the node configured in *config_path* until it is told to stop."""
    config = load_node_config(config_path)
    setup_logging(config.node_id, config.log_file, config.log_level)
    with open_node_store(config.data_dir, create=True) as stores:
        network = _prepare_chain(config, stores)
        _tune_gc()
        tune_allocator()
        # uvloop: libuv's event loop and its TLS transport, a drop-in for asyncio's; on this
        # machine it took the 1-client p50 of a 3-member cluster from 3.75 to 3.3-3.5 ms.
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(_serve(config, network, stores))


def _tune_gc() -> None:
    """Move what start-up allocated out of the collector's way and collect less often.

    A node under load allocates mostly short-lived, acyclic objects (frames, futures,
    decoded messages) that reference counting frees; the default gen-0 threshold of 700
    runs the cyclic collector hundreds of times a second over them.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)


def _prepare_chain(config: NodeConfig, stores: Stores) -> NetworkConfig:
    """Check (or install) the genesis block and return the current network configuration."""
    try:
        genesis_raw = config.genesis.read_bytes()
        genesis = decode(genesis_raw, Block)
        genesis_envelope(genesis)
    except OSError as e:
        raise ConfigError(
            f"{config.genesis}: cannot read the genesis block ({e.strerror})"
        ) from None
    except RemoteError as e:
        hint = ""
        if isinstance(e, FieldError) and e.problem == "missing":
            hint = (
                "; a field this version needs is missing: was the network initialised by an "
                "earlier version of medledger? initialise it again (network init --force)"
            )
        raise ConfigError(f"{config.genesis}: not a genesis block ({e}){hint}") from None
    if stores.blocks.height == 0:
        install_genesis(stores, genesis)
    elif stores.blocks.get_raw(0) != genesis_raw:
        raise ConfigError(f"{config.data_dir}: the chain here starts with another genesis block")
    stored = stores.state.get(CONFIG_NAMESPACE, CONFIG_KEY)
    if stored is None:
        raise ConfigError(f"{config.data_dir}: no network configuration in the world state")
    network = decode(stored[0], NetworkConfig)
    if network.network_id != config.network_id:
        raise ConfigError(f"{config.path}: field node.network_id does not match the chain")
    if network.member(config.node_id) is None:
        # A node being added: it serves, waits for the leader to add it as a learner, and
        # catches up from the members it knows of.
        event(log, logging.INFO, "node.joining", members=len(network.members))
    return network


def _check_contracts(network: NetworkConfig, registry: ContractRegistry) -> int:
    """Warn about each contract the network pins that this node cannot run (not installed,
    another version or other code): it can still order and validate, but not endorse it.
    Returns how many there are."""
    unavailable = 0
    for pin in network.contracts:
        problem = registry.pin_problem(pin)
        if problem is not None:
            unavailable += 1
            event(log, logging.WARNING, "contract.unavailable", contract=pin.name, reason=problem)
    return unavailable


async def _serve(config: NodeConfig, network: NetworkConfig, stores: Stores) -> None:
    metrics = Metrics()
    contracts = node_registry()
    if _check_contracts(network, contracts):
        metrics.inc("contracts_unavailable")
    passphrase = config.key_passphrase()
    key = read_signing_key(config.tls.key, passphrase)
    cert_der = cert_to_der(read_cert(config.tls.cert))
    ordering = OrderingNode(
        node_id=config.node_id,
        network=network,
        stores=stores,
        trust=trust_store(network),
        key=key,
        cert_der=cert_der,
        metrics=metrics,
        contracts=contracts,
        tuning=config.raft,
        bootstrap_voters=tuple(m.node_id for m in _genesis_config(stores).members),
    )
    tls = node_tls_contexts(config, network)

    def revoked() -> frozenset[int]:
        # The registry's revocation list as of the last validated block: each new peer
        # stream is refused if its node certificate is on it (the application layer checks
        # every creator and endorser against the same list).
        return ordering.validator.revoked

    def on_peer_message(sender: str, msg: object) -> None:
        if isinstance(msg, EndorseRequest | EndorseAnswer):
            link.on_message(sender, msg)  # the gateway's requests and their answers
        else:
            ordering.on_message(sender, msg)

    transport = Transport(
        config.node_id,
        _peers_of(network, config.node_id),
        server_ctx=tls.server,
        client_ctx=tls.client,
        authenticator=PeerAuthenticator.from_network(network, revoked=revoked),
        on_message=on_peer_message,
        metrics=metrics,
    )
    ordering.send = transport.send
    link = EndorseLink(
        config.node_id,
        send=transport.send,
        connected=transport.connected_peers,
        endorse=ordering.endorse,
        metrics=metrics,
        chain=ordering.chain,
    )

    ordering.connected_peers = transport.connected_peers
    ordering.catch_up = functools.partial(_catch_up, ordering, stores, tls.client, config.node_id)

    known_cas = {org.ca_cert for org in network.orgs}
    known_crls = set(published_crls(network))

    def follow_config(new: NetworkConfig) -> None:
        # A new organisation's nodes present certificates its CA issued: both TLS contexts
        # learn that CA now, so new handshakes verify them. A new or replaced revocation
        # list applies to new handshakes too; open streams are checked again below
        # (update_members ends with Transport.recheck_streams).
        added = [org.ca_cert for org in new.orgs if org.ca_cert not in known_cas]
        crls = [crl for crl in published_crls(new) if crl not in known_crls]
        for ctx in (tls.server, tls.client):
            if added:
                ctx.load_verify_locations(cadata=b"".join(added))
            load_crls(ctx, new, crls)
        known_cas.update(added)
        known_crls.update(crls)
        transport.update_members(
            _peers_of(new, config.node_id), PeerAuthenticator.from_network(new, revoked=revoked)
        )

    ordering.on_config_change = follow_config

    p2p_app = web.Application()
    transport.add_routes(p2p_app)
    add_delivery_route(p2p_app, stores, lambda: transport.authenticator)
    p2p_runner = web.AppRunner(p2p_app, access_log=None)
    # Every node has one; it serves while the node is an endorsing member (a hospital's
    # node added later becomes a gateway once its configuration update is applied).
    gateway = Gateway(
        node_id=config.node_id,
        network=lambda: ordering.network,
        trust=lambda: ordering.trust,
        endorse_locally=ordering.endorse_signed,
        client_ctx=tls.client,
        metrics=metrics,
        revoked=revoked,
        link=link,
        chain_height=lambda: ordering.chain.height,
    )
    events = EventHub(stores.blocks, lambda: endorser_names(ordering.network))
    checked_revocations = ordering.validator.revoked

    def on_block(block: Block) -> None:
        nonlocal checked_revocations
        events.publish(block)
        # A revocation in this block also ends the streams the revoked node already has
        # open (new connections are refused by the authenticator's revoked() anyway).
        if ordering.validator.revoked is not checked_revocations:
            checked_revocations = ordering.validator.revoked
            transport.recheck_streams()

    ordering.on_block = on_block
    api_runner = web.AppRunner(build_api_app(ordering, gateway, events), access_log=None)
    await p2p_runner.setup()
    await api_runner.setup()
    host = config.listen.host
    try:
        await start_tls_site(p2p_runner, host, config.listen.p2p_port, tls.server)
        await start_tls_site(
            api_runner,
            host,
            config.listen.api_port,
            api_server_context(config.tls.cert, config.tls.key, passphrase),
        )
    except OSError as e:
        await p2p_runner.cleanup()
        await api_runner.cleanup()
        raise ConfigError(f"cannot listen on {host}: {e.strerror}") from None
    await transport.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, ordering.stop)
    if os.environ.get(FAULT_SIGNALS_ENV) == "1":
        _install_fault_signals(loop, transport)
    event(
        log,
        logging.INFO,
        "node.started",
        p2p_port=config.listen.p2p_port,
        api_port=config.listen.api_port,
        height=stores.blocks.height,
    )
    try:
        await ordering.run()
    finally:
        event(log, logging.INFO, "node.stopping")
        await api_runner.cleanup()
        await gateway.close()
        await transport.stop()
        await p2p_runner.cleanup()
        event(log, logging.INFO, "node.stopped")


def _install_fault_signals(loop: asyncio.AbstractEventLoop, transport: Transport) -> None:
    def isolate(on: bool) -> None:
        transport.isolated = on
        event(log, logging.WARNING, "fault.isolated" if on else "fault.healed")

    loop.add_signal_handler(signal.SIGUSR1, isolate, True)
    loop.add_signal_handler(signal.SIGUSR2, isolate, False)


async def _catch_up(
    ordering: OrderingNode,
    stores: Stores,
    client_ctx: ssl.SSLContext,
    node_id: str,
    point: ChainPoint,
) -> int:
    """Pull the blocks a snapshot needs, asking the leader first, then every other member."""
    members = [m for m in ordering.network.members if m.node_id != node_id]
    members.sort(key=lambda m: (m.node_id != ordering.leader, m.node_id))
    return await catch_up(
        stores,
        point,
        [(m.node_id, m.host, m.p2p_port) for m in members],
        client_ctx=client_ctx,
        trust=lambda: ordering.trust,
        network=lambda: ordering.network,
        commit=ordering.commit_validated,
    )


def _peers_of(network: NetworkConfig, node_id: str) -> dict[str, tuple[str, int]]:
    return {m.node_id: (m.host, m.p2p_port) for m in network.members if m.node_id != node_id}


def _genesis_config(stores: Stores) -> NetworkConfig:
    genesis = stores.blocks.get(0)
    if genesis is None:
        raise ConfigError("the node database has no genesis block")
    return genesis_envelope(genesis).update.config
