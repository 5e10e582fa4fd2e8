"""Node configuration and network profiles: good files load, every bad field is named.

Writes TOML files into tmp_path and loads them with the one loader the daemon and the CLI
use; each broken variant must raise ConfigError whose message names the offending field.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from node.config import ListenConfig, load_node_config, node_config_toml
from node.profile import choose_base_port, load_profile, ports_free
from protocol.errors import ConfigError

GOOD = node_config_toml(
    node_id="northgate",
    org_id="northgate",
    role="peer",
    network_id="medledger-local",
    listen=ListenConfig(host="127.0.0.1", p2p_port=21000, api_port=21001),
)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def test_written_config_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    config = load_node_config(write(tmp_path, GOOD))
    assert config.node_id == "northgate" and config.role == "peer"
    assert config.listen == ListenConfig("127.0.0.1", 21000, 21001)
    assert config.data_dir == tmp_path.resolve() / "data"
    assert config.tls.root_ca == (tmp_path.resolve() / "../../ca/root.pem")
    assert config.key_passphrase() is None


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ('id = "northgate"', 'id = ""', "node.id"),
        ('id = "northgate"', 'id = "no spaces allowed"', "node.id"),
        ('role = "peer"', 'role = "king"', "node.role"),
        ("p2p_port = 21000", "p2p_port = 70000", "listen.p2p_port"),
        ("p2p_port = 21000", 'p2p_port = "21000"', "listen.p2p_port"),
        ("api_port = 21001", "api_port = 21000", "listen.api_port"),
        ('level = "info"', 'level = "loud"', "log.level"),
        ('host = "127.0.0.1"\n', "", "listen.host"),
        ('cert = "node.pem"\n', "", "tls.cert"),
    ],
)
def test_bad_field_is_named(tmp_path: Path, old: str, new: str, field: str) -> None:
    assert old in GOOD
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        load_node_config(write(tmp_path, GOOD.replace(old, new)))


def test_missing_file_and_broken_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_node_config(tmp_path / "absent.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_node_config(write(tmp_path, "[node\nid="))


def test_passphrase_variable_must_be_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = GOOD.replace('key_passphrase_env = ""', 'key_passphrase_env = "ML_NODE_PASS"')
    config = load_node_config(write(tmp_path, text))
    monkeypatch.delenv("ML_NODE_PASS", raising=False)
    with pytest.raises(ConfigError, match="ML_NODE_PASS"):
        config.key_passphrase()
    monkeypatch.setenv("ML_NODE_PASS", "s3cret")
    assert config.key_passphrase() == b"s3cret"


def test_local_profile_has_a_ministry_and_four_hospitals() -> None:
    profile = load_profile("local")
    assert profile.ministry.org_id == "ministry"
    assert len(profile.hospitals) == 4
    assert profile.base_port is None


def test_profile_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="built-in profiles: local"):
        load_profile("nonexistent")
    text = (Path(__file__).parents[2] / "node" / "profiles" / "local.toml").read_text()
    bad = tmp_path / "p.toml"
    bad.write_text(text.replace("max_txs = 500", "max_txs = 0"))
    with pytest.raises(ConfigError, match=r"batch\.max_txs"):
        load_profile(str(bad))
    bad.write_text(text.replace('base_port = "auto"', "base_port = 80"))
    with pytest.raises(ConfigError, match="base_port"):
        load_profile(str(bad))


def test_auto_ports_are_free_and_differ_by_directory() -> None:
    a = choose_base_port("127.0.0.1", 5, "/tmp/network-a")
    b = choose_base_port("127.0.0.1", 5, "/tmp/network-b")
    assert a != b
    assert ports_free("127.0.0.1", range(a, a + 10))
    assert choose_base_port("127.0.0.1", 5, "/tmp/network-a") == a


def test_raft_tuning_defaults_and_overrides(tmp_path: Path) -> None:
    config = load_node_config(write(tmp_path, GOOD))
    assert config.raft.snapshot_interval_entries == 10_000
    assert config.raft.snapshot_catchup_entries == 1_000
    tuned = GOOD + "\n[raft]\nsnapshot_interval_entries = 20\nsnapshot_catchup_entries = 0\n"
    config = load_node_config(write(tmp_path, tuned))
    assert (config.raft.snapshot_interval_entries, config.raft.snapshot_catchup_entries) == (20, 0)
    with pytest.raises(ConfigError, match=r"raft\.snapshot_interval_entries"):
        load_node_config(write(tmp_path, GOOD + "\n[raft]\nsnapshot_interval_entries = 0\n"))
