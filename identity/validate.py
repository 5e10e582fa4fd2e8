"""Validating certificates against the network's trust store and checking signatures.

A :class:`TrustStore` holds the root CA and the organisation CAs of the network (from the
current configuration block). :meth:`TrustStore.validate` turns a leaf certificate's DER, a
time and the set of revoked serials into an :class:`Identity`, or raises
:class:`~protocol.errors.CertificateError` with a reason that names the check that failed
(never the certificate bytes or subject).

Why explicit checks rather than ``cryptography.x509.verification``: our chains have a fixed
shape (root → org CA → leaf) and every issuer is known in advance, so there is no path to
build: the issuer is looked up by AuthorityKeyIdentifier among the org CAs and its signature
is checked with ``Certificate.verify_directly_issued_by``. The library's verifier applies the
Web PKI (CA/B Forum) profile, whose end-entity policy requires a SubjectAlternativeName on
client certificates (staff and patient certificates have none); that is adjustable through
``ExtensionPolicy``, but its errors are free text that embeds the certificate's subject, which
we would have to parse back into reasons and scrub before logging. A page of explicit
checks gives exact reasons and is easy to audit. The tests cross-check the profile with
``openssl verify`` and with the library's verifier on node certificates.

Purposes (all need KeyUsage digitalSignature, which ECDSA TLS also needs):

* ``SIGNING`` (transaction, endorsement and block signatures): EKU **clientAuth**. Every leaf we
  issue carries it (node certificates carry serverAuth too), so one rule covers users and
  nodes; a certificate with serverAuth only is not accepted for signing.
* ``TLS_SERVER``: EKU serverAuth (only node certificates have it).
* ``TLS_CLIENT``: EKU clientAuth.

Roles are not checked here beyond being one of :data:`~identity.certs.ROLES`: callers decide
which roles may do what, from :attr:`Identity.role`.

Revocation is the set of revoked serials from the on-chain registry, passed in by the caller;
a revoked organisation CA revokes every certificate it issued. Time is passed in (``at``);
nothing here reads a clock.

Imports: protocol, cryptography and :mod:`identity.keys` / :mod:`identity.certs`.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID, SignatureAlgorithmOID

from identity.certs import ID_CHARS, PARSE_ERRORS, ROLES, cert_from_der
from identity.crl import read_crl
from identity.keys import CURVE_NAME, SigningKey, VerifyingKey
from protocol import limits
from protocol.errors import CertificateError, LocalError

# Extensions whose meaning we check; any other extension marked critical is rejected
# (RFC 5280 §4.2: a certificate with an unrecognised critical extension must be rejected).
_KNOWN_EXTENSIONS = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    }
)


class Purpose(enum.Enum):
    """What a leaf certificate is being validated for (see the module docstring)."""

    SIGNING = "signing"
    TLS_SERVER = "tls_server"
    TLS_CLIENT = "tls_client"


_PURPOSE_EKU = {
    Purpose.SIGNING: ExtendedKeyUsageOID.CLIENT_AUTH,
    Purpose.TLS_SERVER: ExtendedKeyUsageOID.SERVER_AUTH,
    Purpose.TLS_CLIENT: ExtendedKeyUsageOID.CLIENT_AUTH,
}
_EKU_NAMES = {
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
}


@dataclass(frozen=True)
class Identity:
    """Who signed: the subject of a validated leaf certificate."""

    org_id: str
    role: str
    subject_id: str
    serial: int
    cert_der: bytes
    public_key: VerifyingKey


# --- single-certificate checks -------------------------------------------------------------------


def _extension(cert: x509.Certificate, cls: type[x509.ExtensionType]) -> x509.ExtensionType | None:
    try:
        return cert.extensions.get_extension_for_class(cls).value
    except x509.ExtensionNotFound:
        return None


def _extensions_ok(cert: x509.Certificate, what: str) -> None:
    try:
        extensions = cert.extensions
    except PARSE_ERRORS as exc:  # duplicate or unparsable extensions
        raise CertificateError(f"{what} has malformed extensions") from exc
    for ext in extensions:
        if ext.critical and ext.oid not in _KNOWN_EXTENSIONS:
            raise CertificateError(f"{what} has an unrecognised critical extension")


def _algorithms_ok(cert: x509.Certificate, what: str) -> None:
    if cert.version != x509.Version.v3:
        raise CertificateError(f"{what} is not an X.509 v3 certificate")
    if cert.serial_number <= 0:
        raise CertificateError(f"{what} serial number is not positive")
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ECDSA_WITH_SHA256:
        raise CertificateError(f"{what} is not signed with ECDSA-SHA256")
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{what} has a malformed or unsupported public key") from exc
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != CURVE_NAME:
        raise CertificateError(f"{what} key is not an EC P-256 key")


def _is_ca(cert: x509.Certificate) -> bool:
    bc = _extension(cert, x509.BasicConstraints)
    ku = _extension(cert, x509.KeyUsage)
    return bool(
        (isinstance(bc, x509.BasicConstraints) and bc.ca)
        or (isinstance(ku, x509.KeyUsage) and ku.key_cert_sign)
    )


def _check_ca_profile(cert: x509.Certificate, what: str, path_length_max: int) -> None:
    _extensions_ok(cert, what)
    _algorithms_ok(cert, what)
    bc = _extension(cert, x509.BasicConstraints)
    if not isinstance(bc, x509.BasicConstraints) or not bc.ca:
        raise CertificateError(f"{what} is not a CA certificate (BasicConstraints ca=False)")
    if bc.path_length is None or bc.path_length > path_length_max:
        raise CertificateError(f"{what} path length must be at most {path_length_max}")
    ku = _extension(cert, x509.KeyUsage)
    if not isinstance(ku, x509.KeyUsage) or not ku.key_cert_sign:
        raise CertificateError(f"{what} key usage lacks keyCertSign")
    if _subject_key_id(cert) is None:
        raise CertificateError(f"{what} has no subject key identifier")


def _subject_key_id(cert: x509.Certificate) -> bytes | None:
    ski = _extension(cert, x509.SubjectKeyIdentifier)
    return ski.digest if isinstance(ski, x509.SubjectKeyIdentifier) else None


def _authority_key_id(cert: x509.Certificate) -> bytes | None:
    aki = _extension(cert, x509.AuthorityKeyIdentifier)
    return aki.key_identifier if isinstance(aki, x509.AuthorityKeyIdentifier) else None


def _check_issued_by(cert: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    try:
        cert.verify_directly_issued_by(issuer)
    except ValueError as exc:
        raise CertificateError(f"{what} issuer name does not match its CA") from exc
    except (InvalidSignature, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"{what} has a bad issuer signature") from exc


def _check_signature_encoding(der: bytes, cert: x509.Certificate) -> None:
    """Refuse a signature BIT STRING with a non-zero unused-bits count.

    cryptography accepts and verifies such certificates, which would give one certificate
    several encodings (found by the byte-corruption property test). A P-256 signature is at
    most 72 bytes, so the BIT STRING length fits in one byte.
    """
    signature = cert.signature
    if not der.endswith(bytes([0x03, len(signature) + 1, 0x00]) + signature):
        raise CertificateError("certificate signature is not canonically encoded")


def _check_time(cert: x509.Certificate, at: dt.datetime, what: str) -> None:
    _check_window(_window(cert, what), at)


def _window(cert: x509.Certificate, what: str) -> tuple[dt.datetime, dt.datetime, str]:
    """(not before, not after, what): read once, since cryptography builds them per access."""
    return cert.not_valid_before_utc, cert.not_valid_after_utc, what


def _check_window(window: tuple[dt.datetime, dt.datetime, str], at: dt.datetime) -> None:
    not_before, not_after, what = window
    if at < not_before:
        raise CertificateError(f"{what} is not yet valid")
    if at > not_after:
        raise CertificateError(f"{what} has expired")


def _single_attribute(name: x509.Name, oid: x509.ObjectIdentifier, label: str, what: str) -> str:
    values = name.get_attributes_for_oid(oid)
    if len(values) != 1 or not isinstance(values[0].value, str):
        raise CertificateError(f"{what} subject must have exactly one {label}")
    value = values[0].value
    if not 0 < len(value) <= limits.ID_CHARS_MAX or not set(value) <= ID_CHARS:
        raise CertificateError(f"{what} subject {label} is empty, too long or has bad characters")
    return value


def _check_at(at: dt.datetime) -> dt.datetime:
    if not isinstance(at, dt.datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise LocalError("`at` must be a timezone-aware datetime")
    return at


# --- the trust store -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _OrgCA:
    org_id: str
    cert: x509.Certificate
    crl_serials: frozenset[int] = frozenset()  # what its CRL in the configuration revokes


# Leaves whose chain, signatures, usage and subject were verified, per purpose. A network
# has a few thousand active identities at most; past that the least recently used go.
VERIFIED_CACHE_MAX = 4_096
SIGNATURE_MEMO_MAX = 65_536  # 32-byte digests: a few MiB


@dataclass(frozen=True)
class _Verified:
    """What a full validation established once; time and revocation are checked per call."""

    identity: Identity
    ca_serial: int
    ca: _OrgCA
    windows: tuple[tuple[dt.datetime, dt.datetime, str], ...]  # validity, root to leaf


class SignatureMemo:
    """Digests of (key, data, signature) triples known good, so that a node checks each
    signature once (at ingress, at the gateway or in validation, whichever sees it first)
    and never one it made itself. Bounded; failures are never remembered, so a bad
    signature costs a verification every time. Thread-safe (endorsers run on threads)."""

    def __init__(self) -> None:
        self._good: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()
        self.verified = 0  # ECDSA verifications actually run

    def verify(self, key: VerifyingKey, data: bytes, signature: bytes) -> None:
        """Raise SignatureError unless *signature* by *key* covers *data*."""
        if not isinstance(signature, bytes) or len(signature) > limits.SIGNATURE_BYTES_MAX:
            key.verify(data, signature)  # raises the precise SignatureError
        digest = _signature_digest(key, data, signature)
        with self._lock:
            if digest in self._good:
                self._good.move_to_end(digest)
                return
            self.verified += 1
        key.verify(data, signature)
        self._remember(digest)

    def sign(self, key: SigningKey, data: bytes) -> bytes:
        """*key*'s signature over *data*, remembered as verified: a node need not verify
        what it signed itself when it comes back (its endorsement in a block it validates)."""
        signature = key.sign(data)
        self._remember(_signature_digest(key.public_key, data, signature))
        return signature

    def _remember(self, digest: bytes) -> None:
        with self._lock:
            self._good[digest] = None
            if len(self._good) > SIGNATURE_MEMO_MAX:
                self._good.popitem(last=False)


class TrustStore:
    """The root CA and the organisation CAs it signed; validates leaf certificates.

    The constructor checks that the root is a self-signed CA and that every organisation CA
    was signed by it, is a CA with path length 0, and has a unique key identifier; otherwise
    it raises CertificateError. Validity periods and revocation are checked at each
    :meth:`validate`, because they depend on its ``at`` and ``revoked``.
    """

    def __init__(
        self,
        root: x509.Certificate,
        org_cas: Iterable[x509.Certificate],
        signatures: SignatureMemo | None = None,
        crls: Iterable[bytes] = (),
    ) -> None:
        """*signatures*: the node's memo of verified signatures, kept when a new store is
        built for a changed configuration (a new one if not given). *crls*: the
        organisation CAs' revocation lists (DER); a leaf its issuer's list names is revoked,
        like one in the registry's list (each must be signed by one of *org_cas*)."""
        try:
            self._load(root, org_cas)
        except PARSE_ERRORS as exc:
            raise CertificateError("a CA certificate has a malformed or unsupported field") from exc
        for der in crls:
            self._load_crl(der)
        self._verified: OrderedDict[tuple[bytes, Purpose], _Verified] = OrderedDict()
        self.signatures = signatures or SignatureMemo()

    def _load(self, root: x509.Certificate, org_cas: Iterable[x509.Certificate]) -> None:
        _check_ca_profile(root, "root CA", path_length_max=1)
        if root.subject != root.issuer:
            raise CertificateError("root CA is not self-signed")
        _check_issued_by(root, root, "root CA")
        self._root = root
        self._root_key_id = _subject_key_id(root)
        self._org_cas: dict[bytes, _OrgCA] = {}
        for cert in org_cas:
            what = "organisation CA"
            _check_ca_profile(cert, what, path_length_max=0)
            if _authority_key_id(cert) != self._root_key_id:
                raise CertificateError(f"{what} was not issued by this network's root CA")
            _check_issued_by(cert, root, what)
            org_id = _single_attribute(cert.subject, NameOID.ORGANIZATION_NAME, "O", what)
            key_id = _subject_key_id(cert)
            if key_id is None or key_id == self._root_key_id or key_id in self._org_cas:
                raise CertificateError(f"{what} key identifier is missing or not unique")
            self._org_cas[key_id] = _OrgCA(org_id, cert)
        if len(self._org_cas) > limits.ORGS_MAX:
            raise CertificateError(f"more than {limits.ORGS_MAX} organisation CAs")

    def _load_crl(self, der: bytes) -> None:
        try:
            issuer = x509.load_der_x509_crl(der).issuer
        except PARSE_ERRORS:
            raise CertificateError("a CRL is malformed") from None
        for key_id, ca in self._org_cas.items():
            if ca.cert.subject == issuer:
                info = read_crl(der, ca.cert)
                self._org_cas[key_id] = _OrgCA(ca.org_id, ca.cert, info.serials)
                return
        raise CertificateError("a CRL names no organisation CA of this network")

    @property
    def root(self) -> x509.Certificate:
        return self._root

    @property
    def org_ids(self) -> frozenset[str]:
        """The organisations that have a CA in this store."""
        return frozenset(ca.org_id for ca in self._org_cas.values())

    def validate(
        self,
        leaf_der: bytes,
        *,
        at: dt.datetime,
        revoked: frozenset[int] = frozenset(),
        purpose: Purpose = Purpose.SIGNING,
    ) -> Identity:
        """The identity in *leaf_der* if it is a valid leaf for *purpose* at *at*.

        Raises CertificateError naming the failed check; checks run from the outside in
        (parse, profile, issuer, signature, revocation, validity, usage, subject).
        """
        at = _check_at(at)
        if not isinstance(purpose, Purpose):
            raise LocalError("purpose must be a Purpose")
        key = (bytes(leaf_der), purpose)
        known = self._verified.get(key)
        if known is not None:
            # The structural checks and signatures cannot change for the same bytes; what
            # depends on this call's time and revocation list is checked again, in the
            # order and with the messages of a full validation.
            if known.ca_serial in revoked:
                raise CertificateError("certificate's organisation CA is revoked")
            if known.identity.serial in revoked or known.identity.serial in known.ca.crl_serials:
                raise CertificateError("certificate is revoked")
            for window in known.windows:
                _check_window(window, at)
            self._verified.move_to_end(key)
            return known.identity
        cert = cert_from_der(leaf_der)
        try:
            identity = self._validate(leaf_der, cert, at, revoked, purpose)
        except PARSE_ERRORS as exc:
            # cryptography parses some fields lazily; a malformed one surfaces here.
            raise CertificateError("certificate has a malformed or unsupported field") from exc
        org_ca = self._org_cas[_authority_key_id(cert)]  # type: ignore[index]
        self._verified[key] = _Verified(
            identity,
            org_ca.cert.serial_number,
            org_ca,
            (
                _window(self._root, "root CA"),
                _window(org_ca.cert, "organisation CA"),
                _window(cert, "certificate"),
            ),
        )
        if len(self._verified) > VERIFIED_CACHE_MAX:
            self._verified.popitem(last=False)
        return identity

    def verify_signature(self, identity: Identity, data: bytes, signature: bytes) -> None:
        """Raise SignatureError unless *signature* by *identity* covers *data* (checked once
        per node: see :class:`SignatureMemo`)."""
        self.signatures.verify(identity.public_key, data, signature)

    @property
    def signatures_verified(self) -> int:
        """ECDSA verifications actually run through this store's memo (for metrics)."""
        return self.signatures.verified

    def _validate(
        self,
        der: bytes,
        cert: x509.Certificate,
        at: dt.datetime,
        revoked: frozenset[int],
        purpose: Purpose,
    ) -> Identity:
        what = "certificate"
        _extensions_ok(cert, what)
        _algorithms_ok(cert, what)
        _check_signature_encoding(der, cert)
        if _is_ca(cert):
            raise CertificateError("certificate is a CA certificate, not an end-entity one")

        key_id = _authority_key_id(cert)
        if key_id is None:
            raise CertificateError("certificate has no authority key identifier")
        org_ca = self._org_cas.get(key_id)
        if org_ca is None:
            if key_id == self._root_key_id:
                raise CertificateError(
                    "certificate was issued by the root CA, not by an organisation CA"
                )
            raise CertificateError(
                "certificate issuer is not an organisation CA of this network"
                " (another root, an unknown CA, or a leaf acting as a CA)"
            )
        _check_issued_by(cert, org_ca.cert, what)

        if org_ca.cert.serial_number in revoked:
            raise CertificateError("certificate's organisation CA is revoked")
        if cert.serial_number in revoked or cert.serial_number in org_ca.crl_serials:
            raise CertificateError("certificate is revoked")

        _check_time(self._root, at, "root CA")
        _check_time(org_ca.cert, at, "organisation CA")
        _check_time(cert, at, what)

        _check_usage(cert, purpose)

        org_id = _single_attribute(cert.subject, NameOID.ORGANIZATION_NAME, "O", what)
        role = _single_attribute(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU", what)
        subject_id = _single_attribute(cert.subject, NameOID.COMMON_NAME, "CN", what)
        if org_id != org_ca.org_id:
            raise CertificateError("certificate organisation differs from its issuing CA's")
        if role not in ROLES:
            raise CertificateError("certificate role (OU) is not a known role")

        public_key = cert.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey):  # checked above; for typing
            raise CertificateError("certificate key is not an EC P-256 key")
        return Identity(
            org_id=org_id,
            role=role,
            subject_id=subject_id,
            serial=cert.serial_number,
            cert_der=der,
            public_key=VerifyingKey(public_key),
        )


