"""identity.validate: the trust store turns leaf DER into an Identity or a CertificateError.

Proves that a full root → org CA → node/user hierarchy validates for the purposes it was
issued for, and that every bad case is refused with a CertificateError (a RemoteError) whose
message names the failed check and never the subject: a certificate from another root, a bad
issuer signature, expired and not-yet-valid leaves and CAs, wrong key usage or EKU for the
purpose, a CA certificate used as a leaf, a certificate issued by a leaf key (a leaf acting as
a CA) or directly by the root, a revoked leaf or org CA serial, a non-P-256 key, another
signature hash, an org mismatch, an unknown role, an unknown critical extension, malformed
and oversize DER, and (property) every single-byte corruption of a valid certificate. Also
that the TrustStore constructor refuses org CAs that do not chain to its root.

Certificates that our issuing API refuses to make are crafted here with cryptography's
CertificateBuilder. Keys and the hierarchy are generated once per module at a fixed time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity.certs import (
    CertificateAuthority,
    cert_to_der,
    create_org_ca,
    create_root_ca,
    issue_node_cert,
    issue_user_cert,
)
from identity.keys import SigningKey, VerifyingKey
from identity.validate import Identity, Purpose, TrustStore, verify_signed
from protocol import limits
from protocol.errors import CertificateError, LocalError, RemoteError, SignatureError

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
AT = NOW + dt.timedelta(days=1)
DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class Pki:
    root: CertificateAuthority
    org: CertificateAuthority
    org_b: CertificateAuthority
    store: TrustStore
    node: x509.Certificate
    node_key: SigningKey
    user: x509.Certificate
    user_key: SigningKey
    spare_key: SigningKey  # for crafted certificates


def _root(name: str = "Ministry Root CA", now: dt.datetime = NOW) -> CertificateAuthority:
    key = SigningKey.generate()
    return CertificateAuthority(create_root_ca(name, key, now=now), key)


def _org(
    root: CertificateAuthority, org_id: str, *, now: dt.datetime = NOW, valid_days: int = 1825
) -> CertificateAuthority:
    key = SigningKey.generate()
    cert = create_org_ca(
        root, org_id, org_id.upper(), key.public_key, now=now, valid_days=valid_days
    )
    return CertificateAuthority(cert, key)


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = _root()
    org, org_b = _org(root, "hosp-a"), _org(root, "hosp-b")
    node_key, user_key = SigningKey.generate(), SigningKey.generate()
    node = issue_node_cert(org, "hosp-a", "peer0", node_key.public_key, ["127.0.0.1"], now=NOW)
    user = issue_user_cert(org, "hosp-a", "dr-0042", "doctor", user_key.public_key, now=NOW)
    store = TrustStore(root.cert, [org.cert, org_b.cert])
    return Pki(root, org, org_b, store, node, node_key, user, user_key, SigningKey.generate())


def _refused(pki: Pki, der: bytes, match: str, **kwargs) -> CertificateError:
    kwargs.setdefault("at", AT)
    with pytest.raises(CertificateError, match=match) as info:
        pki.store.validate(der, **kwargs)
    error = info.value
    assert isinstance(error, RemoteError)
    for secret in ("dr-0042", "peer0", "p-", "hosp-a"):
        assert secret not in str(error), "error messages must not carry subject data"
    return error


def _ku(*, digital_signature: bool = True, key_cert_sign: bool = False, **flags) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=flags.get("key_encipherment", False),
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


_NO = object()


def _craft(
    issuer: x509.Certificate,
    issuer_key,
    *,
    public_key=None,
    org_id: str = "hosp-a",
    role: str = "doctor",
    cn: str = "crafted",
    ku: object = _NO,
    eku: object = _NO,
    bc: object = _NO,
    aki_of: x509.Certificate | None = None,
    not_before: dt.datetime = NOW,
    not_after: dt.datetime = NOW + 100 * DAY,
    algorithm=None,
    extra: list[tuple[x509.ExtensionType, bool]] = (),
) -> bytes:
    """A leaf signed by *issuer_key*, by default exactly what issue_user_cert would make."""
    public_key = public_key if public_key is not None else SigningKey.generate().private_key
    public_key = public_key.public_key() if hasattr(public_key, "private_numbers") else public_key
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org_id),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    aki_source = aki_of if aki_of is not None else issuer
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(
                aki_source.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
            ),
            critical=False,
        )
    )
    bc = x509.BasicConstraints(ca=False, path_length=None) if bc is _NO else bc
    ku = _ku() if ku is _NO else ku
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]) if eku is _NO else eku
    for ext, critical in [(bc, True), (ku, True), (eku, False), *extra]:
        if ext is not None:
            builder = builder.add_extension(ext, critical=critical)
    cert = builder.sign(issuer_key, algorithm if algorithm is not None else hashes.SHA256())
    return cert_to_der(cert)


# --- the good path -------------------------------------------------------------------------------


def test_full_hierarchy_validates_user_for_signing(pki: Pki) -> None:
    identity = pki.store.validate(cert_to_der(pki.user), at=AT)
    assert identity == Identity(
        org_id="hosp-a",
        role="doctor",
        subject_id="dr-0042",
        serial=pki.user.serial_number,
        cert_der=cert_to_der(pki.user),
        public_key=pki.user_key.public_key,
    )
    verify_signed(identity, b"tx", pki.user_key.sign(b"tx"))
    assert pki.store.validate(cert_to_der(pki.user), at=AT, purpose=Purpose.TLS_CLIENT) == identity


@pytest.mark.parametrize("purpose", list(Purpose))
def test_node_certificate_validates_for_every_purpose(pki: Pki, purpose: Purpose) -> None:
    identity = pki.store.validate(cert_to_der(pki.node), at=AT, purpose=purpose)
    assert (identity.org_id, identity.role, identity.subject_id) == ("hosp-a", "node", "peer0")


def test_validity_bounds_are_inclusive(pki: Pki) -> None:
    der = cert_to_der(pki.user)
    pki.store.validate(der, at=pki.user.not_valid_before_utc)
    pki.store.validate(der, at=pki.user.not_valid_after_utc)


def test_each_org_ca_validates_its_own_leaves(pki: Pki) -> None:
    key = SigningKey.generate()
    cert = issue_user_cert(pki.org_b, "hosp-b", "n-1", "nurse", key.public_key, now=NOW)
    assert pki.store.validate(cert_to_der(cert), at=AT).org_id == "hosp-b"
    assert pki.store.org_ids == frozenset({"hosp-a", "hosp-b"})


def test_at_in_another_timezone_is_the_same_instant(pki: Pki) -> None:
    cet = dt.timezone(dt.timedelta(hours=1))
    pki.store.validate(cert_to_der(pki.user), at=AT.astimezone(cet))


def test_naive_time_is_a_caller_bug(pki: Pki) -> None:
    with pytest.raises(LocalError, match="timezone-aware"):
        pki.store.validate(cert_to_der(pki.user), at=AT.replace(tzinfo=None))


# --- issuer --------------------------------------------------------------------------------------


def test_certificate_from_another_root_is_refused(pki: Pki) -> None:
    other_root = _root()  # same subject names, different keys
    other_org = _org(other_root, "hosp-a")
    cert = issue_user_cert(
        other_org, "hosp-a", "dr-0042", "doctor", pki.spare_key.public_key, now=NOW
    )
    _refused(pki, cert_to_der(cert), "issuer is not an organisation CA of this network")


def test_bad_issuer_signature_is_refused(pki: Pki) -> None:
    # Names and AKI point at hosp-a's CA, but a rogue key signed it.
    rogue = ec.generate_private_key(ec.SECP256R1())
    der = _craft(pki.org.cert, rogue)
    _refused(pki, der, "bad issuer signature")


def test_leaf_acting_as_ca_is_refused(pki: Pki) -> None:
    # A certificate signed by a node's key, naming the node as issuer.
    der = _craft(pki.node, pki.node_key.private_key)
    _refused(pki, der, "issuer is not an organisation CA")
    # The same, forging the AKI to point at the real org CA: the signature gives it away.
    forged = _craft(pki.node, pki.node_key.private_key, aki_of=pki.org.cert)
    _refused(pki, forged, "issuer")


def test_leaf_issued_directly_by_root_is_refused(pki: Pki) -> None:
    der = _craft(pki.root.cert, pki.root.key.private_key)
    _refused(pki, der, "issued by the root CA, not by an organisation CA")


def test_missing_aki_is_refused(pki: Pki) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .issuer_name(pki.org.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + DAY * 10)
        .sign(pki.org.key.private_key, hashes.SHA256())
    )
    _refused(pki, cert_to_der(cert), "no authority key identifier")


# --- time ----------------------------------------------------------------------------------------


def test_expired_leaf_is_refused(pki: Pki) -> None:
    _refused(pki, cert_to_der(pki.user), "^certificate has expired", at=NOW + 826 * DAY)


def test_not_yet_valid_leaf_is_refused(pki: Pki) -> None:
    later = issue_user_cert(
        pki.org, "hosp-a", "u1", "nurse", pki.spare_key.public_key, now=NOW + 10 * DAY
    )
    _refused(pki, cert_to_der(later), "^certificate is not yet valid", at=NOW + 5 * DAY)


def test_expired_org_ca_is_refused(pki: Pki) -> None:
    short = _org(pki.root, "hosp-c", valid_days=1)
    store = TrustStore(pki.root.cert, [short.cert])
    leaf = issue_user_cert(short, "hosp-c", "u1", "doctor", pki.spare_key.public_key, now=NOW)
    at = NOW + 2 * DAY
    assert leaf.not_valid_after_utc > at  # the leaf itself is still valid
    with pytest.raises(CertificateError, match="organisation CA has expired"):
        store.validate(cert_to_der(leaf), at=at)


def test_not_yet_valid_org_ca_is_refused(pki: Pki) -> None:
    future = _org(pki.root, "hosp-c", now=NOW + 10 * DAY)
    store = TrustStore(pki.root.cert, [future.cert])
    leaf = issue_user_cert(
        future, "hosp-c", "u1", "doctor", pki.spare_key.public_key, now=NOW + 10 * DAY
    )
    with pytest.raises(CertificateError, match="organisation CA is not yet valid"):
        store.validate(cert_to_der(leaf), at=NOW + 5 * DAY)


def test_expired_root_is_refused(pki: Pki) -> None:
    _refused(pki, cert_to_der(pki.user), "root CA has expired", at=NOW + 3651 * DAY)


# --- usage ---------------------------------------------------------------------------------------


def test_user_certificate_is_not_a_tls_server(pki: Pki) -> None:
    _refused(pki, cert_to_der(pki.user), "lacks serverAuth", purpose=Purpose.TLS_SERVER)


def test_missing_digital_signature_is_refused(pki: Pki) -> None:
    ku = _ku(digital_signature=False, key_encipherment=True)
    der = _craft(pki.org.cert, pki.org.key.private_key, ku=ku)
    for purpose in Purpose:
        _refused(pki, der, "lacks digitalSignature", purpose=purpose)
    no_ku = _craft(pki.org.cert, pki.org.key.private_key, ku=None)
    _refused(pki, no_ku, "lacks digitalSignature")


def test_server_auth_only_is_not_accepted_for_signing(pki: Pki) -> None:
    eku = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    der = _craft(pki.org.cert, pki.org.key.private_key, eku=eku, role="node")
    _refused(pki, der, "lacks clientAuth", purpose=Purpose.SIGNING)
    _refused(pki, der, "lacks clientAuth", purpose=Purpose.TLS_CLIENT)
    assert pki.store.validate(der, at=AT, purpose=Purpose.TLS_SERVER).role == "node"


def test_missing_or_foreign_eku_is_refused(pki: Pki) -> None:
    no_eku = _craft(pki.org.cert, pki.org.key.private_key, eku=None)
    _refused(pki, no_eku, "lacks clientAuth")
    code = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING])
    _refused(pki, _craft(pki.org.cert, pki.org.key.private_key, eku=code), "lacks clientAuth")


def test_ca_certificate_used_as_leaf_is_refused(pki: Pki) -> None:
    _refused(pki, cert_to_der(pki.org.cert), "is a CA certificate")
    _refused(pki, cert_to_der(pki.root.cert), "is a CA certificate")


def test_leaf_with_ca_flag_or_cert_sign_is_refused(pki: Pki) -> None:
    ca_flag = x509.BasicConstraints(ca=True, path_length=0)
    _refused(pki, _craft(pki.org.cert, pki.org.key.private_key, bc=ca_flag), "is a CA")
    cert_sign = _ku(key_cert_sign=True)
    _refused(pki, _craft(pki.org.cert, pki.org.key.private_key, ku=cert_sign), "is a CA")


# --- revocation ----------------------------------------------------------------------------------


def test_revoked_leaf_serial_is_refused(pki: Pki) -> None:
    revoked = frozenset({pki.user.serial_number})
    _refused(pki, cert_to_der(pki.user), "^certificate is revoked", revoked=revoked)
    pki.store.validate(cert_to_der(pki.node), at=AT, revoked=revoked)  # others unaffected


def test_revoked_org_ca_serial_revokes_its_leaves(pki: Pki) -> None:
    revoked = frozenset({pki.org.cert.serial_number})
    _refused(pki, cert_to_der(pki.user), "organisation CA is revoked", revoked=revoked)
    _refused(pki, cert_to_der(pki.node), "organisation CA is revoked", revoked=revoked)
    key = SigningKey.generate()
    other = issue_user_cert(pki.org_b, "hosp-b", "n-1", "nurse", key.public_key, now=NOW)
    pki.store.validate(cert_to_der(other), at=AT, revoked=revoked)


# --- algorithms and subject ----------------------------------------------------------------------


def test_non_p256_key_is_refused(pki: Pki) -> None:
    p384 = ec.generate_private_key(ec.SECP384R1())
    der = _craft(pki.org.cert, pki.org.key.private_key, public_key=p384.public_key())
    _refused(pki, der, "not an EC P-256 key")


def test_other_signature_hash_is_refused(pki: Pki) -> None:
    der = _craft(pki.org.cert, pki.org.key.private_key, algorithm=hashes.SHA384())
    _refused(pki, der, "not signed with ECDSA-SHA256")


def test_org_mismatch_with_issuing_ca_is_refused(pki: Pki) -> None:
    # hosp-a's CA must not vouch for a member of hosp-b.
    der = _craft(pki.org.cert, pki.org.key.private_key, org_id="hosp-b")
    with pytest.raises(CertificateError, match="organisation differs"):
        pki.store.validate(der, at=AT)


def test_unknown_role_is_refused(pki: Pki) -> None:
    der = _craft(pki.org.cert, pki.org.key.private_key, role="surgeon")
    _refused(pki, der, "not a known role")


def test_subject_with_bad_characters_is_refused(pki: Pki) -> None:
    der = _craft(pki.org.cert, pki.org.key.private_key, cn="Jane Doe\n")
    _refused(pki, der, "bad characters")


def test_unknown_critical_extension_is_refused(pki: Pki) -> None:
    ext = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.99999.1"), b"\x05\x00")
    der = _craft(pki.org.cert, pki.org.key.private_key, extra=[(ext, True)])
    _refused(pki, der, "unrecognised critical extension")
    tolerated = _craft(pki.org.cert, pki.org.key.private_key, extra=[(ext, False)])
    pki.store.validate(tolerated, at=AT)


# --- bytes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "der", [b"", b"garbage", b"\x30\x03\x02\x01\x01"], ids=["empty", "garbage", "not-a-cert"]
)
def test_malformed_der_is_refused(pki: Pki, der: bytes) -> None:
    _refused(pki, der, "not valid DER")


def test_oversize_der_is_refused(pki: Pki) -> None:
    _refused(pki, b"\x30" * (limits.CERTIFICATE_BYTES_MAX + 1), "over the limit")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
# A flipped byte in the serial can make it zero or negative: cryptography then warns that it
# will refuse such certificates outright one day, and ours are refused either way.
@pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")
def test_every_single_byte_corruption_is_refused(pki: Pki, data: st.DataObject) -> None:
    der = bytearray(cert_to_der(pki.user))
    position = data.draw(st.integers(0, len(der) - 1), label="position")
    der[position] ^= data.draw(st.integers(1, 255), label="xor")
    with pytest.raises(CertificateError):
        pki.store.validate(bytes(der), at=AT)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(blob=st.binary(max_size=2 * limits.KIB))
def test_arbitrary_bytes_raise_only_certificate_error(pki: Pki, blob: bytes) -> None:
    with pytest.raises(CertificateError):
        pki.store.validate(blob, at=AT)


# --- the trust store itself ----------------------------------------------------------------------


def test_trust_store_refuses_org_ca_from_another_root(pki: Pki) -> None:
    foreign = _org(_root(), "hosp-x")
    with pytest.raises(CertificateError, match="not issued by this network's root"):
        TrustStore(pki.root.cert, [pki.org.cert, foreign.cert])


def test_trust_store_refuses_org_ca_with_forged_aki(pki: Pki) -> None:
    other_root = _root()
    # Same root subject and AKI as ours, but signed by another root key.
    forged = (
        x509.CertificateBuilder()
        .subject_name(pki.org.cert.subject)
        .issuer_name(pki.root.cert.subject)
        .public_key(pki.spare_key.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW)
        .not_valid_after(NOW + 10 * DAY)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(pki.spare_key.public_key.public_key),
            critical=False,
        )
        .add_extension(
            pki.org.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value,
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_ku(digital_signature=False, key_cert_sign=True), critical=True)
        .sign(other_root.key.private_key, hashes.SHA256())
    )
    with pytest.raises(CertificateError, match="bad issuer signature"):
        TrustStore(pki.root.cert, [forged])


def test_trust_store_refuses_leaf_as_org_ca_and_org_ca_as_root(pki: Pki) -> None:
    with pytest.raises(CertificateError, match="not a CA"):
        TrustStore(pki.root.cert, [pki.node])
    with pytest.raises(CertificateError):
        TrustStore(pki.org.cert, [])


def test_trust_store_refuses_duplicate_org_ca(pki: Pki) -> None:
    with pytest.raises(CertificateError, match="not unique"):
        TrustStore(pki.root.cert, [pki.org.cert, pki.org.cert])


# --- verify_signed -------------------------------------------------------------------------------


def test_verify_signed_accepts_identity_or_key(pki: Pki) -> None:
    identity = pki.store.validate(cert_to_der(pki.node), at=AT)
    signature = pki.node_key.sign(b"block header")
    verify_signed(identity, b"block header", signature)
    verify_signed(
        VerifyingKey.from_der(pki.node_key.public_key.to_der()), b"block header", signature
    )
    with pytest.raises(SignatureError):
        verify_signed(identity, b"another header", signature)
    with pytest.raises(SignatureError):
        verify_signed(identity, b"block header", b"\x30\x00")
    with pytest.raises(LocalError):
        verify_signed(b"not a key", b"x", signature)  # type: ignore[arg-type]


def test_a_remembered_validation_still_checks_time_and_revocation(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = TrustStore(pki.root.cert, [pki.org.cert, pki.org_b.cert])
    der = cert_to_der(pki.user)
    identity = store.validate(der, at=AT)

    def no_full_validation(*args: object, **kwargs: object) -> None:
        raise AssertionError("a remembered certificate was validated in full again")

    monkeypatch.setattr(store, "_validate", no_full_validation)
    assert store.validate(der, at=AT) == identity
    with pytest.raises(CertificateError, match=r"^certificate is revoked"):
        store.validate(der, at=AT, revoked=frozenset({pki.user.serial_number}))
    with pytest.raises(CertificateError, match=r"^certificate's organisation CA is revoked"):
        store.validate(der, at=AT, revoked=frozenset({pki.org.cert.serial_number}))
    with pytest.raises(CertificateError, match=r"^certificate has expired"):
        store.validate(der, at=NOW + 826 * DAY)
    with pytest.raises(CertificateError, match=r"^root CA is not yet valid"):
        store.validate(der, at=NOW - DAY)
    with pytest.raises(CertificateError, match=r"^organisation CA has expired"):
        store.validate(der, at=NOW + 1826 * DAY)
    with pytest.raises(AssertionError):  # another purpose is validated in full, once
        store.validate(der, at=AT, purpose=Purpose.TLS_CLIENT)
