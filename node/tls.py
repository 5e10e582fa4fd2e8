"""Mutual TLS between members: SSL contexts, and who the peer at the other end is.

Two layers, because each catches what the other cannot:

1. **TLS (OpenSSL).** :func:`server_context` and :func:`client_context` build TLS 1.3-only
   contexts that present the node's certificate and require the peer's. The trust anchors
   are the network configuration's root CA *and* every organisation CA (DER from the genesis
   block's :class:`~protocol.config.NetworkConfig`), because peers present only their leaf:
   OpenSSL then builds leaf → org CA → root itself. A certificate from another network's root
   never gets past the handshake. The client also checks the server's name against the
   member's configured host (node certificates carry it, ``localhost`` and ``127.0.0.1`` in
   their SAN), and OpenSSL checks the EKU (serverAuth / clientAuth) for each direction.
   Each organisation CA's revocation list from the configuration is loaded too, and the
   peer's leaf is checked against its issuer's (:func:`load_crls`): a revoked node fails the
   handshake. When a list is replaced, the daemon loads the new one into both contexts.
2. **Membership (ours).** A valid chain is not enough: an org admin's or a doctor's
   certificate chains to the same root. :class:`PeerAuthenticator` re-validates the peer's
   DER with :meth:`identity.validate.TrustStore.validate` (our profile, revocation, time) and
   then requires a *member node*: role ``node``, and a member whose ``node_id`` is the
   certificate's subject id and whose configured ``node_cert`` is byte-for-byte the
   presented certificate (so a re-issued or stolen-CA certificate for the same name is not a
   member until a configuration change says so).

Keys may be passphrase-encrypted PKCS#8 PEM: the key is first read with
:func:`identity.keystore.read_signing_key` (a wrong passphrase or a bad file becomes a
ConfigError naming the path), then handed to ``SSLContext.load_cert_chain`` with the same
passphrase, which reads encrypted PKCS#8 directly, so no decrypted key touches the disk.

Imports: protocol, identity, node.config; the standard library's ssl.
"""

from __future__ import annotations

import dataclasses
import ssl
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path

from identity.certs import cert_from_der, cert_to_der
from identity.crl import crl_to_pem
from identity.keystore import read_cert, read_signing_key
from identity.validate import Identity, Purpose, SignatureMemo, TrustStore
from node.config import NodeConfig
from protocol.config import NetworkConfig
from protocol.errors import CertificateError, ConfigError

# Only TLS 1.3: no renegotiation, no static-RSA or CBC suites, and the client certificate
# is sent encrypted. Every node runs the same code, so there is no older peer to talk to.
TLS_VERSION_MIN = ssl.TLSVersion.TLSv1_3

NODE_ROLE = "node"


def _no_revocations() -> frozenset[int]:
    return frozenset()


def _utc_now() -> datetime:
    return datetime.now(UTC)


def trust_anchors_der(network: NetworkConfig) -> bytes:
    """The root CA and every organisation CA of *network*, as concatenated DER."""
    return network.root_ca + b"".join(org.ca_cert for org in network.orgs)


def published_crls(network: NetworkConfig) -> list[bytes]:
    """The revocation lists (DER) *network*'s organisations publish, in configuration order."""
    return [org.crl for org in network.orgs if org.crl]


def trust_store(network: NetworkConfig, signatures: SignatureMemo | None = None) -> TrustStore:
    """The :class:`TrustStore` of *network*'s root and organisation CAs and their CRLs
    (keeping the node's *signatures* memo, if given)."""
    org_cas = [cert_from_der(org.ca_cert) for org in network.orgs]
    return TrustStore(cert_from_der(network.root_ca), org_cas, signatures, published_crls(network))


def load_crls(ctx: ssl.SSLContext, network: NetworkConfig, crls: Iterable[bytes]) -> None:
    """Add *crls* (DER) to *ctx*'s store, and have OpenSSL check every peer's leaf against
    its issuer's list once every organisation of *network* publishes one.

    A replaced list stays in the store next to its successor; OpenSSL uses the one with the
    later ``thisUpdate``, which the configuration rules make the newer one. (CPython loads
    CRLs only from a file, so they pass through a private temporary one.)
    """
    pems = b"".join(crl_to_pem(der) for der in crls)
    if pems:
        with tempfile.NamedTemporaryFile(prefix="medledger-crls-", suffix=".pem") as f:
            f.write(pems)
            f.flush()
            try:
                ctx.load_verify_locations(cafile=f.name)
            except ssl.SSLError as exc:
                raise ConfigError(f"network configuration: unusable CRLs ({exc})") from None
    if network.orgs and all(org.crl for org in network.orgs):
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF


