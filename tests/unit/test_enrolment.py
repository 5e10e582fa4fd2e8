"""The CA side of enrolment (identity.enrolment): a certificate only for a registered,
not-yet-enrolled identity of the CA's own organisation, with the matching secret and a
well-formed CSR naming exactly that subject; organisation and role come from the record."""

from __future__ import annotations

import pytest

from identity.certs import CertificateAuthority, cert_to_der, create_org_ca, create_root_ca
from identity.enrolment import (
    CSR_BYTES_MAX,
    csr_key,
    issue_enrolment_cert,
    make_csr,
    secret_hash,
)
from identity.keys import SigningKey
from identity.validate import TrustStore, subject_fields
from protocol.errors import CertificateError
from tests.unit.endorsed_world import NOW


@pytest.fixture(scope="module")
def ca() -> tuple[CertificateAuthority, TrustStore]:
    root_key = SigningKey.generate()
    root = CertificateAuthority(create_root_ca("root", root_key, now=NOW), root_key)
    key = SigningKey.generate()
    org = CertificateAuthority(
        create_org_ca(root, "northgate", "Northgate", key.public_key, now=NOW), key
    )
    return org, TrustStore(root.cert, [org.cert])


def _record(**kw: object) -> dict[str, object]:
    record: dict[str, object] = {
        "subject_id": "dr.ada",
        "org_id": "northgate",
        "role": "doctor",
        "status": "registered",
        "secret_sha256": secret_hash(b"s3cret"),
    }
    record.update(kw)
    return record


def test_a_registered_identity_gets_a_certificate_with_its_records_org_and_role(ca) -> None:
    org, trust = ca
    key = SigningKey.generate()
    cert = issue_enrolment_cert(org, _record(), make_csr(key, "dr.ada"), b"s3cret", now=NOW)
    fields = subject_fields(cert)
    assert (fields.org_id, fields.role, fields.subject_id) == ("northgate", "doctor", "dr.ada")
    identity = trust.validate(cert_to_der(cert), at=NOW)
    assert identity.public_key == key.public_key


@pytest.mark.parametrize(
    ("record", "secret", "reason"),
    [
        (_record(), b"wrong", "the enrolment secret does not match"),
        (_record(org_id="riverside"), b"s3cret", "registered by another organisation"),
        (_record(status="enrolled"), b"s3cret", "enrolled, not awaiting enrolment"),
        (_record(status="revoked"), b"s3cret", "revoked, not awaiting enrolment"),
    ],
)
def test_the_ca_refuses_what_the_record_does_not_allow(ca, record, secret, reason) -> None:
    org, _ = ca
    csr = make_csr(SigningKey.generate(), "dr.ada")
    with pytest.raises(CertificateError, match=reason):
        issue_enrolment_cert(org, record, csr, secret, now=NOW)


def test_bad_csrs_are_refused_with_a_reason() -> None:
    key = SigningKey.generate()
    with pytest.raises(CertificateError, match="exactly the registered subject"):
        csr_key(make_csr(key, "dr.bob"), "dr.ada")
    good = bytearray(make_csr(key, "dr.ada"))
    good[-5] ^= 0xFF  # inside the signature
    with pytest.raises(CertificateError, match=r"signature does not verify|malformed"):
        csr_key(bytes(good), "dr.ada")
    with pytest.raises(CertificateError, match="malformed"):
        csr_key(b"\x30\x03garbage", "dr.ada")
    with pytest.raises(CertificateError, match="over"):
        csr_key(b"\x00" * (CSR_BYTES_MAX + 1), "dr.ada")