def _check_usage(cert: x509.Certificate, purpose: Purpose) -> None:
    ku = _extension(cert, x509.KeyUsage)
    if not isinstance(ku, x509.KeyUsage) or not ku.digital_signature:
        raise CertificateError("certificate key usage lacks digitalSignature")
    eku = _extension(cert, x509.ExtendedKeyUsage)
    wanted = _PURPOSE_EKU[purpose]
    if not isinstance(eku, x509.ExtendedKeyUsage) or wanted not in eku:
        raise CertificateError(
            f"certificate extended key usage lacks {_EKU_NAMES[wanted]}"
            f" (needed for {purpose.value})"
        )


def _signature_digest(key: VerifyingKey, data: bytes, signature: bytes) -> bytes:
    """What the signature memo remembers of a (key, data, signature) triple."""
    der = key.to_der()
    return hashlib.sha256(
        len(der).to_bytes(4, "big") + der + len(signature).to_bytes(4, "big") + signature + data
    ).digest()


def verify_signed(identity_or_key: Identity | VerifyingKey, data: bytes, signature: bytes) -> None:
    """Raise SignatureError unless *signature* is the signature of *data* by this key."""
    if isinstance(identity_or_key, Identity):
        key = identity_or_key.public_key
    elif isinstance(identity_or_key, VerifyingKey):
        key = identity_or_key
    else:
        raise LocalError("verify_signed needs an Identity or a VerifyingKey")
    key.verify(data, signature)


@dataclass(frozen=True)
class SubjectFields:
    """The org, role and subject id a certificate names; read, not validated (for display)."""

    org_id: str
    role: str
    subject_id: str


def subject_fields(cert: x509.Certificate) -> SubjectFields:
    """What *cert*'s subject says (CertificateError if it lacks O, OU or CN); no trust implied."""
    what = "certificate"
    return SubjectFields(
        org_id=_single_attribute(cert.subject, NameOID.ORGANIZATION_NAME, "O", what),
        role=_single_attribute(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU", what),
        subject_id=_single_attribute(cert.subject, NameOID.COMMON_NAME, "CN", what),
    )
