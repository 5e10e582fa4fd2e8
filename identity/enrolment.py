"""Enrolment at an organisation's CA: the person's client sends a CSR with a one-time
secret; the CA issues a certificate only for an identity its organisation registered on
chain, whose secret hash matches (the register/enrol model of Fabric's CA).

The person's client makes its own key and a CSR naming only its subject id; organisation
and role come from the on-chain record, never from the CSR. The secret's sha256 is what the
registry contract stored at registration; the contract checks the secret again when the
new certificate enrols on chain.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from identity.certs import PARSE_ERRORS, CertificateAuthority, issue_user_cert
from identity.keys import SigningKey, VerifyingKey
from protocol.errors import CertificateError

CSR_BYTES_MAX = 4096


def make_csr(key: SigningKey, subject_id: str) -> bytes:
    """A DER certificate signing request for *subject_id*, signed with *key*."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject_id)])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name)
    return csr.sign(key.private_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def secret_hash(secret: bytes) -> str:
    """What the registry stores for a one-time enrolment secret: sha256, lowercase hex."""
    return hashlib.sha256(secret).hexdigest()


def enrolment_problem(record: dict[str, Any], *, org_id: str, secret: bytes) -> str | None:
    """Why the CA of *org_id* must not enrol the on-chain *record* with *secret* (None: it may)."""
    if record.get("org_id") != org_id:
        return "the identity was registered by another organisation"
    if record.get("status") != "registered":
        return f"the identity is {record.get('status')}, not awaiting enrolment"
    expected = str(record.get("secret_sha256", ""))
    if not hmac.compare_digest(secret_hash(secret), expected):
        return "the enrolment secret does not match"
    return None


def issue_enrolment_cert(
    ca: CertificateAuthority,
    record: dict[str, Any],
    csr_der: bytes,
    secret: bytes,
    *,
    now: dt.datetime,
) -> x509.Certificate:
    """The certificate *ca* issues for *csr_der* enrolling *record*; CertificateError if the
    record, secret or CSR does not allow it."""
    org_id = ca.cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value
    problem = enrolment_problem(record, org_id=str(org_id), secret=secret)
    if problem is not None:
        raise CertificateError(problem)
    subject_id = str(record["subject_id"])
    key = csr_key(csr_der, subject_id)
    return issue_user_cert(ca, str(org_id), subject_id, str(record["role"]), key, now=now)


def csr_key(csr_der: bytes, subject_id: str) -> VerifyingKey:
    """The P-256 key of a well-formed, self-signed CSR naming exactly *subject_id*."""
    if len(csr_der) > CSR_BYTES_MAX:
        raise CertificateError(f"the CSR is over {CSR_BYTES_MAX} bytes")
    try:
        csr = x509.load_der_x509_csr(csr_der)
        names = csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        valid = csr.is_signature_valid
        public = csr.public_key()
    except PARSE_ERRORS as exc:
        raise CertificateError("the CSR is malformed") from exc
    if not valid:
        raise CertificateError("the CSR's signature does not verify")
    if len(names) != 1 or names[0].value != subject_id or len(csr.subject) != 1:
        raise CertificateError("the CSR must name exactly the registered subject id")
    if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != "secp256r1":
        raise CertificateError("the CSR's key is not an EC P-256 key")
    return VerifyingKey(public)