def _base_context(
    *, server: bool, cert: Path, key: Path, passphrase: bytes | None, network: NetworkConfig
) -> ssl.SSLContext:
    read_signing_key(key, passphrase)  # a clear ConfigError naming the path, never a prompt
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = TLS_VERSION_MIN
    ctx.verify_mode = ssl.CERT_REQUIRED
    try:
        # An empty password for an unencrypted key is ignored; for an encrypted one it fails
        # instead of letting OpenSSL prompt on the terminal.
        ctx.load_cert_chain(cert, key, password=passphrase if passphrase is not None else b"")
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"{cert}, {key}: cannot load as a TLS certificate and key ({exc})"
        ) from None
    try:
        ctx.load_verify_locations(cadata=trust_anchors_der(network))
    except ssl.SSLError as exc:
        raise ConfigError(f"network configuration: unusable CA certificates ({exc})") from None
    load_crls(ctx, network, published_crls(network))
    return ctx


def server_context(
    cert: Path, key: Path, passphrase: bytes | None, network: NetworkConfig
) -> ssl.SSLContext:
    """A TLS 1.3 server context that presents *cert* and requires a client certificate."""
    return _base_context(server=True, cert=cert, key=key, passphrase=passphrase, network=network)


def client_context(
    cert: Path, key: Path, passphrase: bytes | None, network: NetworkConfig
) -> ssl.SSLContext:
    """A TLS 1.3 client context that presents *cert* and verifies the server's chain and name."""
    ctx = _base_context(server=False, cert=cert, key=key, passphrase=passphrase, network=network)
    ctx.check_hostname = True
    return ctx


@dataclasses.dataclass(frozen=True, slots=True)
class TlsContexts:
    """The two contexts a node needs: serving its p2p port, and dialling the other members."""

    server: ssl.SSLContext
    client: ssl.SSLContext


def node_tls_contexts(config: NodeConfig, network: NetworkConfig) -> TlsContexts:
    """Both contexts for the node of *config* in *network*.

    Also checks that the node's ``tls.root_ca`` file is the network's root, so a node
    configured against the wrong network fails at start rather than at its first handshake.
    """
    root_der = cert_to_der(read_cert(config.tls.root_ca))
    if root_der != network.root_ca:
        raise ConfigError(f"{config.path}: field tls.root_ca is not this network's root CA")
    passphrase = config.key_passphrase()
    return TlsContexts(
        server=server_context(config.tls.cert, config.tls.key, passphrase, network),
        client=client_context(config.tls.cert, config.tls.key, passphrase, network),
    )


def peer_certificate_der(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes | None:
    """The DER certificate the TLS peer presented, or None (no TLS, or no certificate)."""
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return der or None


class PeerAuthenticator:
    """Decides whether a TLS peer's certificate is a current member node's.

    *member_certs* maps each member's node id to its configured node certificate (DER).
    *revoked* is called at each check, so revocations registered on chain apply to the next
    connection without rebuilding anything; *clock* gives the time certificates must be
    valid at.
    """

    def __init__(
        self,
        trust: TrustStore,
        member_certs: Mapping[str, bytes],
        *,
        revoked: Callable[[], frozenset[int]] = _no_revocations,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self._trust = trust
        self._member_certs = dict(member_certs)
        self._revoked = revoked
        self._clock = clock

    @classmethod
    def from_network(
        cls,
        network: NetworkConfig,
        *,
        revoked: Callable[[], frozenset[int]] = _no_revocations,
        clock: Callable[[], datetime] = _utc_now,
    ) -> PeerAuthenticator:
        """An authenticator for the members and CAs of *network*."""
        return cls(
            trust_store(network),
            {m.node_id: m.node_cert for m in network.members},
            revoked=revoked,
            clock=clock,
        )

    @property
    def member_ids(self) -> frozenset[str]:
        return frozenset(self._member_certs)

    def authenticate(self, cert_der: bytes | None, purpose: Purpose) -> Identity:
        """The member node's identity, or CertificateError naming the check that failed.

        *purpose* is TLS_CLIENT for a peer that dialled us and TLS_SERVER for one we dialled.
        Error messages never carry the certificate or its subject.
        """
        if cert_der is None:
            raise CertificateError("the peer presented no certificate")
        identity = self._trust.validate(
            cert_der, at=self._clock(), revoked=self._revoked(), purpose=purpose
        )
        if identity.role != NODE_ROLE:
            raise CertificateError("certificate is not a node certificate")
        if self._member_certs.get(identity.subject_id) != cert_der:
            raise CertificateError("certificate is not a current member's node certificate")
        return identity


def api_server_context(cert: Path, key: Path, passphrase: bytes | None) -> ssl.SSLContext:
    """The client API's server context: the node's certificate, no client certificate asked.

    Clients authenticate by signing what they submit, not at the TLS layer, so browsers and
    the CLI can call the API with only the network's CAs as trust.
    """
    read_signing_key(key, passphrase)  # a clear ConfigError naming the path, never a prompt
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key, password=passphrase if passphrase is not None else b"")
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"{cert}, {key}: cannot load the TLS certificate and key ({exc})"
        ) from None
    return ctx
