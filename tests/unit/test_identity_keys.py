"""identity.keys: ECDSA P-256 signing keys and ECDH P-256 encryption keys.

Proves that signatures round-trip and fail cleanly (as SignatureError, a RemoteError) for other
data, another key and malformed or oversized signature bytes; that public keys round-trip as
DER and bad DER is a DecodeError; that PKCS#8 PEM round-trips with and without a passphrase and
that a wrong, missing or unexpected passphrase is a ConfigError saying so; and that ECDH
agrees on both sides while bad peer points are rejected. Keys are generated once per module.
"""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from identity.keys import EncryptionKey, SigningKey, VerifyingKey
from protocol import limits
from protocol.errors import ConfigError, DecodeError, LocalError, RemoteError, SignatureError


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate()


# --- signing -------------------------------------------------------------------------------------

_MODULE_KEY = SigningKey.generate()  # @given tests cannot take module-scoped fixtures


@settings(max_examples=25, deadline=None)
@given(data=st.binary(max_size=512))
def test_sign_verify_round_trip(data: bytes) -> None:
    key = _MODULE_KEY
    signature = key.sign(data)
    assert len(signature) <= limits.SIGNATURE_BYTES_MAX
    key.public_key.verify(data, signature)


def test_signature_over_other_bytes_fails(key: SigningKey) -> None:
    signature = key.sign(b"prescription 42")
    with pytest.raises(SignatureError, match="does not verify"):
        key.public_key.verify(b"prescription 43", signature)


def test_signature_by_another_key_fails(key: SigningKey, other_key: SigningKey) -> None:
    with pytest.raises(SignatureError):
        other_key.public_key.verify(b"x", key.sign(b"x"))


@pytest.mark.parametrize(
    "signature",
    [
        b"",
        b"\x00",
        b"\x30\x00",
        b"\x30\x06\x02\x01\x01\x02\x01\x01",  # well-formed DER, r = s = 1
        b"\xff" * 64,  # raw r||s, not DER
        b"\x30" * (limits.SIGNATURE_BYTES_MAX + 1),
    ],
    ids=["empty", "one-byte", "empty-seq", "tiny-rs", "raw-rs", "oversize"],
)
def test_malformed_signature_fails_cleanly(key: SigningKey, signature: bytes) -> None:
    with pytest.raises(SignatureError) as info:
        key.public_key.verify(b"data", signature)
    assert isinstance(info.value, RemoteError)


def test_truncated_and_bit_flipped_signatures_fail(key: SigningKey) -> None:
    signature = key.sign(b"data")
    bad = [signature[:-1], signature + b"\x00", bytes([signature[0] ^ 1]) + signature[1:]]
    bad.append(signature[:-1] + bytes([signature[-1] ^ 0x01]))
    for candidate in bad:
        with pytest.raises(SignatureError):
            key.public_key.verify(b"data", candidate)


def test_non_bytes_signature_is_a_signature_error(key: SigningKey) -> None:
    with pytest.raises(SignatureError, match="must be bytes"):
        key.public_key.verify(b"data", "not bytes")  # type: ignore[arg-type]


# --- public keys ---------------------------------------------------------------------------------


def test_verifying_key_der_round_trip(key: SigningKey) -> None:
    der = key.public_key.to_der()
    assert len(der) == 91
    again = VerifyingKey.from_der(der)
    assert again == key.public_key
    assert hash(again) == hash(key.public_key)
    again.verify(b"m", key.sign(b"m"))
    assert isinstance(again.public_key, ec.EllipticCurvePublicKey)


@pytest.mark.parametrize("der", [b"", b"\x30\x03\x02\x01\x01", b"\x00" * 91, b"\x30" * 200])
def test_verifying_key_from_bad_der_is_decode_error(der: bytes) -> None:
    with pytest.raises(DecodeError):
        VerifyingKey.from_der(der)


def test_verifying_key_rejects_other_curves() -> None:
    from cryptography.hazmat.primitives import serialization

    p384 = ec.generate_private_key(ec.SECP384R1()).public_key()
    der = p384.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    with pytest.raises(DecodeError, match="P-256"):
        VerifyingKey.from_der(der)
    with pytest.raises(LocalError):
        VerifyingKey(p384)


