"""Network profiles: the shape of a network that `medledger network init` lays out.

A profile names the network, the host, the ministry and each hospital (org id, display name,
node id) and the batch parameters. Built-in profiles live in ``node/profiles/NAME.toml``; a
path to a TOML file of the same shape works too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import tomllib
from pathlib import Path
from typing import Any

from protocol.config import BatchConfig
from protocol.errors import ConfigError, FieldError

PROFILES_DIR = Path(__file__).parent / "profiles"
PORTS_PER_NODE = 2  # p2p (mutual TLS between members) and api (clients)
AUTO_PORT_FIRST = 20_000  # above the usual well-known and registered services
# Below Linux's default ephemeral range (32768-60999): a port there can be taken by an
# outgoing connection while its node is down, and the node could not restart.
AUTO_PORT_LAST = 32_000
AUTO_PORT_STEP = 20  # room for ten nodes per network


@dataclasses.dataclass(frozen=True, slots=True)
class OrgSpec:
    """One organisation in a profile and the node it runs."""

    org_id: str
    name: str
    node_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class Profile:
    """The network a profile describes."""

    name: str
    network_id: str
    host: str
    base_port: int | None  # None: choose at init time
    ministry: OrgSpec
    hospitals: tuple[OrgSpec, ...]
    batch: BatchConfig

    @property
    def orgs(self) -> tuple[OrgSpec, ...]:
        return (self.ministry, *self.hospitals)


def load_profile(name_or_path: str) -> Profile:
    """A built-in profile by name (e.g. "local") or a profile TOML file by path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILES_DIR / f"{name_or_path}.toml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PROFILES_DIR.glob("*.toml")))
        raise ConfigError(f"no profile {name_or_path!r} (built-in profiles: {known})")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML ({e})") from None
    return _profile_from(path, data)


def _org(path: Path, where: str, table: Any) -> OrgSpec:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    values = []
    for key in ("org_id", "name", "node_id"):
        value = table.get(key)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: field {where}.{key} must be a non-empty string")
        values.append(value)
    return OrgSpec(*values)


def _profile_from(path: Path, data: dict[str, Any]) -> Profile:
    base = data.get("base_port", "auto")
    if base != "auto" and (type(base) is not int or not 1024 <= base <= 65535 - 40):
        raise ConfigError(f'{path}: field base_port must be "auto" or a port 1024-65495')
    hospitals = data.get("hospitals")
    if not isinstance(hospitals, list) or not hospitals:
        raise ConfigError(f"{path}: field hospitals must list at least one hospital")
    batch_table = data.get("batch")
    if not isinstance(batch_table, dict):
        raise ConfigError(f"{path}: missing table batch")
    try:
        batch = BatchConfig(
            max_txs=batch_table.get("max_txs"),
            max_bytes=batch_table.get("max_bytes"),
            timeout_ms=batch_table.get("timeout_ms"),
        )
    except FieldError as e:
        raise ConfigError(f"{path}: field batch.{e.field}: {e.problem}") from None
    for key in ("network_id", "host"):
        if not isinstance(data.get(key), str) or not data[key]:
            raise ConfigError(f"{path}: field {key} must be a non-empty string")
    return Profile(
        name=path.stem,
        network_id=data["network_id"],
        host=data["host"],
        base_port=None if base == "auto" else base,
        ministry=_org(path, "ministry", data.get("ministry")),
        hospitals=tuple(_org(path, f"hospitals[{i}]", h) for i, h in enumerate(hospitals)),
        batch=batch,
    )


def ports_free(host: str, ports: range) -> bool:
    """Whether every port in *ports* can be bound on *host* right now."""
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                return False
    return True


def choose_base_port(host: str, node_count: int, seed_text: str) -> int:
    """A base port whose block of ports is free now, starting from one derived from *seed_text*.

    Deriving the start from the output directory keeps two networks initialised in different
    directories apart even when neither is running at init time.
    """
    span = node_count * PORTS_PER_NODE
    slots = (AUTO_PORT_LAST - AUTO_PORT_FIRST) // AUTO_PORT_STEP
    start = int.from_bytes(hashlib.sha256(seed_text.encode()).digest()[:4], "big") % slots
    for i in range(slots):
        base = AUTO_PORT_FIRST + ((start + i) % slots) * AUTO_PORT_STEP
        if ports_free(host, range(base, base + span)):
            return base
    raise ConfigError(
        f"no block of {span} free ports on {host} between {AUTO_PORT_FIRST} and {AUTO_PORT_LAST}"
    )
