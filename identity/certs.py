"""Issuing the certificates of the medledger PKI: root CA → organisation CA → leaves.

Profile (every certificate, checked by :mod:`identity.validate` and by ``openssl verify``):

* ECDSA P-256 keys, ECDSA-SHA256 signatures, random 159-bit serials
  (``x509.random_serial_number``), SubjectKeyIdentifier and AuthorityKeyIdentifier
  (the root's AKI names its own key).
* Root: subject ``CN=<common_name>``; BasicConstraints ``ca=True, path_length=1`` (critical);
  KeyUsage keyCertSign + cRLSign (critical).
* Organisation CA: subject ``O=<org_id>, CN=<org_name>``; BasicConstraints
  ``ca=True, path_length=0`` (critical); KeyUsage keyCertSign + cRLSign (critical).
* Node: subject ``O=<org_id>, OU=node, CN=<node_id>``; BasicConstraints ``ca=False``
  (critical); KeyUsage digitalSignature + keyAgreement (critical); EKU serverAuth +
  clientAuth; SubjectAlternativeName with a DNSName per host name and an IPAddress per IP.
* User (admin, doctor, nurse, patient): subject ``O=<org_id>, OU=<role>, CN=<user_id>``;
  BasicConstraints ``ca=False`` (critical); KeyUsage digitalSignature (critical); EKU
  clientAuth; no SAN.

Certificates end up inside blocks, so a subject never holds a person's name or national id:
for a patient ``user_id`` is a pseudonym chosen off chain.

Time is always an argument (``now``, timezone-aware); a certificate is valid from ``now``
exactly (no backdating), and the issuing CA must be valid at ``now``. A leaf may outlive its
CA; validation checks both. Bad arguments are our caller's bug and raise
:class:`~protocol.errors.LocalError`; bad certificate bytes from outside raise
:class:`~protocol.errors.CertificateError`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from identity.keys import SigningKey, VerifyingKey
from protocol import limits
from protocol.errors import CertificateError, LocalError

ROLES = ("node", "admin", "doctor", "nurse", "patient")
USER_ROLES = tuple(r for r in ROLES if r != "node")

# RFC 5280 Appendix A: ub-common-name = 64. An org name longer than this does not fit a CN
# (the full display name lives in the network configuration's OrgConfig.name).
COMMON_NAME_CHARS_MAX = 64
# Characters allowed in ids that go into a subject: printable ASCII without separators that
# tools render ambiguously in distinguished names.
ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-@:")
HOSTS_MAX = 16  # SAN entries per node certificate.

# What cryptography raises for malformed or unsupported certificate contents. It parses some
# fields (extensions, the public key) lazily, so these can surface after loading too; code
# that handles certificates from outside turns them into CertificateError.
PARSE_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    UnsupportedAlgorithm,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


@dataclass(frozen=True)
class CertificateAuthority:
    """A CA certificate with its signing key; the key must match the certificate."""

    cert: x509.Certificate
    key: SigningKey

    def __post_init__(self) -> None:
        if self.cert.public_key() != self.key.private_key.public_key():
            raise LocalError("CertificateAuthority: key does not match the certificate")
        try:
            bc = self.cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        except x509.ExtensionNotFound:
            raise LocalError("CertificateAuthority: certificate has no BasicConstraints") from None
        if not bc.ca:
            raise LocalError("CertificateAuthority: certificate is not a CA certificate")


# --- argument checks ---------------------------------------------------------------------------


def _utc(now: dt.datetime) -> dt.datetime:
    if not isinstance(now, dt.datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise LocalError("now must be a timezone-aware datetime")
    return now.astimezone(dt.UTC).replace(microsecond=0)


def check_id(what: str, value: str) -> str:
    """Return *value* if it is a valid subject id (org id, node id, user id), else LocalError."""
    if not isinstance(value, str) or not 0 < len(value) <= limits.ID_CHARS_MAX:
        raise LocalError(f"{what} must be a string of 1..{limits.ID_CHARS_MAX} characters")
    if not set(value) <= ID_CHARS:
        raise LocalError(f"{what} may contain only letters, digits and . _ - @ :")
    return value


def _check_valid_days(valid_days: int) -> int:
    if not isinstance(valid_days, int) or isinstance(valid_days, bool) or valid_days < 1:
        raise LocalError("valid_days must be a positive integer")
    return valid_days


def _check_issuer_valid(ca: CertificateAuthority, now: dt.datetime) -> None:
    if not ca.cert.not_valid_before_utc <= now <= ca.cert.not_valid_after_utc:
        raise LocalError("issuing CA is not valid at `now`")


# --- building ----------------------------------------------------------------------------------


def _ski(key: VerifyingKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key.public_key)


def _aki_from_issuer(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski)


def _key_usage(
    *, digital_signature: bool = False, key_agreement: bool = False, cert_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=key_agreement,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: VerifyingKey,
    now: dt.datetime,
    valid_days: int,
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=_check_valid_days(valid_days)))
        .add_extension(_ski(key), critical=False)
    )


def _name(*, org_id: str | None, role: str | None, common_name: str) -> x509.Name:
    attrs = []
    if org_id is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org_id))
    if role is not None:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role))
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


def _sign(builder: x509.CertificateBuilder, key: SigningKey) -> x509.Certificate:
    return builder.sign(key.private_key, hashes.SHA256())


def create_root_ca(
    common_name: str, key: SigningKey, *, now: dt.datetime, valid_days: int = 3650
) -> x509.Certificate:
    """The self-signed ministry root CA (path length 1: it signs only organisation CAs)."""
    if not isinstance(common_name, str) or not 0 < len(common_name) <= COMMON_NAME_CHARS_MAX:
        raise LocalError(f"common_name must be 1..{COMMON_NAME_CHARS_MAX} characters")
    now = _utc(now)
    name = _name(org_id=None, role=None, common_name=common_name)
    builder = (
        _builder(name, name, key.public_key, now, valid_days)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(_ski(key.public_key)),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
    )
    return _sign(builder, key)


def create_org_ca(
    root: CertificateAuthority,
    org_id: str,
    org_name: str,
    key: VerifyingKey,
    *,
    now: dt.datetime,
    valid_days: int = 1825,
) -> x509.Certificate:
    """An organisation's CA, signed by the root; it signs only leaves (path length 0)."""
    check_id("org_id", org_id)
    if not isinstance(org_name, str) or not 0 < len(org_name) <= COMMON_NAME_CHARS_MAX:
        raise LocalError(f"org_name must be 1..{COMMON_NAME_CHARS_MAX} characters (RFC 5280)")
    now = _utc(now)
    _check_issuer_valid(root, now)
    builder = (
        _builder(
            _name(org_id=org_id, role=None, common_name=org_name),
            root.cert.subject,
            key,
            now,
            valid_days,
        )
        .add_extension(_aki_from_issuer(root.cert), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
    )
    return _sign(builder, root.key)


def _org_of(ca: CertificateAuthority) -> str:
    values = ca.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if len(values) != 1:
        raise LocalError("issuing CA is not an organisation CA (its subject has no single O)")
    return str(values[0].value)


def _leaf_builder(
    ca: CertificateAuthority,
    org_id: str,
    role: str,
    subject_id: str,
    key: VerifyingKey,
    now: dt.datetime,
    valid_days: int,
) -> x509.CertificateBuilder:
    check_id("org_id", org_id)
    now = _utc(now)
    _check_issuer_valid(ca, now)
    if _org_of(ca) != org_id:
        raise LocalError("org_id differs from the issuing CA's organisation")
    return (
        _builder(
            _name(org_id=org_id, role=role, common_name=subject_id),
            ca.cert.subject,
            key,
            now,
            valid_days,
        )
        .add_extension(_aki_from_issuer(ca.cert), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    )


def _san(hosts: Iterable[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        if not isinstance(host, str) or not 0 < len(host) <= limits.HOST_CHARS_MAX:
            raise LocalError(f"host names must be 1..{limits.HOST_CHARS_MAX} characters")
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            if not host.isascii() or any(c.isspace() for c in host):
                raise LocalError("host names must be ASCII (IDNA-encoded) without spaces") from None
            names.append(x509.DNSName(host.lower()))
    if not names:
        raise LocalError("a node certificate needs at least one host")
    if len(names) > HOSTS_MAX:
        raise LocalError(f"a node certificate holds at most {HOSTS_MAX} hosts")
    return x509.SubjectAlternativeName(names)


def issue_node_cert(
    ca: CertificateAuthority,
    org_id: str,
    node_id: str,
    key: VerifyingKey,
    hosts: list[str],
    *,
    now: dt.datetime,
    valid_days: int = 825,
) -> x509.Certificate:
    """A node's certificate: signs blocks and endorsements, and serves and dials mutual TLS."""
    check_id("node_id", node_id)
    builder = (
        _leaf_builder(ca, org_id, "node", node_id, key, now, valid_days)
        .add_extension(_key_usage(digital_signature=True, key_agreement=True), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(_san(hosts), critical=False)
    )
    return _sign(builder, ca.key)


def issue_user_cert(
    ca: CertificateAuthority,
    org_id: str,
    user_id: str,
    role: str,
    key: VerifyingKey,
    *,
    now: dt.datetime,
    valid_days: int = 825,
) -> x509.Certificate:
    """A staff member's or patient's certificate (role admin, doctor, nurse or patient)."""
    if role not in USER_ROLES:
        raise LocalError(f"role must be one of {', '.join(USER_ROLES)}")
    check_id("user_id", user_id)
    builder = (
        _leaf_builder(ca, org_id, role, user_id, key, now, valid_days)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    )
    return _sign(builder, ca.key)


# --- encoding ----------------------------------------------------------------------------------


def cert_to_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def cert_from_der(der: bytes) -> x509.Certificate:
    """Parse DER from outside; non-bytes, oversize or malformed input raises CertificateError."""
    if not isinstance(der, bytes):
        raise CertificateError(f"certificate must be bytes, not {type(der).__name__}")
    if len(der) > limits.CERTIFICATE_BYTES_MAX:
        raise CertificateError(
            f"certificate is {len(der)} bytes, over the limit of {limits.CERTIFICATE_BYTES_MAX}"
        )
    try:
        return x509.load_der_x509_certificate(der)
    except PARSE_ERRORS as exc:
        raise CertificateError("certificate is not valid DER X.509") from exc


def cert_to_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_from_pem(pem: bytes) -> x509.Certificate:
    """Parse exactly one PEM certificate; malformed input or a bundle raises CertificateError."""
    certs = certs_from_pem(pem)
    if len(certs) != 1:
        raise CertificateError(f"expected one PEM certificate, found {len(certs)}")
    return certs[0]


def certs_from_pem(pem: bytes) -> list[x509.Certificate]:
    """Parse a PEM bundle of one or more certificates, each within CERTIFICATE_BYTES_MAX."""
    if not isinstance(pem, bytes):
        raise CertificateError(f"PEM must be bytes, not {type(pem).__name__}")
    try:
        certs = x509.load_pem_x509_certificates(pem)
    except PARSE_ERRORS as exc:
        raise CertificateError("not a PEM certificate or bundle") from exc
    for cert in certs:
        if len(cert_to_der(cert)) > limits.CERTIFICATE_BYTES_MAX:
            raise CertificateError(
                f"a certificate in the bundle is over {limits.CERTIFICATE_BYTES_MAX} bytes"
            )
    return certs
