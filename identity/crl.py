"""Certificate revocation lists of the organisation CAs: made by the CA, read by everyone.

Each organisation's CA publishes one CRL (X.509 v2, DER) in the network configuration
(:class:`protocol.config.OrgConfig`). Every node's TLS contexts load them all and check each
peer's leaf against its issuer's list (OpenSSL, ``VERIFY_CRL_CHECK_LEAF``), and the
application layer checks them again (:class:`identity.validate.TrustStore`), as Fabric's MSP
does with the revocation lists in its channel configuration.

A list only grows, and each replacement carries a higher CRL number and a later
``thisUpdate`` than the one before: OpenSSL, holding both, uses the later one. ``nextUpdate``
is the CA's own end of validity, so a list never expires while its CA is valid (a CRL past
its ``nextUpdate`` would make OpenSSL refuse every certificate of that CA).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from identity.certs import PARSE_ERRORS, CertificateAuthority
from protocol import limits
from protocol.errors import CertificateError


@dataclass(frozen=True, slots=True)
class CrlInfo:
    """What a CRL says, once its signature checked out against its CA."""

    number: int
    this_update: dt.datetime
    serials: frozenset[int]


def make_crl(
    ca: CertificateAuthority, serials: Iterable[int], *, number: int, this_update: dt.datetime
) -> bytes:
    """The DER CRL of *ca* revoking *serials*, numbered *number*, issued at *this_update*."""
    ca_cert = ca.cert
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca_cert.subject)
        .last_update(this_update)
        .next_update(ca_cert.not_valid_after_utc)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    for serial in sorted(set(serials)):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(this_update)
            .build()
        )
    der = builder.sign(ca.key.private_key, hashes.SHA256()).public_bytes(Encoding.DER)
    if len(der) > limits.CRL_BYTES_MAX:
        raise CertificateError(f"the CRL would be {len(der)} bytes, over {limits.CRL_BYTES_MAX}")
    return der


def read_crl(der: bytes, ca_cert: x509.Certificate) -> CrlInfo:
    """The content of *der* if it is a CRL that *ca_cert* issued and signed; otherwise
    CertificateError naming the check that failed."""
    try:
        crl = x509.load_der_x509_crl(der)
        if crl.issuer != ca_cert.subject:
            raise CertificateError("the CRL names another issuer than its organisation's CA")
        if not crl.is_signature_valid(ca_cert.public_key()):  # type: ignore[arg-type]
            raise CertificateError("the CRL is not signed by its organisation's CA")
        number = crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        serials = frozenset(entry.serial_number for entry in crl)
        this_update = crl.last_update_utc
    except x509.ExtensionNotFound:
        raise CertificateError("the CRL has no CRL number") from None
    except PARSE_ERRORS:
        raise CertificateError("the CRL is malformed") from None
    return CrlInfo(number=number, this_update=this_update, serials=serials)


def crl_to_pem(der: bytes) -> bytes:
    """*der* as a PEM block (what OpenSSL's file loader takes for CRLs)."""
    return x509.load_der_x509_crl(der).public_bytes(Encoding.PEM)
