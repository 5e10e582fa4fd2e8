"""The configuration-update rules every member applies (consensus.config_change), pure.

Builds a small network in memory (root CA, a ministry and a hospital CA, node and admin
certificates) and checks that exactly the updates that follow from the current
configuration are accepted: the next sequence, signed by a ministry admin, one member
added (with a node certificate of its own org for its id) or removed, nothing else changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from datetime import UTC, datetime, timedelta

import pytest

from consensus.config_change import update_problem
from identity.certs import (
    CertificateAuthority,
    cert_to_der,
    create_org_ca,
    create_root_ca,
    issue_node_cert,
    issue_user_cert,
)
from identity.crl import make_crl
from identity.keys import SigningKey
from identity.validate import TrustStore
from node.membership import with_crl
from protocol.codec import encode, replace
from protocol.config import (
    BatchConfig,
    ConfigEnvelope,
    ConfigUpdate,
    ContractPin,
    MemberConfig,
    NetworkConfig,
    OrgConfig,
)
from protocol.errors import FieldError

NOW = datetime(2026, 11, 1, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)


@dataclasses.dataclass
class World:
    config: NetworkConfig
    trust: TrustStore
    cas: dict[str, CertificateAuthority]
    admins: dict[str, tuple[SigningKey, bytes]]

    def node(self, org: str, node_id: str, port: int) -> MemberConfig:
        key = SigningKey.generate()
        cert = issue_node_cert(self.cas[org], org, node_id, key.public_key, ["127.0.0.1"], now=NOW)
        return MemberConfig(
            node_id=node_id,
            org_id=org,
            host="127.0.0.1",
            p2p_port=port,
            api_port=port + 1,
            node_cert=cert_to_der(cert),
            endorser=True,
        )

    def update(
        self, config: NetworkConfig, signer: str = "ministry", at_ms: int = NOW_MS + 1000
    ) -> ConfigEnvelope:
        key, cert = self.admins[signer]
        update = ConfigUpdate(
            network_id=config.network_id,
            config=config,
            creator=cert,
            nonce=os.urandom(24),
            timestamp_ms=at_ms,
        )
        return ConfigEnvelope(update=update, signature=key.sign(encode(update)))


@pytest.fixture(scope="module")
def world() -> World:
    root_key = SigningKey.generate()
    root = CertificateAuthority(create_root_ca("root", root_key, now=NOW), root_key)
    cas, admins, orgs = {}, {}, []
    for org, kind in (("ministry", "ministry"), ("northgate", "hospital")):
        key = SigningKey.generate()
        ca = CertificateAuthority(create_org_ca(root, org, org, key.public_key, now=NOW), key)
        cas[org] = ca
        admin_key = SigningKey.generate()
        admin = issue_user_cert(ca, org, f"admin@{org}", "admin", admin_key.public_key, now=NOW)
        admins[org] = (admin_key, cert_to_der(admin))
        crl = make_crl(ca, (), number=1, this_update=NOW)
        orgs.append(
            OrgConfig(org_id=org, name=org, kind=kind, ca_cert=cert_to_der(ca.cert), crl=crl)
        )
    w = World(None, TrustStore(root.cert, [c.cert for c in cas.values()]), cas, admins)  # type: ignore[arg-type]
    w.cas["root"] = root
    w.config = NetworkConfig(
        network_id="net",
        sequence=0,
        root_ca=cert_to_der(root.cert),
        orgs=tuple(orgs),
        members=(w.node("ministry", "ministry", 20000), w.node("northgate", "northgate", 20002)),
        endorsement_rule="2f+1",
        batch=BatchConfig(max_txs=10, max_bytes=1 << 21, timeout_ms=50),
        contracts=(),
    )
    return w


def added(w: World, member: MemberConfig) -> NetworkConfig:
    return replace(w.config, sequence=1, members=(*w.config.members, member))


def test_adding_and_removing_one_member_is_accepted(world: World) -> None:
    assert (
        update_problem(
            world.config,
            world.update(added(world, world.node("northgate", "n2", 20004))),
            world.trust,
        )
        is None
    )
    removed = replace(world.config, sequence=1, members=world.config.members[:1])
    assert update_problem(world.config, world.update(removed), world.trust) is None


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("hospital admin", "only a ministry admin"),
        ("skipped sequence", "sequence must be 1"),
        ("two added", "exactly one member"),
        ("nothing changed", "exactly one member"),
        ("batch changed", "only organisations, members and contract pins may change"),
        ("cert of another org", "belongs to another organisation"),
        ("cert for another id", "not a node certificate for its node id"),
        ("member changed", "a member that stays cannot change"),
        ("forged signature", "creator"),
        ("before the certificates", "creator"),
    ],
)
def test_updates_that_do_not_follow_are_refused(world: World, case: str, words: str) -> None:
    new = world.node("northgate", "n2", 20004)
    config = added(world, new)
    envelope = world.update(config)
    if case == "hospital admin":
        envelope = world.update(config, signer="northgate")
    elif case == "skipped sequence":
        envelope = world.update(replace(config, sequence=2))
    elif case == "two added":
        two = (*config.members, world.node("northgate", "n3", 20006))
        envelope = world.update(replace(config, members=two))
    elif case == "nothing changed":
        envelope = world.update(replace(world.config, sequence=1))
    elif case == "batch changed":
        envelope = world.update(
            replace(config, batch=BatchConfig(max_txs=11, max_bytes=1 << 21, timeout_ms=50))
        )
    elif case == "cert of another org":
        envelope = world.update(
            added(world, replace(world.node("ministry", "n2", 20004), org_id="northgate"))
        )
    elif case == "cert for another id":
        envelope = world.update(added(world, replace(new, node_id="n9")))
    elif case == "member changed":
        moved = replace(world.config.members[1], p2p_port=30000, api_port=30001)
        envelope = world.update(replace(config, members=(world.config.members[0], moved, new)))
    elif case == "forged signature":
        envelope = replace(envelope, signature=world.admins["ministry"][0].sign(b"x"))
    elif case == "before the certificates":
        envelope = world.update(config, at_ms=int((NOW - timedelta(days=1)).timestamp() * 1000))
    problem = update_problem(world.config, envelope, world.trust)
    assert problem is not None and words in problem, problem


def _hospital(ca_root: CertificateAuthority, org_id: str, named: str | None = None) -> OrgConfig:
    key = SigningKey.generate()
    ca = create_org_ca(ca_root, named or org_id, org_id, key.public_key, now=NOW)
    crl = make_crl(CertificateAuthority(ca, key), (), number=1, this_update=NOW)
    return OrgConfig(org_id=org_id, name=org_id, kind="hospital", ca_cert=cert_to_der(ca), crl=crl)


def test_a_configuration_cannot_even_hold_a_second_ministry_or_a_duplicate_org(
    world: World,
) -> None:
    root = world.cas["root"]
    for extra, words in (
        (replace(_hospital(root, "east"), kind="ministry"), "exactly one ministry"),
        (_hospital(root, "northgate"), "duplicate org_id"),
    ):
        with pytest.raises(FieldError, match=words):
            replace(world.config, sequence=1, orgs=(*world.config.orgs, extra))


def test_adding_one_hospital_is_accepted(world: World) -> None:
    config = replace(
        world.config, sequence=1, orgs=(*world.config.orgs, _hospital(world.cas["root"], "east"))
    )
    assert update_problem(world.config, world.update(config), world.trust) is None


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("another root", "new organisation CA"),
        ("with a member", "not two"),
        ("two orgs", "exactly one organisation"),
        ("ca of another org", "names another organisation"),
    ],
)
def test_org_additions_that_do_not_follow_are_refused(world: World, case: str, words: str) -> None:
    root = world.cas["root"]
    org = _hospital(root, "east")
    orgs = (*world.config.orgs, org)
    members = world.config.members
    if case == "another root":
        other_key = SigningKey.generate()
        other = CertificateAuthority(create_root_ca("other", other_key, now=NOW), other_key)
        orgs = (*world.config.orgs, _hospital(other, "east"))
    elif case == "with a member":
        members = (*members, world.node("northgate", "n2", 20004))
    elif case == "two orgs":
        orgs = (*orgs, _hospital(root, "west"))
    elif case == "ca of another org":
        orgs = (*world.config.orgs, _hospital(root, "east", named="west"))
    config = replace(world.config, sequence=1, orgs=orgs, members=members)
    problem = update_problem(world.config, world.update(config), world.trust)
    assert problem is not None and words in problem, problem


def _pin(name: str, version: str = "1.0", code: bytes = b"code") -> ContractPin:
    return ContractPin(name=name, version=version, code_hash=hashlib.sha256(code).digest())


def _pinned(world: World, *pins: ContractPin) -> NetworkConfig:
    return replace(world.config, contracts=pins)


def test_pinning_a_new_contract_or_a_new_version_is_accepted(world: World) -> None:
    current = _pinned(world, _pin("registry"))
    for contracts in (
        (_pin("registry"), _pin("records")),  # a new contract, pinned last
        (_pin("registry", "1.1", b"new code"),),  # a new version in place
    ):
        new = replace(current, sequence=1, contracts=contracts)
        assert update_problem(current, world.update(new), world.trust) is None, contracts


@pytest.mark.parametrize(
    ("contracts", "words"),
    [
        ((), "pinned contracts stay"),
        ((_pin("records"), _pin("registry")), "pinned contracts stay"),
        ((_pin("registry"), _pin("records"), _pin("consent")), "exactly one contract"),
        ((_pin("registry", "1.0", b"other code"),), "needs a new version"),
    ],
)
def test_pin_updates_that_do_not_follow_are_refused(
    world: World, contracts: tuple[ContractPin, ...], words: str
) -> None:
    current = _pinned(world, _pin("registry"))
    new = replace(current, sequence=1, contracts=contracts)
    problem = update_problem(current, world.update(new), world.trust)
    assert problem is not None and words in problem, problem


def test_a_pin_comes_alone_and_from_a_ministry_admin(world: World) -> None:
    current = _pinned(world, _pin("registry"))
    pinned = replace(current, sequence=1, contracts=(_pin("registry"), _pin("x")))
    with_member = replace(pinned, members=(*current.members, world.node("northgate", "n2", 20004)))
    problem = update_problem(current, world.update(with_member), world.trust)
    assert problem is not None and "not two" in problem, problem
    problem = update_problem(current, world.update(pinned, signer="northgate"), world.trust)
    assert problem is not None and "only a ministry admin" in problem, problem


def _listing(world: World, org: str, serials: set[int], number: int, later_s: int) -> NetworkConfig:
    """*world*'s configuration with *org*'s revocation list replaced."""
    crl = make_crl(
        world.cas[org], serials, number=number, this_update=NOW + timedelta(seconds=later_s)
    )
    return with_crl(world.config, org, crl)


def test_an_organisation_or_the_ministry_replaces_its_revocation_list(world: World) -> None:
    new = _listing(world, "northgate", {12345}, number=2, later_s=1)
    for signer in ("northgate", "ministry"):
        assert update_problem(world.config, world.update(new, signer=signer), world.trust) is None


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("another org's admin", "only an admin of the organisation or of the ministry"),
        ("same number", "higher CRL number"),
        ("not later", "issued after the current one"),
        ("drops a serial", "drops a revoked certificate"),
        ("another CA's list", "names another issuer"),
        ("with a member", "not two"),
    ],
)
def test_revocation_lists_that_do_not_follow_are_refused(
    world: World, case: str, words: str
) -> None:
    current = _listing(world, "northgate", {1, 2}, number=2, later_s=1)
    current = replace(current, sequence=0)
    new = _listing(world, "northgate", {1, 2, 3}, number=3, later_s=2)
    signer = "northgate"
    if case == "another org's admin":  # a hospital admin replacing the ministry's list
        new = with_crl(
            current, "ministry", make_crl(world.cas["ministry"], {9}, number=2, this_update=NOW)
        )
    elif case == "same number":
        new = _listing(world, "northgate", {1, 2, 3}, number=2, later_s=2)
    elif case == "not later":
        new = _listing(world, "northgate", {1, 2, 3}, number=3, later_s=1)
    elif case == "drops a serial":
        new = _listing(world, "northgate", {1, 3}, number=3, later_s=2)
    elif case == "another CA's list":
        theirs = make_crl(world.cas["ministry"], {1, 2, 3}, number=3, this_update=NOW)
        new = with_crl(current, "northgate", theirs)
    elif case == "with a member":
        new = replace(new, members=(*new.members, world.node("northgate", "n2", 20004)))
    new = replace(new, sequence=1)
    problem = update_problem(current, world.update(new, signer=signer), world.trust)
    assert problem is not None and words in problem, problem
