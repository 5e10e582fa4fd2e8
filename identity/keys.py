"""Signing keys (ECDSA P-256) and encryption keys (ECDH P-256).

The two kinds are separate on purpose: a signing key proves who wrote a transaction or a
block, an encryption key lets a browser or a node agree on a secret through WebCrypto. No key
is ever used for both.

Error families (see :mod:`protocol.errors`):

* a signature that does not verify, or signature bytes that are not a DER ECDSA signature,
  raise :class:`SignatureError` (remote input);
* public key or point bytes from a peer that are malformed or not on P-256 raise
  :class:`DecodeError` (remote input);
* a PEM file that cannot be loaded (wrong or missing passphrase, not a P-256 key) raises
  :class:`ConfigError`: key files are local configuration.

Messages name what is wrong, never the bytes.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from protocol import limits
from protocol.errors import ConfigError, DecodeError, LocalError, SignatureError

CURVE_NAME = "secp256r1"
# A DER SubjectPublicKeyInfo of a P-256 key is 91 bytes; anything much larger is not one.
PUBLIC_KEY_DER_BYTES_MAX = 128
# The signature algorithm object, built once: it is immutable and on every sign and verify.
_ECDSA_SHA256 = ec.ECDSA(hashes.SHA256())


def _is_p256(key: object) -> bool:
    return isinstance(key, (ec.EllipticCurvePrivateKey, ec.EllipticCurvePublicKey)) and (
        key.curve.name == CURVE_NAME
    )


def _private_to_pem(key: ec.EllipticCurvePrivateKey, passphrase: bytes | None) -> bytes:
    if passphrase is None:
        encryption: serialization.KeySerializationEncryption = serialization.NoEncryption()
    elif isinstance(passphrase, bytes) and passphrase:
        encryption = serialization.BestAvailableEncryption(passphrase)
    else:
        raise LocalError("passphrase must be None or non-empty bytes")
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=encryption,
    )


def _private_from_pem(
    data: bytes, passphrase: bytes | None, what: str
) -> ec.EllipticCurvePrivateKey:
    if passphrase is not None and not (isinstance(passphrase, bytes) and passphrase):
        raise LocalError("passphrase must be None or non-empty bytes")
    try:
        key = serialization.load_pem_private_key(data, password=passphrase)
    except TypeError as exc:
        # cryptography raises TypeError for "encrypted but no password" and the reverse.
        if passphrase is None:
            raise ConfigError(f"{what} is encrypted: a passphrase is required") from exc
        raise ConfigError(f"{what} is not encrypted but a passphrase was given") from exc
    except ValueError as exc:
        if passphrase is not None and b"ENCRYPTED" in data:
            raise ConfigError(f"{what}: wrong passphrase (could not decrypt the key)") from exc
        raise ConfigError(f"{what}: not a PEM-encoded PKCS#8 private key") from exc
    except UnsupportedAlgorithm as exc:
        raise ConfigError(f"{what}: unsupported key algorithm or encryption") from exc
    if not (_is_p256(key) and isinstance(key, ec.EllipticCurvePrivateKey)):
        raise ConfigError(f"{what}: not an EC P-256 private key")
    return key


class VerifyingKey:
    """The public half of a :class:`SigningKey`: verifies DER ECDSA-SHA256 signatures."""

    __slots__ = ("_der", "_key")

    def __init__(self, key: ec.EllipticCurvePublicKey) -> None:
        if not _is_p256(key):
            raise LocalError("VerifyingKey needs an EC P-256 public key")
        self._key = key
        self._der = key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The ``cryptography`` public key object (for x509 builders and TLS)."""
        return self._key

    def verify(self, data: bytes, signature: bytes) -> None:
        """Return if *signature* is a valid signature of *data*; else raise SignatureError."""
        if not isinstance(signature, bytes):
            raise SignatureError(f"signature must be bytes, not {type(signature).__name__}")
        if not 0 < len(signature) <= limits.SIGNATURE_BYTES_MAX:
            raise SignatureError(
                f"signature is {len(signature)} bytes; a DER ECDSA P-256 signature has "
                f"1..{limits.SIGNATURE_BYTES_MAX}"
            )
        try:
            self._key.verify(signature, data, _ECDSA_SHA256)
        except InvalidSignature as exc:
            raise SignatureError("signature does not verify") from exc
        except ValueError as exc:  # defensive: malformed DER in some backends
            raise SignatureError("signature is not a DER ECDSA signature") from exc

    def to_der(self) -> bytes:
        """DER SubjectPublicKeyInfo (91 bytes for P-256)."""
        return self._der

    @classmethod
    def from_der(cls, der: bytes) -> VerifyingKey:
        """Parse a DER SubjectPublicKeyInfo; malformed or non-P-256 input raises DecodeError."""
        if not isinstance(der, bytes):
            raise DecodeError(f"public key must be bytes, not {type(der).__name__}")
        if len(der) > PUBLIC_KEY_DER_BYTES_MAX:
            raise DecodeError(f"public key is {len(der)} bytes, over {PUBLIC_KEY_DER_BYTES_MAX}")
        try:
            key = serialization.load_der_public_key(der)
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise DecodeError("public key is not a DER SubjectPublicKeyInfo") from exc
        if not (_is_p256(key) and isinstance(key, ec.EllipticCurvePublicKey)):
            raise DecodeError("public key is not an EC P-256 key")
        return cls(key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, VerifyingKey) and other._der == self._der

    def __hash__(self) -> int:
        return hash(self._der)

    def __repr__(self) -> str:
        return f"VerifyingKey(P-256, spki_sha256_prefix={_fingerprint(self._der)})"


