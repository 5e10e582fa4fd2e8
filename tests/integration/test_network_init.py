"""`medledger network init` and `medledger chain show|verify`, run as real commands.

Proves: init writes a complete local network (root CA, a CA per org, node and admin
certificates that `openssl verify` accepts for TLS server and client use, 0600 keys, one
config per node, the genesis block committed in every node's LevelDB); a second init into
the same directory refuses without --force; encrypted keys need their passphrase; verify
accepts the fresh chain, and names the bad block when a stored block is corrupted or its
signature or link is forged.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path

import pytest

from identity.keystore import read_signing_key
from node.config import load_node_config
from node.store import open_node_store
from protocol.block import Block, BlockHeader, BlockMetadata, make_header
from protocol.codec import decode, encode
from protocol.errors import ConfigError
from storage.leveldb import LevelDBKV
from tests.integration.cluster import medledger

NODES = ["ministry", "northgate", "riverside", "stmarys", "westfield"]


@pytest.fixture(scope="module")
def network(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("net") / "local"
    result = medledger("network", "init", "--profile", "local", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out


def copy_network(network: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(network, target)
    return target


def test_init_writes_every_part(network: Path) -> None:
    assert (network / "ca" / "root.pem").is_file()
    assert (network / "genesis.block").is_file()
    listed = tomllib.loads((network / "network.toml").read_text())
    assert [n["id"] for n in listed["nodes"]] == NODES
    ports = [p for n in listed["nodes"] for p in (n["p2p_port"], n["api_port"])]
    assert len(set(ports)) == len(ports)
    for node in NODES:
        config = load_node_config(network / "nodes" / node / "node.toml")
        assert config.node_id == node
        assert config.tls.cert.is_file() and config.tls.key.is_file()
        with open_node_store(config.data_dir) as store:
            assert store.blocks.height == 1
    for org in NODES:
        assert (network / "orgs" / org / "ca.pem").is_file()
        assert (network / "orgs" / org / "admin" / "admin.pem").is_file()


def test_genesis_pins_the_builtin_contracts_and_every_node_can_run_them(network: Path) -> None:
    from chaincode.builtin import builtin_pins, node_registry
    from node.genesis import genesis_envelope

    genesis = decode((network / "genesis.block").read_bytes(), Block)
    config = genesis_envelope(genesis).update.config
    assert [pin.name for pin in config.contracts] == ["registry"]
    assert config.contracts == builtin_pins()
    registry = node_registry()
    assert all(registry.pin_problem(pin) is None for pin in config.contracts)


def test_private_keys_are_0600(network: Path) -> None:
    keys = list(network.rglob("*.key"))
    assert len(keys) == 1 + 3 * len(NODES)  # root, and per org: CA, admin, node
    for key in keys:
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl binary missing")
@pytest.mark.parametrize("purpose", ["sslserver", "sslclient"])
def test_openssl_accepts_node_certificates(network: Path, purpose: str) -> None:
    for node in NODES:
        result = subprocess.run(
            [
                "openssl",
                "verify",
                "-purpose",
                purpose,
                "-CAfile",
                str(network / "ca" / "root.pem"),
                "-untrusted",
                str(network / "orgs" / node / "ca.pem"),
                str(network / "nodes" / node / "node.pem"),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert result.returncode == 0 and result.stdout.strip().endswith("OK"), (
            result.stdout + result.stderr
        )


def test_second_init_refuses_without_force(network: Path, tmp_path: Path) -> None:
    target = copy_network(network, tmp_path)
    before = (target / "genesis.block").read_bytes()
    result = medledger("network", "init", "--out", str(target))
    assert result.returncode == 2
    assert "--force" in result.stderr
    assert (target / "genesis.block").read_bytes() == before
    forced = medledger("network", "init", "--out", str(target), "--force")
    assert forced.returncode == 0, forced.stderr
    assert (target / "genesis.block").read_bytes() != before


def test_force_never_deletes_a_foreign_directory(tmp_path: Path) -> None:
    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.txt").write_text("precious")
    result = medledger("network", "init", "--out", str(foreign), "--force")
    assert result.returncode == 2
    assert "refusing" in result.stderr
    assert (foreign / "thesis.txt").read_text() == "precious"


def test_encrypted_keys_need_the_passphrase(tmp_path: Path) -> None:
    out = tmp_path / "enc"
    env = {"ML_TEST_PASS": "correct horse"}
    result = medledger(
        "network", "init", "--out", str(out), "--passphrase-env", "ML_TEST_PASS", env=env
    )
    assert result.returncode == 0, result.stderr
    key_file = out / "nodes" / "northgate" / "node.key"
    assert b"ENCRYPTED" in key_file.read_bytes()
    read_signing_key(key_file, b"correct horse")
    with pytest.raises(ConfigError):
        read_signing_key(key_file, b"wrong")
    with pytest.raises(ConfigError):
        read_signing_key(key_file, None)
    config = load_node_config(out / "nodes" / "northgate" / "node.toml")
    assert config.tls.key_passphrase_env == "ML_TEST_PASS"
    missing = medledger(
        "network", "init", "--out", str(tmp_path / "x"), "--passphrase-env", "ML_UNSET_VAR"
    )
    assert missing.returncode == 2 and "ML_UNSET_VAR" in missing.stderr


def test_verify_accepts_the_fresh_network(network: Path) -> None:
    result = medledger("chain", "verify", "--network", str(network), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and report["identical"]
    assert [n["node"] for n in report["nodes"]] == NODES
    assert {n["tip_hash"] for n in report["nodes"]} == {report["nodes"][0]["tip_hash"]}


def test_show_lists_headers(network: Path) -> None:
    result = medledger("chain", "show", "--data", str(network / "nodes" / "riverside"), "--json")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["read_through"] is None  # nothing runs: straight from the database
    blocks = shown["blocks"]
    assert len(blocks) == 1 and blocks[0]["number"] == 0 and blocks[0]["tx_count"] == 1
    assert blocks[0]["signer"].startswith("ministry")
    table = medledger("chain", "show", "--network", str(network))
    assert table.returncode == 0 and "BLOCK" in table.stdout


def _append_block(data_dir: Path, network: Path, mutate: str, later_ms: int = 1) -> None:
    """Append a block 1 signed by the ministry node, then damage it as *mutate* says."""
    key = read_signing_key(network / "nodes" / "ministry" / "node.key")
    with open_node_store(data_dir) as store:
        genesis = store.blocks.get(0)
        assert genesis is not None
        txs = (genesis.transactions[0],)
        header = make_header(1, genesis.hash(), txs, genesis.header.timestamp_ms + later_ms)
        meta = BlockMetadata(
            signer=genesis.metadata.signer,
            signature=key.sign(encode(header)),
            validation_codes=b"\x00",
        )
        if mutate == "signature":
            meta = BlockMetadata(
                signer=meta.signer, signature=key.sign(b"other bytes"), validation_codes=b"\x00"
            )
        block = Block(header=header, transactions=txs, metadata=meta)
        store.blocks.append(block)
    if mutate == "bytes":  # flip one byte of the stored block behind the store's back
        raw = bytearray(block_bytes(data_dir, 1))
        raw[len(raw) // 2] ^= 0x01
        overwrite(data_dir, block_bytes(data_dir, 1), bytes(raw))
    if mutate == "data":  # re-cut the transactions under the signed header
        stored = decode(block_bytes(data_dir, 1), Block)
        forged = Block(
            header=stored.header, transactions=stored.transactions * 2, metadata=stored.metadata
        )
        overwrite(data_dir, block_bytes(data_dir, 1), encode(forged))


def block_bytes(data_dir: Path, number: int) -> bytes:
    with open_node_store(data_dir) as store:
        raw = store.blocks.get_raw(number)
    assert raw is not None
    return raw


def overwrite(data_dir: Path, old: bytes, new: bytes) -> None:
    """Replace the stored value *old* with *new* in the raw LevelDB, whatever its key."""
    kv = LevelDBKV(data_dir, create_if_missing=False)
    try:
        keys = [k for k, v in kv.iterate() if v == old]
        assert len(keys) == 1
        kv.put(keys[0], new, sync=True)
    finally:
        kv.close()


@pytest.mark.parametrize("mutate", ["none", "signature", "bytes", "data"])
def test_verify_names_the_first_bad_block(network: Path, tmp_path: Path, mutate: str) -> None:
    target = copy_network(network, tmp_path)
    node_dir = target / "nodes" / "stmarys"
    _append_block(node_dir / "data", target, mutate)
    result = medledger("chain", "verify", "--data", str(node_dir))
    if mutate == "none":
        assert result.returncode == 0, result.stdout
        assert "2 block(s) verified" in result.stdout
        return
    assert result.returncode == 1, result.stdout
    assert "BAD block 1" in result.stdout


def test_verify_tells_a_node_behind_from_diverging_nodes(network: Path, tmp_path: Path) -> None:
    target = copy_network(network, tmp_path)
    _append_block(target / "nodes" / "westfield" / "data", target, "none")
    behind = medledger("chain", "verify", "--network", str(target))
    assert behind.returncode == 0, behind.stdout
    assert "behind the longest: ministry by 1" in behind.stdout
    _append_block(target / "nodes" / "stmarys" / "data", target, "none", later_ms=2)
    diverged = medledger("chain", "verify", "--network", str(target), "--json")
    assert diverged.returncode == 1
    report = json.loads(diverged.stdout)
    assert report["diverged"] and not report["ok"]


def test_unknown_profile_and_missing_network_are_clear_errors(tmp_path: Path) -> None:
    bad = medledger("network", "init", "--profile", "galaxy", "--out", str(tmp_path / "n"))
    assert bad.returncode == 2 and "no profile 'galaxy'" in bad.stderr
    missing = medledger("chain", "verify", "--network", str(tmp_path / "nowhere"))
    assert missing.returncode == 2 and "no network here" in missing.stderr
    assert "Traceback" not in missing.stderr + bad.stderr


def test_genesis_header_is_signed_by_the_ministry_node(network: Path) -> None:
    block = decode((network / "genesis.block").read_bytes(), Block)
    assert isinstance(block.header, BlockHeader)
    key = read_signing_key(network / "nodes" / "ministry" / "node.key")
    key.public_key.verify(encode(block.header), block.metadata.signature)
