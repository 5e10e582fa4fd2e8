"""identity.keystore: key and certificate files.

Proves that private keys are written with mode 0600 whatever the umask and whatever the mode
of a file they replace, atomically (no temporary file left behind, parent directories
created), and read back with and without a passphrase; that certificates and bundles are
written 0644 and read back; and that a missing file, bad PEM, wrong passphrase or a bundle
where one certificate is expected is a ConfigError naming the path. Uses tmp_path only.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from identity.certs import CertificateAuthority, create_org_ca, create_root_ca
from identity.keys import EncryptionKey, SigningKey
from identity.keystore import (
    read_cert,
    read_certs,
    read_encryption_key,
    read_signing_key,
    write_cert,
    write_certs,
    write_private_key,
)
from protocol.errors import ConfigError

NOW = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture(scope="module")
def certs() -> tuple[x509.Certificate, x509.Certificate]:
    root_key, org_key = SigningKey.generate(), SigningKey.generate()
    root = CertificateAuthority(create_root_ca("Root", root_key, now=NOW), root_key)
    return root.cert, create_org_ca(root, "hosp-a", "Hospital A", org_key.public_key, now=NOW)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_key_file_is_0600_and_round_trips(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "keys" / "nested" / "node.key"  # parents are created
    write_private_key(path, key)
    assert _mode(path) == 0o600
    assert read_signing_key(path).public_key == key.public_key
    assert os.listdir(path.parent) == ["node.key"]  # no temporary file left behind


def test_private_key_is_0600_even_with_a_permissive_umask(tmp_path: Path, key: SigningKey) -> None:
    old = os.umask(0)
    try:
        write_private_key(tmp_path / "a.key", key)
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.key") == 0o600


def test_replacing_a_world_readable_file_yields_0600(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "node.key"
    path.write_bytes(b"old")
    path.chmod(0o644)
    write_private_key(path, key)
    assert _mode(path) == 0o600
    assert read_signing_key(path).public_key == key.public_key


def test_encrypted_key_file_round_trip_and_wrong_passphrase(
    tmp_path: Path, key: SigningKey
) -> None:
    path = tmp_path / "node.key"
    write_private_key(path, key, b"s3cret")
    assert b"ENCRYPTED" in path.read_bytes()
    assert read_signing_key(path, b"s3cret").public_key == key.public_key
    with pytest.raises(ConfigError, match="wrong passphrase") as info:
        read_signing_key(path, b"guess")
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError, match="passphrase is required"):
        read_signing_key(path)


def test_encryption_key_file_round_trip(tmp_path: Path) -> None:
    enc = EncryptionKey.generate()
    path = tmp_path / "enc.key"
    write_private_key(path, enc, b"pw")
    assert _mode(path) == 0o600
    assert read_encryption_key(path, b"pw").public_point() == enc.public_point()


def test_missing_key_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.key"
    with pytest.raises(ConfigError, match="not found") as info:
        read_signing_key(path)
    assert str(path) in str(info.value)


def test_bad_pem_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "junk.key"
    path.write_bytes(b"this is not a key")
    with pytest.raises(ConfigError) as info:
        read_signing_key(path)
    assert str(path) in str(info.value)
    with pytest.raises(ConfigError) as info:
        read_cert(path)
    assert str(path) in str(info.value)


def test_oversize_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.key"
    path.write_bytes(b"A" * (1024 * 1024))
    with pytest.raises(ConfigError, match="larger than"):
        read_signing_key(path)


def test_cert_file_is_0644_and_round_trips(tmp_path: Path, certs) -> None:
    root, _ = certs
    path = tmp_path / "ca" / "root.pem"
    write_cert(path, root)
    assert _mode(path) == 0o644
    assert read_cert(path) == root
    assert read_certs(path) == [root]


def test_cert_bundle_round_trips(tmp_path: Path, certs) -> None:
    path = tmp_path / "bundle.pem"
    write_certs(path, list(certs))
    assert read_certs(path) == list(certs)
    with pytest.raises(ConfigError, match="expected one certificate") as info:
        read_cert(path)
    assert str(path) in str(info.value)


def test_missing_cert_file_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "absent.pem"
    with pytest.raises(ConfigError, match="not found") as info:
        read_certs(path)
    assert str(path) in str(info.value)


def test_directory_instead_of_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        read_cert(tmp_path)
