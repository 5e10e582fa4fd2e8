"""Which configuration updates the network accepts: pure rules, the same on every member.

A :class:`protocol.config.ConfigEnvelope` in a block changes the network configuration only
if it follows from the current one: same network and root, the next sequence number,
signed by an admin of the ministry, and making exactly one change:

- one organisation added (a hospital, with a new id and a CA certificate the network's root
  issued), members unchanged; its nodes join by later updates;
- or one member added or removed, organisations unchanged. An added member's node
  certificate must be issued by its organisation's CA for that node id and be valid for
  TLS server use at the update's time;
- or one contract pinned: a new contract (pinned last), or a pinned one re-pinned in place
  with a new version and code hash (Fabric's chaincode definition, approved here by the
  ministry). A pin is never removed: the chain holds transactions of every contract;
- or one organisation's certificate revocation list replaced, signed by an admin of that
  organisation or of the ministry: the new list must be issued and signed by the
  organisation's CA, carry a higher CRL number and a later thisUpdate, and still revoke
  everything the old one did (a list only grows).

An added organisation must come with a revocation list its CA signed, so that every
organisation always publishes one (TLS checks them all or none).

The endorsement rule and batch settings do not change in this version.
Every member evaluates these rules when it applies the block, so all agree on the outcome.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from cryptography.x509.oid import NameOID

from identity.certs import cert_from_der
from identity.crl import read_crl
from identity.validate import Purpose, TrustStore
from protocol.codec import encode, replace
from protocol.config import ConfigEnvelope, NetworkConfig
from protocol.errors import RemoteError

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def update_problem(
    current: NetworkConfig, envelope: ConfigEnvelope, trust: TrustStore
) -> str | None:
    """Why *envelope* cannot follow *current* (None when it can)."""
    update = envelope.update
    new = update.config
    at = _EPOCH + timedelta(milliseconds=update.timestamp_ms)  # the update's own time
    try:
        creator = trust.validate(update.creator, at=at, purpose=Purpose.SIGNING)
        trust.verify_signature(creator, encode(update), envelope.signature)
    except RemoteError as e:
        return f"creator: {e}"
    replaced = _crl_replaced(current, new)
    org = current.org(creator.org_id)
    if replaced is not None and creator.role == "admin" and creator.org_id == replaced:
        pass  # an organisation's admin publishes its own CA's list
    elif org is None or org.kind != "ministry" or creator.role != "admin":
        if replaced is not None:
            return "only an admin of the organisation or of the ministry may replace its CRL"
        return "only a ministry admin may change the configuration"
    if new.network_id != current.network_id or new.root_ca != current.root_ca:
        return "the network id and root CA cannot change"
    if new.sequence != current.sequence + 1:
        return f"sequence must be {current.sequence + 1}"
    if (new.endorsement_rule, new.batch) != (current.endorsement_rule, current.batch):
        return "only organisations, members and contract pins may change in this version"
    changes = [
        new.orgs != current.orgs,
        new.members != current.members,
        new.contracts != current.contracts,
    ]
    if sum(changes) > 1:
        return "an update adds an organisation, changes a member or pins a contract, not two"
    if new.contracts != current.contracts:
        return _pin_problem(current, new)
    if replaced is not None:
        return _crl_problem(current, new, replaced)
    if new.orgs != current.orgs:
        return _org_added_problem(current, new)
    old_ids = [m.node_id for m in current.members]
    new_ids = [m.node_id for m in new.members]
    added = [m for m in new.members if m.node_id not in old_ids]
    removed = [i for i in old_ids if i not in new_ids]
    kept = [m for m in new.members if m.node_id in old_ids]
    if kept != [m for m in current.members if m.node_id in new_ids]:
        return "a member that stays cannot change"
    if len(added) + len(removed) != 1:
        return "exactly one member must be added or removed"
    if removed and len(new.members) < 1:
        return "the last member cannot be removed"
    for member in added:
        try:
            node = trust.validate(member.node_cert, at=at, purpose=Purpose.TLS_SERVER)
        except RemoteError as e:
            return f"new member certificate: {e}"
        if node.role != "node" or node.subject_id != member.node_id:
            return "the new member's certificate is not a node certificate for its node id"
        if node.org_id != member.org_id:
            return "the new member's certificate belongs to another organisation"
    return None


def _pin_problem(current: NetworkConfig, new: NetworkConfig) -> str | None:
    old_names = [p.name for p in current.contracts]
    if [p.name for p in new.contracts[: len(old_names)]] != old_names:
        return "pinned contracts stay, in their order; a new one is pinned last"
    added = new.contracts[len(old_names) :]
    repinned = [
        (old, pin) for old, pin in zip(current.contracts, new.contracts, strict=False) if old != pin
    ]
    if len(added) + len(repinned) != 1:
        return "exactly one contract must be pinned or re-pinned"
    for old, pin in repinned:
        if pin.version == old.version:
            return f"re-pinning {pin.name} needs a new version (it is {old.version})"
    return None


def _crl_replaced(current: NetworkConfig, new: NetworkConfig) -> str | None:
    """The organisation whose CRL alone *new* replaces (None if that is not the change)."""
    if len(new.orgs) != len(current.orgs) or new.orgs == current.orgs:
        return None
    differing = [(old, org) for old, org in zip(current.orgs, new.orgs, strict=True) if old != org]
    if len(differing) != 1:
        return None
    old, org = differing[0]
    if replace(old, crl=org.crl) != org:
        return None
    return org.org_id


def _crl_problem(current: NetworkConfig, new: NetworkConfig, org_id: str) -> str | None:
    old, org = current.org(org_id), new.org(org_id)
    assert old is not None and org is not None  # _crl_replaced found both
    try:
        ca = cert_from_der(org.ca_cert)
        info = read_crl(org.crl, ca)
        before = read_crl(old.crl, ca) if old.crl else None
    except RemoteError as e:
        return f"revocation list of {org_id}: {e}"
    if before is None:
        return None
    if info.number <= before.number:
        return f"the new revocation list of {org_id} must have a higher CRL number"
    if info.this_update <= before.this_update:
        return f"the new revocation list of {org_id} must be issued after the current one"
    if not before.serials <= info.serials:
        return f"the new revocation list of {org_id} drops a revoked certificate"
    return None


def _org_added_problem(current: NetworkConfig, new: NetworkConfig) -> str | None:
    if new.orgs[: len(current.orgs)] != current.orgs or len(new.orgs) != len(current.orgs) + 1:
        return "exactly one organisation must be added, after the existing ones"
    added = new.orgs[-1]
    if current.org(added.org_id) is not None:
        return f"there is already an organisation {added.org_id}"
    if added.kind != "hospital":
        return "only hospitals can be added"
    try:
        root = cert_from_der(new.root_ca)
        TrustStore(root, [cert_from_der(o.ca_cert) for o in new.orgs])
        ca = cert_from_der(added.ca_cert)
        names = ca.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    except RemoteError as e:
        return f"new organisation CA: {e}"
    if [n.value for n in names] != [added.org_id]:
        return "the new organisation CA names another organisation"
    try:
        read_crl(added.crl, ca)
    except RemoteError as e:
        return f"new organisation's revocation list: {e}"
    return None