def test_repr_does_not_leak_private_key(key: SigningKey) -> None:
    pem = key.to_pem()
    assert pem.decode() not in repr(key)
    assert "PRIVATE" not in repr(key)


# --- PEM -----------------------------------------------------------------------------------------


def test_unencrypted_pem_round_trip(key: SigningKey) -> None:
    pem = key.to_pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    again = SigningKey.from_pem(pem)
    assert again.public_key == key.public_key


def test_encrypted_pkcs8_round_trip(key: SigningKey) -> None:
    pem = key.to_pem(b"correct horse")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    again = SigningKey.from_pem(pem, b"correct horse")
    key.public_key.verify(b"m", again.sign(b"m"))


def test_wrong_passphrase_is_a_clear_config_error(key: SigningKey) -> None:
    pem = key.to_pem(b"correct horse")
    with pytest.raises(ConfigError, match="wrong passphrase"):
        SigningKey.from_pem(pem, b"battery staple")


def test_missing_passphrase_is_a_clear_config_error(key: SigningKey) -> None:
    with pytest.raises(ConfigError, match="passphrase is required"):
        SigningKey.from_pem(key.to_pem(b"correct horse"))


def test_passphrase_for_unencrypted_key_is_a_config_error(key: SigningKey) -> None:
    with pytest.raises(ConfigError, match="not encrypted"):
        SigningKey.from_pem(key.to_pem(), b"pw")


def test_empty_passphrase_is_a_caller_bug(key: SigningKey) -> None:
    with pytest.raises(LocalError):
        key.to_pem(b"")


@pytest.mark.parametrize("pem", [b"", b"not pem", b"-----BEGIN PRIVATE KEY-----\nAAAA\n"])
def test_garbage_pem_is_a_config_error(pem: bytes) -> None:
    with pytest.raises(ConfigError):
        SigningKey.from_pem(pem)


def test_pem_of_another_curve_is_a_config_error() -> None:
    from cryptography.hazmat.primitives import serialization

    pem = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ConfigError, match="P-256"):
        SigningKey.from_pem(pem)


# --- ECDH ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def alice() -> EncryptionKey:
    return EncryptionKey.generate()


@pytest.fixture(scope="module")
def bob() -> EncryptionKey:
    return EncryptionKey.generate()


def test_ecdh_both_sides_agree(alice: EncryptionKey, bob: EncryptionKey) -> None:
    point = alice.public_point()
    assert len(point) == limits.PUBLIC_POINT_BYTES and point[0] == 0x04
    secret = alice.exchange(bob.public_point())
    assert secret == bob.exchange(point)
    assert len(secret) == 32
    assert secret != EncryptionKey.generate().exchange(point)


def test_encryption_key_pem_round_trip(alice: EncryptionKey, bob: EncryptionKey) -> None:
    again = EncryptionKey.from_pem(alice.to_pem(b"pw"), b"pw")
    assert again.public_point() == alice.public_point()
    assert again.exchange(bob.public_point()) == alice.exchange(bob.public_point())
    with pytest.raises(ConfigError, match="wrong passphrase"):
        EncryptionKey.from_pem(alice.to_pem(b"pw"), b"other")


def _compressed(point: bytes) -> bytes:
    return bytes([2 + (point[-1] & 1)]) + point[1:33]


@pytest.mark.parametrize(
    "mutate",
    [
        lambda p: b"",
        lambda p: p[:-1],
        lambda p: p + b"\x00",
        _compressed,
        lambda p: b"\x05" + p[1:],
        lambda p: b"\x04" + b"\x00" * 64,  # (0, 0) is not on P-256
        lambda p: p[:-1] + bytes([p[-1] ^ 1]),  # y off by one bit: off the curve
    ],
    ids=["empty", "short", "long", "compressed", "bad-prefix", "zero", "off-curve"],
)
def test_bad_peer_point_is_a_remote_error(alice: EncryptionKey, bob: EncryptionKey, mutate) -> None:
    with pytest.raises(DecodeError) as info:
        alice.exchange(mutate(bob.public_point()))
    assert isinstance(info.value, RemoteError)


def test_signing_and_encryption_keys_are_distinct_types(key: SigningKey) -> None:
    with pytest.raises(LocalError):
        EncryptionKey(key.public_key.public_key)  # type: ignore[arg-type]
