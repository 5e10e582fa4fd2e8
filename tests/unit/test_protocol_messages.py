"""Message constructors: every limit is enforced, and the configuration's rules hold.

A message that exists is valid. For every length-limited str or bytes field of every kind
(found from the codec's schema, so a new field is covered without a new test), a value at
the limit is accepted and one past it raises FieldError; exact-length fields (hashes,
nonces) reject one byte less and one more; bounded ints reject both neighbours of their
range. Array limits (args, rw_set, endorsements, events, orgs, ...) are checked one past
the limit, including the combined reads+writes limit of an rw_set.

NetworkConfig.check is exercised rule by rule on an otherwise valid configuration:
duplicate org ids, node ids and endpoints (host names compared case-insensitively), a
member naming no org, zero or two ministries, no members, an unknown endorsement rule,
duplicate contract names. Also: tx ids of proposals, envelopes and configuration updates.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import limits
from protocol.codec import _FieldSpec, _specs, encode, kinds, replace
from protocol.config import (
    BatchConfig,
    ConfigEnvelope,
    ConfigUpdate,
    ContractPin,
    MemberConfig,
    NetworkConfig,
    OrgConfig,
)
from protocol.errors import FieldError, RemoteError
from protocol.hashing import sha256
from protocol.transaction import (
    ContractEvent,
    Endorsement,
    Envelope,
    KVRead,
    KVWrite,
    Proposal,
    ProposalResponse,
    RwSet,
    Transaction,
    proposal_hash,
)
from tests.unit.strategies import strategy_for

KINDS = sorted(kinds().items())
LIMITED = [
    (tag, spec.name)
    for tag, cls in KINDS
    for spec in _specs(cls)
    if spec.kind in ("str", "bytes") and (spec.max_len is not None or spec.exact_len is not None)
]
BOUNDED_INTS = [
    (tag, spec.name)
    for tag, cls in KINDS
    for spec in _specs(cls)
    if spec.kind == "int" and (spec.min_value > -(2**63) or spec.max_value < 2**64 - 1)
]
SETTINGS = settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def spec_of(tag: str, name: str) -> _FieldSpec:
    return next(s for s in _specs(kinds()[tag]) if s.name == name)


def filled(kind: str, length: int) -> str | bytes:
    return "x" * length if kind == "str" else b"x" * length


def replace_or_field_error(msg: object, **changes: object) -> object | None:
    """The changed message, or None if a cross-field check (not the limit) refused it."""
    try:
        return replace(msg, **changes)  # type: ignore[type-var]
    except FieldError as e:
        if "length" in e.problem:
            raise
        return None


@pytest.mark.parametrize(("tag", "name"), LIMITED, ids=[f"{t}.{n}" for t, n in LIMITED])
@SETTINGS
@given(data=st.data())
def test_length_limits(tag: str, name: str, data: st.DataObject) -> None:
    msg = data.draw(strategy_for(kinds()[tag]))
    spec = spec_of(tag, name)
    if spec.exact_len is not None:
        replace_or_field_error(msg, **{name: filled(spec.kind, spec.exact_len)})
        for wrong in (spec.exact_len - 1, spec.exact_len + 1):
            with pytest.raises(FieldError, match=name):
                replace(msg, **{name: filled(spec.kind, wrong)})
    else:
        replace_or_field_error(msg, **{name: filled(spec.kind, spec.max_len)})
        with pytest.raises(FieldError, match=f"{name}.*over the limit"):
            replace(msg, **{name: filled(spec.kind, spec.max_len + 1)})


@pytest.mark.parametrize(("tag", "name"), BOUNDED_INTS, ids=[f"{t}.{n}" for t, n in BOUNDED_INTS])
@SETTINGS
@given(data=st.data())
def test_int_ranges(tag: str, name: str, data: st.DataObject) -> None:
    msg = data.draw(strategy_for(kinds()[tag]))
    spec = spec_of(tag, name)
    for edge in {spec.min_value, spec.max_value}:
        replace_or_field_error(msg, **{name: edge})
    for outside in (spec.min_value - 1, spec.max_value + 1):
        with pytest.raises(FieldError, match=name):
            replace(msg, **{name: outside})


def test_the_limits_that_matter_most_are_where_we_expect() -> None:
    assert spec_of("proposal", "nonce").exact_len == limits.NONCE_BYTES
    assert spec_of("proposal", "contract").max_len == limits.ID_CHARS_MAX
    assert spec_of("proposal", "args").max_len == limits.ARGS_MAX
    assert spec_of("proposal_response", "proposal_hash").exact_len == limits.HASH_BYTES
    assert ("org_config", "org_id") in LIMITED and ("member_config", "host") in LIMITED


PROPOSAL = Proposal(
    network_id="net",
    contract="records",
    function="add",
    args=(),
    creator=b"cert",
    nonce=bytes(limits.NONCE_BYTES),
    timestamp_ms=0,
)
READ = KVRead(namespace="r", key=b"k", exists=False, version_block=0, version_tx=0)
WRITE = KVWrite(namespace="r", key=b"k", value=b"v", is_delete=False)


@pytest.mark.parametrize(
    "field_name", ["network_id", "contract", "function"], ids=lambda f: f"proposal.{f}"
)
def test_too_long_ids(field_name: str) -> None:
    replace(PROPOSAL, **{field_name: "a" * limits.ID_CHARS_MAX})
    with pytest.raises(FieldError, match=field_name):
        replace(PROPOSAL, **{field_name: "a" * (limits.ID_CHARS_MAX + 1)})


@pytest.mark.parametrize("length", [0, limits.NONCE_BYTES - 1, limits.NONCE_BYTES + 1, 32])
def test_wrong_nonce_length(length: int) -> None:
    with pytest.raises(FieldError, match="nonce"):
        replace(PROPOSAL, nonce=bytes(length))


def test_too_many_or_too_long_args() -> None:
    replace(PROPOSAL, args=(b"",) * limits.ARGS_MAX)
    with pytest.raises(FieldError, match="args"):
        replace(PROPOSAL, args=(b"",) * (limits.ARGS_MAX + 1))
    with pytest.raises(FieldError, match=r"args\[1\]"):
        replace(PROPOSAL, args=(b"", bytes(limits.ARG_BYTES_MAX + 1)))
    with pytest.raises(FieldError, match=r"args\[0\]"):
        replace(PROPOSAL, args=("text",))


def test_rw_set_limits() -> None:
    half = limits.RW_SET_KEYS_MAX // 2
    RwSet(reads=(READ,) * half, writes=(WRITE,) * (limits.RW_SET_KEYS_MAX - half))
    with pytest.raises(FieldError, match="reads\\+writes"):
        RwSet(reads=(READ,) * half, writes=(WRITE,) * (limits.RW_SET_KEYS_MAX - half + 1))
    with pytest.raises(FieldError, match="reads"):
        RwSet(reads=(READ,) * (limits.RW_SET_KEYS_MAX + 1), writes=())
    with pytest.raises(FieldError, match="writes"):
        RwSet(reads=(), writes=(READ,))  # a read where a write belongs


def test_endorsement_and_event_counts() -> None:
    response = ProposalResponse(
        proposal_hash=proposal_hash(PROPOSAL),
        status=200,
        message="",
        result=b"",
        rw_set=RwSet(reads=(), writes=()),
        events=(ContractEvent(name="e", payload=b""),) * limits.EVENTS_MAX,
    )
    with pytest.raises(FieldError, match="events"):
        replace(response, events=response.events + response.events[:1])
    endorsement = Endorsement(cert_hash=bytes(32), signature=b"s")
    tx = Transaction(
        proposal=PROPOSAL, response=response, endorsements=(endorsement,) * limits.ENDORSEMENTS_MAX
    )
    with pytest.raises(FieldError, match="endorsements"):
        replace(tx, endorsements=(*tx.endorsements, endorsement))
    with pytest.raises(FieldError, match="status"):
        replace(response, status=1000)
    with pytest.raises(FieldError, match="signature"):
        Endorsement(cert_hash=bytes(32), signature=bytes(limits.SIGNATURE_BYTES_MAX + 1))


def test_nested_messages_must_have_their_exact_class() -> None:
    with pytest.raises(FieldError, match="proposal"):
        Transaction(proposal=READ, response=None, endorsements=())  # type: ignore[arg-type]


def test_tx_ids() -> None:
    nonce, creator = bytes(range(24)), b"creator"
    proposal = replace(PROPOSAL, nonce=nonce, creator=creator)
    assert proposal.tx_id == sha256(nonce + creator)
    response = ProposalResponse(
        proposal_hash=proposal_hash(proposal),
        status=200,
        message="",
        result=b"",
        rw_set=RwSet(reads=(), writes=()),
        events=(),
    )
    envelope = Envelope(
        transaction=Transaction(proposal=proposal, response=response, endorsements=()),
        signature=b"",
    )
    assert envelope.tx_id == envelope.transaction.tx_id == proposal.tx_id
    assert proposal_hash(proposal) == sha256(encode(proposal))


# --- network configuration ------------------------------------------------------------------

MINISTRY = OrgConfig(
    org_id="ministry", name="Ministry of Health", kind="ministry", ca_cert=b"m", crl=b""
)
NORTH = OrgConfig(
    org_id="northgate", name="Northgate Hospital", kind="hospital", ca_cert=b"n", crl=b""
)
SOUTH = OrgConfig(
    org_id="southmere", name="Southmere Clinic", kind="hospital", ca_cert=b"s", crl=b""
)


def member(node_id: str, org_id: str, host: str, p2p: int, api: int) -> MemberConfig:
    return MemberConfig(
        node_id=node_id,
        org_id=org_id,
        host=host,
        p2p_port=p2p,
        api_port=api,
        node_cert=b"cert",
        endorser=org_id != "ministry",
    )


M0 = member("ministry-0", "ministry", "ministry.example", 7000, 7001)
N0 = member("northgate-0", "northgate", "north.example", 7000, 7001)
S0 = member("southmere-0", "southmere", "127.0.0.1", 7000, 7001)
CONFIG = NetworkConfig(
    network_id="medledger-test",
    sequence=0,
    root_ca=b"root",
    orgs=(MINISTRY, NORTH, SOUTH),
    members=(M0, N0, S0),
    endorsement_rule="2f+1",
    batch=BatchConfig(max_txs=100, max_bytes=limits.BLOCK_BYTES_MAX, timeout_ms=200),
    contracts=(ContractPin(name="records", version="1", code_hash=bytes(32)),),
)


def test_the_base_configuration_is_valid() -> None:
    assert CONFIG.org("northgate") == NORTH and CONFIG.org("nope") is None
    assert CONFIG.member("southmere-0") == S0 and CONFIG.member("nope") is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"orgs": (MINISTRY, NORTH, NORTH)}, "duplicate org_id"),
        ({"orgs": (MINISTRY, NORTH, replace(SOUTH, org_id="northgate"))}, "duplicate"),
        ({"orgs": (NORTH, SOUTH)}, "exactly one ministry"),
        (
            {"orgs": (MINISTRY, NORTH, replace(SOUTH, kind="ministry"))},
            "exactly one ministry",
        ),
        ({"orgs": ()}, "exactly one ministry"),
        ({"members": (M0, N0, replace(S0, node_id="northgate-0"))}, "duplicate node"),
        ({"members": (M0, N0, replace(S0, host="north.example"))}, "host and port"),
        (
            {
                "members": (
                    M0,
                    N0,
                    replace(S0, host="NORTH.Example", p2p_port=7001, api_port=7002),
                )
            },
            "host and port",
        ),
        (
            {
                "members": (
                    M0,
                    N0,
                    replace(S0, host="north.example", p2p_port=7001, api_port=9000),
                )
            },
            "host and port",
        ),
        ({"members": (M0, N0, replace(S0, org_id="elsewhere"))}, "names no org"),
        ({"members": ()}, "at least one Raft member"),
        ({"endorsement_rule": "majority"}, "endorsement_rule"),
        ({"endorsement_rule": ""}, "endorsement_rule"),
        ({"contracts": CONFIG.contracts * 2}, "duplicate contract"),
        ({"network_id": ""}, "network_id"),
        ({"orgs": (MINISTRY, NORTH)}, "members\\[2\\].org_id"),
    ],
)
def test_network_config_rules(changes: dict, problem: str) -> None:
    with pytest.raises(FieldError, match=problem):
        replace(CONFIG, **changes)


def test_endpoints_may_share_a_host_on_different_ports() -> None:
    local = tuple(
        replace(m, host="127.0.0.1", p2p_port=7000 + 2 * i, api_port=7001 + 2 * i)
        for i, m in enumerate(CONFIG.members)
    )
    replace(CONFIG, members=local)


@pytest.mark.parametrize(
    ("cls", "base", "changes", "problem"),
    [
        (OrgConfig, NORTH, {"org_id": ""}, "org_id"),
        (OrgConfig, NORTH, {"kind": "clinic"}, "kind"),
        (OrgConfig, NORTH, {"kind": "Hospital"}, "kind"),
        (MemberConfig, N0, {"node_id": ""}, "node_id"),
        (MemberConfig, N0, {"api_port": 7000}, "equals p2p_port"),
        (MemberConfig, N0, {"p2p_port": 0}, "p2p_port"),
        (MemberConfig, N0, {"api_port": 65536}, "api_port"),
        (BatchConfig, CONFIG.batch, {"max_txs": 0}, "max_txs"),
        (BatchConfig, CONFIG.batch, {"max_bytes": limits.ENVELOPE_BYTES_MAX - 1}, "max_bytes"),
        (BatchConfig, CONFIG.batch, {"max_bytes": limits.BLOCK_BYTES_MAX + 1}, "max_bytes"),
        (BatchConfig, CONFIG.batch, {"timeout_ms": 0}, "timeout_ms"),
        (ContractPin, CONFIG.contracts[0], {"code_hash": bytes(31)}, "code_hash"),
    ],
)
def test_config_part_rules(cls: type, base: object, changes: dict, problem: str) -> None:
    assert type(base) is cls
    with pytest.raises(FieldError, match=problem):
        replace(base, **changes)  # type: ignore[type-var]


def test_config_update_must_name_its_config_network() -> None:
    update = ConfigUpdate(
        network_id=CONFIG.network_id,
        config=CONFIG,
        creator=b"admin",
        nonce=bytes(24),
        timestamp_ms=1,
    )
    envelope = ConfigEnvelope(update=update, signature=b"sig")
    assert envelope.tx_id == update.tx_id == sha256(bytes(24) + b"admin")
    with pytest.raises(FieldError, match="network_id"):
        replace(update, network_id="other-network")


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=strategy_for(NetworkConfig))
def test_generated_configurations_keep_the_rules(config: NetworkConfig) -> None:
    assert sum(o.kind == "ministry" for o in config.orgs) == 1
    known = {o.org_id for o in config.orgs}
    assert all(m.org_id in known for m in config.members)


def test_field_errors_are_remote_errors_with_their_parts() -> None:
    with pytest.raises(FieldError) as info:
        replace(NORTH, kind="clinic")
    assert isinstance(info.value, RemoteError)
    assert (info.value.message_kind, info.value.field) == ("org_config", "kind")
