"""Key and certificate files on disk.

Private keys are written as PKCS#8 PEM (encrypted when a passphrase is given) with mode 0600
from the moment the file exists: the bytes go to a temporary file in the same directory,
created with ``os.open(..., O_CREAT | O_EXCL, 0o600)``, flushed and fsynced, then renamed over
the target, so a reader sees either the old file or the complete new one and never a
world-readable key. Certificates are PEM with mode 0644, written the same way.

Every problem reading a file (missing, unreadable, too large, not the expected PEM, wrong
passphrase) raises :class:`~protocol.errors.ConfigError` naming the path. This is the only
module of ``identity`` that does I/O.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from cryptography import x509

from identity.certs import cert_to_pem, certs_from_pem
from identity.keys import EncryptionKey, SigningKey
from protocol import limits
from protocol.errors import CertificateError, ConfigError, LocalError

PRIVATE_KEY_MODE = 0o600
CERT_MODE = 0o644
# An encrypted PKCS#8 PEM of a P-256 key is under 1 KiB; 16 KiB bounds a mistaken path.
KEY_FILE_BYTES_MAX = 16 * limits.KIB
# A bundle of every org CA plus the root, PEM-encoded (base64 adds a third, headers a little).
CERT_FILE_BYTES_MAX = 2 * (limits.ORGS_MAX + 1) * limits.CERTIFICATE_BYTES_MAX


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(tmp, flags, mode)
    try:
        try:
            os.fchmod(fd, mode)  # the umask may have removed bits we want (e.g. 0644)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return  # some platforms cannot open directories; the rename is still atomic
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read(path: Path, limit: int, what: str) -> bytes:
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} file ({exc.strerror})") from None
    if len(data) > limit:
        raise ConfigError(f"{path}: {what} file is larger than {limit} bytes")
    return data


def write_private_key(
    path: Path, key: SigningKey | EncryptionKey, passphrase: bytes | None = None
) -> None:
    """Write *key* as PKCS#8 PEM to *path* (mode 0600, atomic; parent directories created)."""
    if not isinstance(key, (SigningKey, EncryptionKey)):
        raise LocalError("write_private_key needs a SigningKey or an EncryptionKey")
    _write_atomic(Path(path), key.to_pem(passphrase), PRIVATE_KEY_MODE)


def read_signing_key(path: Path, passphrase: bytes | None = None) -> SigningKey:
    data = _read(Path(path), KEY_FILE_BYTES_MAX, "signing key")
    try:
        return SigningKey.from_pem(data, passphrase)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def read_encryption_key(path: Path, passphrase: bytes | None = None) -> EncryptionKey:
    data = _read(Path(path), KEY_FILE_BYTES_MAX, "encryption key")
    try:
        return EncryptionKey.from_pem(data, passphrase)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc


def write_cert(path: Path, cert: x509.Certificate) -> None:
    """Write *cert* as PEM to *path* (mode 0644, atomic; parent directories created)."""
    _write_atomic(Path(path), cert_to_pem(cert), CERT_MODE)


def write_certs(path: Path, certs: list[x509.Certificate]) -> None:
    """Write a PEM bundle (mode 0644, atomic)."""
    if not certs:
        raise LocalError("write_certs needs at least one certificate")
    _write_atomic(Path(path), b"".join(cert_to_pem(c) for c in certs), CERT_MODE)


def read_certs(path: Path) -> list[x509.Certificate]:
    """Every certificate in the PEM bundle at *path* (at least one)."""
    data = _read(Path(path), CERT_FILE_BYTES_MAX, "certificate")
    try:
        certs = certs_from_pem(data)
    except CertificateError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    if not certs:
        raise ConfigError(f"{path}: no PEM certificate found")
    return certs


def read_cert(path: Path) -> x509.Certificate:
    """The single certificate in the PEM file at *path*."""
    certs = read_certs(path)
    if len(certs) != 1:
        raise ConfigError(f"{path}: expected one certificate, found {len(certs)}")
    return certs[0]