def _fingerprint(der: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize()[:8].hex()


class SigningKey:
    """An ECDSA P-256 private key that signs with SHA-256 and emits DER signatures."""

    __slots__ = ("_key", "_public")

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        if not (_is_p256(key) and isinstance(key, ec.EllipticCurvePrivateKey)):
            raise LocalError("SigningKey needs an EC P-256 private key")
        self._key = key
        self._public = VerifyingKey(key.public_key())

    @classmethod
    def generate(cls) -> SigningKey:
        """A fresh key from the operating system's random source."""
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def sign(self, data: bytes) -> bytes:
        """The DER ECDSA-SHA256 signature of *data* (at most SIGNATURE_BYTES_MAX bytes)."""
        return self._key.sign(data, _ECDSA_SHA256)

    @property
    def public_key(self) -> VerifyingKey:
        return self._public

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        """The ``cryptography`` private key object (for x509 builders and TLS)."""
        return self._key

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        """PKCS#8 PEM; encrypted with the best available scheme when *passphrase* is given."""
        return _private_to_pem(self._key, passphrase)

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None = None) -> SigningKey:
        """Load a PKCS#8 (or SEC1) PEM P-256 key; problems raise ConfigError."""
        return cls(_private_from_pem(data, passphrase, "signing key"))

    def __repr__(self) -> str:
        return f"SigningKey(public={self._public!r})"


class EncryptionKey:
    """An ECDH P-256 private key; its public half travels as a 65-byte uncompressed point.

    :meth:`exchange` returns the raw ECDH shared secret (the x coordinate, 32 bytes). It is
    not a key: callers must run it through a KDF (HKDF-SHA256) before use.
    """

    __slots__ = ("_key",)

    def __init__(self, key: ec.EllipticCurvePrivateKey) -> None:
        if not (_is_p256(key) and isinstance(key, ec.EllipticCurvePrivateKey)):
            raise LocalError("EncryptionKey needs an EC P-256 private key")
        self._key = key

    @classmethod
    def generate(cls) -> EncryptionKey:
        return cls(ec.generate_private_key(ec.SECP256R1()))

    def public_point(self) -> bytes:
        """The public key as an uncompressed X9.62 point: 0x04 || X || Y (65 bytes)."""
        return self._key.public_key().public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )

    def exchange(self, peer_point: bytes) -> bytes:
        """The ECDH shared secret with *peer_point*; a bad point raises DecodeError."""
        peer = public_point_to_key(peer_point)
        return self._key.exchange(ec.ECDH(), peer)

    @property
    def private_key(self) -> ec.EllipticCurvePrivateKey:
        return self._key

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        return _private_to_pem(self._key, passphrase)

    @classmethod
    def from_pem(cls, data: bytes, passphrase: bytes | None = None) -> EncryptionKey:
        return cls(_private_from_pem(data, passphrase, "encryption key"))

    def __repr__(self) -> str:
        return f"EncryptionKey(P-256, point_sha256_prefix={_fingerprint(self.public_point())})"


def public_point_to_key(point: bytes) -> ec.EllipticCurvePublicKey:
    """Parse a 65-byte uncompressed P-256 point from a peer; anything else raises DecodeError.

    Only the uncompressed form is accepted (it is what WebCrypto exports as "raw"), so every
    public key has exactly one encoding on chain. ``cryptography`` checks the point lies on
    the curve.
    """
    if not isinstance(point, bytes):
        raise DecodeError(f"public point must be bytes, not {type(point).__name__}")
    if len(point) != limits.PUBLIC_POINT_BYTES or point[0] != 0x04:
        raise DecodeError(
            f"public point must be {limits.PUBLIC_POINT_BYTES} bytes starting 0x04 "
            f"(uncompressed), got {len(point)} bytes"
        )
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError as exc:
        raise DecodeError("public point is not on P-256") from exc
