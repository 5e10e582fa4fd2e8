"""Organisation CAs' revocation lists (identity.crl) and the trust store's use of them.

A CRL reads back as what its CA wrote (number, thisUpdate, serials) only if that CA signed
it for its own name; the trust store refuses a leaf its issuer's list names, on the first
validation and on cached ones, and only for that issuer (the same serial from another CA
stays valid); a list that names no CA of the network, or that another CA signed, is refused
when the store is built.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from identity.certs import (
    CertificateAuthority,
    cert_to_der,
    create_org_ca,
    create_root_ca,
    issue_node_cert,
)
from identity.crl import crl_to_pem, make_crl, read_crl
from identity.keys import SigningKey
from identity.validate import Purpose, TrustStore
from protocol import limits
from protocol.errors import CertificateError

NOW = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
AT = NOW + dt.timedelta(days=1)


@dataclasses.dataclass
class Pki:
    root: CertificateAuthority
    north: CertificateAuthority
    south: CertificateAuthority
    node: bytes
    node_serial: int


def _ca(issuer: CertificateAuthority, org_id: str) -> CertificateAuthority:
    key = SigningKey.generate()
    return CertificateAuthority(create_org_ca(issuer, org_id, org_id, key.public_key, now=NOW), key)


@pytest.fixture(scope="module")
def pki() -> Pki:
    key = SigningKey.generate()
    root = CertificateAuthority(create_root_ca("root", key, now=NOW), key)
    north, south = _ca(root, "north"), _ca(root, "south")
    node = issue_node_cert(
        north, "north", "n1", SigningKey.generate().public_key, ["127.0.0.1"], now=NOW
    )
    return Pki(root, north, south, cert_to_der(node), node.serial_number)


def _store(pki: Pki, *crls: bytes) -> TrustStore:
    return TrustStore(pki.root.cert, [pki.north.cert, pki.south.cert], crls=crls)


def test_a_crl_reads_back_as_its_ca_wrote_it(pki: Pki) -> None:
    der = make_crl(pki.north, [7, 3, 7], number=4, this_update=NOW)
    info = read_crl(der, pki.north.cert)
    assert (info.number, info.this_update, info.serials) == (4, NOW, frozenset({3, 7}))
    assert crl_to_pem(der).startswith(b"-----BEGIN X509 CRL-----")
    assert len(der) <= limits.CRL_BYTES_MAX


def test_a_crl_another_ca_issued_or_signed_is_refused(pki: Pki) -> None:
    south_list = make_crl(pki.south, [1], number=1, this_update=NOW)
    with pytest.raises(CertificateError, match="names another issuer"):
        read_crl(south_list, pki.north.cert)
    forged = (  # north's name, a stranger's key
        x509.CertificateRevocationListBuilder()
        .issuer_name(pki.north.cert.subject)
        .last_update(NOW)
        .next_update(NOW + dt.timedelta(days=1))
        .add_extension(x509.CRLNumber(9), critical=False)
        .sign(SigningKey.generate().private_key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )
    with pytest.raises(CertificateError, match="not signed by its organisation's CA"):
        read_crl(forged, pki.north.cert)
    with pytest.raises(CertificateError, match="not signed by its organisation's CA"):
        _store(pki, forged)


def test_garbage_is_not_a_crl(pki: Pki) -> None:
    with pytest.raises(CertificateError, match="malformed"):
        read_crl(b"not a crl", pki.north.cert)
    with pytest.raises(CertificateError, match="malformed"):
        _store(pki, b"not a crl")


def test_the_store_refuses_a_leaf_its_issuers_list_names(pki: Pki) -> None:
    clean = _store(pki, make_crl(pki.north, [], number=1, this_update=NOW))
    assert clean.validate(pki.node, at=AT, purpose=Purpose.TLS_CLIENT).subject_id == "n1"
    revoking = make_crl(pki.north, [pki.node_serial], number=2, this_update=NOW)
    store = _store(pki, revoking)
    for _ in range(2):  # the first validation and the cached one
        with pytest.raises(CertificateError, match="certificate is revoked"):
            store.validate(pki.node, at=AT, purpose=Purpose.TLS_CLIENT)
    # The same serial in another CA's list says nothing about north's certificate.
    other = _store(pki, make_crl(pki.south, [pki.node_serial], number=1, this_update=NOW))
    assert other.validate(pki.node, at=AT, purpose=Purpose.TLS_CLIENT).subject_id == "n1"


def test_a_list_naming_no_ca_of_the_network_is_refused(pki: Pki) -> None:
    stranger = _ca(pki.root, "east")
    with pytest.raises(CertificateError, match="names no organisation CA"):
        _store(pki, make_crl(stranger, [1], number=1, this_update=NOW))
