"""The node's configuration: one TOML file loaded into one frozen, validated object.

Built once at the edge (the daemon's start or a CLI command) and passed down as explicit
arguments; nothing else reads configuration files. A bad or missing field raises
:class:`protocol.errors.ConfigError` naming the file and the field. Relative paths in the
file are resolved against the file's own directory, so a network directory can be moved.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from pathlib import Path
from typing import Any

import tomli_w

from protocol import limits
from protocol.errors import ConfigError

NODE_ROLES = ("orderer", "peer")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclasses.dataclass(frozen=True, slots=True)
class ListenConfig:
    """Where the node listens: p2p (mutual TLS, other members) and api (clients)."""

    host: str
    p2p_port: int
    api_port: int


@dataclasses.dataclass(frozen=True, slots=True)
class TlsConfig:
    """The node's certificate and key (server and client auth) and the network's root CA."""

    cert: Path
    key: Path
    root_ca: Path
    key_passphrase_env: str  # "" when the key file is not encrypted


@dataclasses.dataclass(frozen=True, slots=True)
class RaftTuning:
    """When the node compacts its Raft log into a snapshot (the optional [raft] table)."""

    # etcd snapshots every 10,000 applied entries (--snapshot-count 10000 before v3.6).
    snapshot_interval_entries: int = 10_000
    # ... and keeps 5,000 entries behind the snapshot so a follower that is only a little
    # behind catches up from the log rather than from a snapshot; our entries are blocks,
    # so fewer suffice.
    snapshot_catchup_entries: int = 1_000


_RAFT_DEFAULTS = RaftTuning()


@dataclasses.dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything one node needs to start."""

    path: Path  # the file this was loaded from
    node_id: str
    org_id: str
    role: str
    network_id: str
    data_dir: Path
    genesis: Path
    listen: ListenConfig
    tls: TlsConfig
    log_file: Path
    log_level: str
    raft: RaftTuning = RaftTuning()

    def key_passphrase(self) -> bytes | None:
        """The node key's passphrase from the environment, or None if the key is not encrypted."""
        env = self.tls.key_passphrase_env
        if not env:
            return None
        value = os.environ.get(env)
        if value is None:
            raise ConfigError(f"{self.path}: tls.key_passphrase_env names {env}, which is not set")
        return value.encode()


class _Reader:
    """Reads typed fields out of a parsed TOML table, naming the field on any error."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    def _get(self, dotted: str) -> Any:
        node: Any = self.data
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(f"{self.path}: missing field {dotted}")
            node = node[part]
        return node

    def string(
        self, dotted: str, *, allow_empty: bool = False, choices: tuple[str, ...] = ()
    ) -> str:
        value = self._get(dotted)
        if not isinstance(value, str):
            raise ConfigError(f"{self.path}: field {dotted} must be a string")
        if not value and not allow_empty:
            raise ConfigError(f"{self.path}: field {dotted} must not be empty")
        if len(value) > limits.HOST_CHARS_MAX:
            raise ConfigError(f"{self.path}: field {dotted} is too long")
        if choices and value not in choices:
            raise ConfigError(f"{self.path}: field {dotted} must be one of {', '.join(choices)}")
        return value

    def identifier(self, dotted: str) -> str:
        value = self.string(dotted)
        if len(value) > limits.ID_CHARS_MAX or not all(c.isalnum() or c in "-_." for c in value):
            raise ConfigError(
                f"{self.path}: field {dotted} must be at most {limits.ID_CHARS_MAX} letters, "
                "digits, '-', '_' or '.'"
            )
        return value

    def port(self, dotted: str) -> int:
        value = self._get(dotted)
        if type(value) is not int or not 1 <= value <= 65535:
            raise ConfigError(f"{self.path}: field {dotted} must be a port number 1-65535")
        return value

    def optional_count(self, dotted: str, default: int, minimum: int) -> int:
        try:
            value = self._get(dotted)
        except ConfigError:
            return default
        if type(value) is not int or value < minimum:
            raise ConfigError(f"{self.path}: field {dotted} must be an integer >= {minimum}")
        return value

    def path_field(self, dotted: str) -> Path:
        value = Path(self.string(dotted))
        return value if value.is_absolute() else (self.path.parent / value)


def load_node_config(path: str | os.PathLike[str]) -> NodeConfig:
    """Load and validate one node's TOML configuration."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such configuration file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{file}: cannot read ({e.__class__.__name__})") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{file}: not valid TOML ({e})") from None
    r = _Reader(file.resolve(), data)
    listen = ListenConfig(
        host=r.string("listen.host"),
        p2p_port=r.port("listen.p2p_port"),
        api_port=r.port("listen.api_port"),
    )
    if listen.p2p_port == listen.api_port:
        raise ConfigError(f"{file}: field listen.api_port must differ from listen.p2p_port")
    return NodeConfig(
        path=r.path,
        node_id=r.identifier("node.id"),
        org_id=r.identifier("node.org"),
        role=r.string("node.role", choices=NODE_ROLES),
        network_id=r.identifier("node.network_id"),
        data_dir=r.path_field("node.data_dir"),
        genesis=r.path_field("node.genesis"),
        listen=listen,
        tls=TlsConfig(
            cert=r.path_field("tls.cert"),
            key=r.path_field("tls.key"),
            root_ca=r.path_field("tls.root_ca"),
            key_passphrase_env=r.string("tls.key_passphrase_env", allow_empty=True),
        ),
        log_file=r.path_field("log.file"),
        log_level=r.string("log.level", choices=LOG_LEVELS),
        raft=RaftTuning(
            snapshot_interval_entries=r.optional_count(
                "raft.snapshot_interval_entries", _RAFT_DEFAULTS.snapshot_interval_entries, 1
            ),
            snapshot_catchup_entries=r.optional_count(
                "raft.snapshot_catchup_entries", _RAFT_DEFAULTS.snapshot_catchup_entries, 0
            ),
        ),
    )


def node_config_toml(
    *,
    node_id: str,
    org_id: str,
    role: str,
    network_id: str,
    listen: ListenConfig,
    key_passphrase_env: str = "",
    genesis: str = "../../genesis.block",
    root_ca: str = "../../ca/root.pem",
) -> str:
    """The TOML text of a node configuration laid out as `network init` lays out a node dir."""
    doc = {
        "node": {
            "id": node_id,
            "org": org_id,
            "role": role,
            "network_id": network_id,
            "data_dir": "data",
            "genesis": genesis,
        },
        "listen": {"host": listen.host, "p2p_port": listen.p2p_port, "api_port": listen.api_port},
        "tls": {
            "cert": "node.pem",
            "key": "node.key",
            "root_ca": root_ca,
            "key_passphrase_env": key_passphrase_env,
        },
        "log": {"file": "node.log", "level": "info"},
    }
    return tomli_w.dumps(doc)
