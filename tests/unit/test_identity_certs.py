"""identity.certs: issuing the root → organisation CA → node/user hierarchy.

Proves that each certificate carries the profile the rest of medledger relies on (subject
O/OU/CN, BasicConstraints, KeyUsage, EKU, SAN, SKI/AKI chain, 159-bit serials, ECDSA-SHA256,
validity from the given `now`); that bad arguments are LocalErrors; that DER and PEM round-trip
and malformed or oversize DER is a CertificateError; and, as an independent check, that the
real `openssl verify` accepts the chain (and node certificates for sslserver and sslclient) and
that cryptography's own Web PKI verifier accepts node certificates for TLS. The hierarchy is
generated once per module at a fixed time; openssl is told that time with -attime.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

from identity.certs import (
    ROLES,
    CertificateAuthority,
    cert_from_der,
    cert_from_pem,
    cert_to_der,
    cert_to_pem,
    certs_from_pem,
    create_org_ca,
    create_root_ca,
    issue_node_cert,
    issue_user_cert,
)
from identity.keys import SigningKey
from protocol import limits
from protocol.errors import CertificateError, LocalError

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Pki:
    root: CertificateAuthority
    org: CertificateAuthority
    node: x509.Certificate
    node_key: SigningKey
    user: x509.Certificate
    user_key: SigningKey


@pytest.fixture(scope="module")
def pki() -> Pki:
    root_key = SigningKey.generate()
    root = CertificateAuthority(create_root_ca("Ministry Root CA", root_key, now=NOW), root_key)
    org_key = SigningKey.generate()
    org_cert = create_org_ca(root, "hosp-a", "Hospital A", org_key.public_key, now=NOW)
    org = CertificateAuthority(org_cert, org_key)
    node_key, user_key = SigningKey.generate(), SigningKey.generate()
    node = issue_node_cert(
        org, "hosp-a", "peer0", node_key.public_key, ["127.0.0.1", "localhost", "::1"], now=NOW
    )
    user = issue_user_cert(org, "hosp-a", "p-7f3a9c", "patient", user_key.public_key, now=NOW)
    return Pki(root, org, node, node_key, user, user_key)


def _ext(cert: x509.Certificate, cls):
    return cert.extensions.get_extension_for_class(cls)


def _attr(cert: x509.Certificate, oid) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


# --- profile -------------------------------------------------------------------------------------


def test_every_certificate_has_the_common_profile(pki: Pki) -> None:
    for cert in (pki.root.cert, pki.org.cert, pki.node, pki.user):
        assert cert.signature_algorithm_oid == SignatureAlgorithmOID.ECDSA_WITH_SHA256
        key = cert.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey) and key.curve.name == "secp256r1"
        assert 0 < cert.serial_number < 2**159
        assert cert.not_valid_before_utc == NOW
        ski = _ext(cert, x509.SubjectKeyIdentifier)
        assert ski.value == x509.SubjectKeyIdentifier.from_public_key(key)
        _ext(cert, x509.AuthorityKeyIdentifier)
        bc = _ext(cert, x509.BasicConstraints)
        assert bc.critical
        assert _ext(cert, x509.KeyUsage).critical
    serials = {c.serial_number for c in (pki.root.cert, pki.org.cert, pki.node, pki.user)}
    assert len(serials) == 4


def test_aki_chain_links_each_certificate_to_its_issuer(pki: Pki) -> None:
    def ski(c: x509.Certificate) -> bytes:
        return _ext(c, x509.SubjectKeyIdentifier).value.digest

    def aki(c: x509.Certificate) -> bytes | None:
        return _ext(c, x509.AuthorityKeyIdentifier).value.key_identifier

    assert aki(pki.root.cert) == ski(pki.root.cert)
    assert aki(pki.org.cert) == ski(pki.root.cert)
    assert aki(pki.node) == aki(pki.user) == ski(pki.org.cert)
    pki.org.cert.verify_directly_issued_by(pki.root.cert)
    pki.node.verify_directly_issued_by(pki.org.cert)
    pki.user.verify_directly_issued_by(pki.org.cert)


def test_root_and_org_ca_profile(pki: Pki) -> None:
    root, org = pki.root.cert, pki.org.cert
    assert root.subject == root.issuer
    assert _attr(root, NameOID.COMMON_NAME) == ["Ministry Root CA"]
    assert _ext(root, x509.BasicConstraints).value == x509.BasicConstraints(ca=True, path_length=1)
    assert root.not_valid_after_utc == NOW + dt.timedelta(days=3650)
    assert _attr(org, NameOID.ORGANIZATION_NAME) == ["hosp-a"]
    assert _attr(org, NameOID.COMMON_NAME) == ["Hospital A"]
    assert org.issuer == root.subject
    assert _ext(org, x509.BasicConstraints).value == x509.BasicConstraints(ca=True, path_length=0)
    assert org.not_valid_after_utc == NOW + dt.timedelta(days=1825)
    for cert in (root, org):
        ku = _ext(cert, x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature


def test_node_certificate_profile(pki: Pki) -> None:
    cert = pki.node
    assert _attr(cert, NameOID.ORGANIZATION_NAME) == ["hosp-a"]
    assert _attr(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == ["node"]
    assert _attr(cert, NameOID.COMMON_NAME) == ["peer0"]
    assert not _ext(cert, x509.BasicConstraints).value.ca
    ku = _ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and ku.key_agreement and not ku.key_cert_sign
    eku = list(_ext(cert, x509.ExtendedKeyUsage).value)
    assert eku == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    san = _ext(cert, x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.not_valid_after_utc == NOW + dt.timedelta(days=825)


def test_user_certificate_profile(pki: Pki) -> None:
    cert = pki.user
    assert _attr(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == ["patient"]
    assert _attr(cert, NameOID.COMMON_NAME) == ["p-7f3a9c"]
    ku = _ext(cert, x509.KeyUsage).value
    assert ku.digital_signature and not ku.key_agreement and not ku.key_cert_sign
    assert list(_ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        _ext(cert, x509.SubjectAlternativeName)


@pytest.mark.parametrize("role", [r for r in ROLES if r != "node"])
def test_every_user_role_can_be_issued(pki: Pki, role: str) -> None:
    cert = issue_user_cert(pki.org, "hosp-a", "u1", role, pki.user_key.public_key, now=NOW)
    assert _attr(cert, NameOID.ORGANIZATIONAL_UNIT_NAME) == [role]


# --- bad arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ["node", "surgeon", "", "Doctor"])
def test_unknown_or_node_role_for_user_is_local_error(pki: Pki, role: str) -> None:
    with pytest.raises(LocalError, match="role"):
        issue_user_cert(pki.org, "hosp-a", "u1", role, pki.user_key.public_key, now=NOW)


def test_bad_arguments_are_local_errors(pki: Pki) -> None:
    pub = pki.user_key.public_key
    naive = NOW.replace(tzinfo=None)
    with pytest.raises(LocalError, match="timezone-aware"):
        issue_user_cert(pki.org, "hosp-a", "u1", "doctor", pub, now=naive)
    with pytest.raises(LocalError, match="organisation"):
        issue_user_cert(pki.org, "hosp-b", "u1", "doctor", pub, now=NOW)
    for bad_id in ["", "x" * (limits.ID_CHARS_MAX + 1), "Jane Doe", "a,O=evil", "é"]:
        with pytest.raises(LocalError, match="user_id"):
            issue_user_cert(pki.org, "hosp-a", bad_id, "doctor", pub, now=NOW)
    with pytest.raises(LocalError, match="valid_days"):
        issue_user_cert(pki.org, "hosp-a", "u1", "doctor", pub, now=NOW, valid_days=0)
    with pytest.raises(LocalError, match="not valid at"):
        issue_user_cert(pki.org, "hosp-a", "u1", "doctor", pub, now=NOW - dt.timedelta(days=1))
    with pytest.raises(LocalError, match="host"):
        issue_node_cert(pki.org, "hosp-a", "n1", pub, [], now=NOW)
    with pytest.raises(LocalError, match="host"):
        issue_node_cert(pki.org, "hosp-a", "n1", pub, ["bad host"], now=NOW)
    with pytest.raises(LocalError, match="org_name"):
        create_org_ca(pki.root, "hosp-z", "H" * 65, pub, now=NOW)


def test_certificate_authority_checks_its_key_and_ca_flag(pki: Pki) -> None:
    with pytest.raises(LocalError, match="does not match"):
        CertificateAuthority(pki.org.cert, pki.root.key)
    with pytest.raises(LocalError, match="not a CA"):
        CertificateAuthority(pki.node, pki.node_key)


def test_only_organisation_cas_issue_leaves(pki: Pki) -> None:
    # The root has no O in its subject, so it cannot issue leaves through this API.
    with pytest.raises(LocalError, match="organisation CA"):
        issue_user_cert(pki.root, "hosp-a", "u1", "doctor", pki.user_key.public_key, now=NOW)


# --- encoding ------------------------------------------------------------------------------------


def test_der_and_pem_round_trip(pki: Pki) -> None:
    der = cert_to_der(pki.node)
    assert cert_from_der(der) == pki.node
    assert len(der) < limits.CERTIFICATE_BYTES_MAX
    assert cert_from_pem(cert_to_pem(pki.node)) == pki.node
    bundle = cert_to_pem(pki.root.cert) + cert_to_pem(pki.org.cert)
    assert certs_from_pem(bundle) == [pki.root.cert, pki.org.cert]
    with pytest.raises(CertificateError, match="expected one"):
        cert_from_pem(bundle)


@pytest.mark.parametrize(
    "der",
    [b"", b"\x30\x00", b"garbage", b"\x30\x82\xff\xff" + b"\x00" * 16],
    ids=["empty", "empty-seq", "garbage", "bad-length"],
)
def test_malformed_der_is_certificate_error(der: bytes) -> None:
    with pytest.raises(CertificateError, match="not valid DER"):
        cert_from_der(der)


def test_truncated_der_is_certificate_error(pki: Pki) -> None:
    with pytest.raises(CertificateError):
        cert_from_der(cert_to_der(pki.user)[:-1])
    with pytest.raises(CertificateError):
        cert_from_der(cert_to_der(pki.user) + b"\x00")


def test_oversize_der_is_certificate_error() -> None:
    with pytest.raises(CertificateError, match="over the limit"):
        cert_from_der(b"\x30" * (limits.CERTIFICATE_BYTES_MAX + 1))


def test_non_bytes_is_certificate_error() -> None:
    with pytest.raises(CertificateError, match="must be bytes"):
        cert_from_der("MII...")  # type: ignore[arg-type]


# --- independent verifiers -----------------------------------------------------------------------


def _openssl_verify(tmp_path: Path, pki: Pki, leaf: x509.Certificate, *extra: str) -> str:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl binary not installed")
    files = {"root.pem": pki.root.cert, "orgca.pem": pki.org.cert, "leaf.pem": leaf}
    for name, cert in files.items():
        (tmp_path / name).write_bytes(cert_to_pem(cert))
    at = int((NOW + dt.timedelta(days=1)).timestamp())
    trust = ("-CAfile", "root.pem", "-untrusted", "orgca.pem")
    result = subprocess.run(
        [openssl, "verify", "-attime", str(at), *extra, *trust, "leaf.pem"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result.stdout + result.stderr


@pytest.mark.parametrize("purpose", [None, "sslserver", "sslclient"])
def test_openssl_verifies_node_certificate(tmp_path: Path, pki: Pki, purpose: str | None) -> None:
    extra = () if purpose is None else ("-purpose", purpose)
    output = _openssl_verify(tmp_path, pki, pki.node, *extra)
    assert output.strip() == "leaf.pem: OK", output


@pytest.mark.parametrize("purpose", [None, "sslclient"])
def test_openssl_verifies_user_certificate(tmp_path: Path, pki: Pki, purpose: str | None) -> None:
    extra = () if purpose is None else ("-purpose", purpose)
    output = _openssl_verify(tmp_path, pki, pki.user, *extra)
    assert output.strip() == "leaf.pem: OK", output


def test_openssl_refuses_user_certificate_as_server(tmp_path: Path, pki: Pki) -> None:
    output = _openssl_verify(tmp_path, pki, pki.user, "-purpose", "sslserver")
    assert "unsuitable certificate purpose" in output, output
    assert "leaf.pem: OK" not in output


def test_cryptography_webpki_verifier_accepts_node_certificate(pki: Pki) -> None:
    builder = (
        verification.PolicyBuilder()
        .store(verification.Store([pki.root.cert]))
        .time(NOW + dt.timedelta(days=1))
    )
    for host in (x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))):
        chain = builder.build_server_verifier(host).verify(pki.node, [pki.org.cert])
        assert chain == [pki.node, pki.org.cert, pki.root.cert]
    client = builder.build_client_verifier().verify(pki.node, [pki.org.cert])
    assert client.chain == [pki.node, pki.org.cert, pki.root.cert]
