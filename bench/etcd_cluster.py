"""etcd for the benchmarks: Debian's etcd-server installed if missing, and a local cluster.

:func:`ensure_etcd` installs ``etcd-server`` and ``etcd-client`` with apt-get when ``etcd`` is
not on the PATH (we run as root on Debian). :class:`EtcdCluster` runs N members on 127.0.0.1
with distinct free ports and data directories under a directory the caller owns, default
durability (the WAL is fsynced on every commit) and warn-level logs, and stops exactly the
processes it started, by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

HOST = "127.0.0.1"
PACKAGES = ("etcd-server", "etcd-client")
HEALTH_WAIT_S = 30.0
STOP_GRACE_S = 10.0  # etcd flushes and closes its bbolt file well within this


def ensure_etcd(say: Callable[[str], None] = print) -> dict[str, str]:
    """Install etcd with apt-get if it is missing; returns the versions found."""
    if shutil.which("etcd") is None or shutil.which("etcdctl") is None:
        if os.geteuid() != 0:
            raise RuntimeError("etcd is not installed and we are not root to apt-get install it")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install = ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]
        say(f"installing {' '.join(PACKAGES)} with apt-get")
        done = subprocess.run(
            install, check=False, env=env, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            say("apt-get install failed; running apt-get update first")
            subprocess.run(
                ["apt-get", "update"],
                check=False,
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            done = subprocess.run(
                install, check=False, env=env, capture_output=True, text=True, timeout=600
            )
            if done.returncode != 0:
                raise RuntimeError(f"apt-get install {' '.join(PACKAGES)} failed:\n{done.stderr}")
    return {
        "etcd": _first_line(["etcd", "--version"]),
        "etcdctl": _first_line(["etcdctl", "version"]),
        "etcd-server (dpkg)": _dpkg_version("etcd-server"),
    }


def _first_line(command: list[str]) -> str:
    out = subprocess.run(command, check=False, capture_output=True, text=True, timeout=30).stdout
    return out.strip().splitlines()[0] if out.strip() else "?"


def _dpkg_version(package: str) -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Version}", package],
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    return done.stdout.strip() or "not installed"


def free_ports(count: int) -> list[int]:
    """*count* distinct ports free on HOST right now (all held open while choosing)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


class EtcdCluster:
    """A local etcd cluster of *members* processes that this object starts and stops."""

    def __init__(self, base_dir: Path, members: int = 3) -> None:
        self.base_dir = base_dir
        ports = free_ports(2 * members)
        self.names = [f"etcd{i}" for i in range(members)]
        self.client_ports = ports[:members]
        self.peer_ports = ports[members:]
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def client_endpoints(self) -> list[tuple[str, int]]:
        return [(HOST, port) for port in self.client_ports]

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def start(self) -> None:
        initial = ",".join(
            f"{name}=http://{HOST}:{port}"
            for name, port in zip(self.names, self.peer_ports, strict=True)
        )
        self.base_dir.mkdir(parents=True, exist_ok=True)
        for name, client, peer in zip(self.names, self.client_ports, self.peer_ports, strict=True):
            client_url, peer_url = f"http://{HOST}:{client}", f"http://{HOST}:{peer}"
            command = [
                "etcd",
                "--name", name,
                "--data-dir", str(self.base_dir / name),
                "--listen-client-urls", client_url,
                "--advertise-client-urls", client_url,
                "--listen-peer-urls", peer_url,
                "--initial-advertise-peer-urls", peer_url,
                "--initial-cluster", initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", f"bench-{os.getpid()}",
                "--logger", "zap",
                "--log-level", "warn",
            ]  # fmt: skip
            with open(self.base_dir / f"{name}.log", "ab") as out:
                self.procs.append(
                    subprocess.Popen(
                        command,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,  # a Ctrl-C reaches us, and we stop it cleanly
                    )
                )

    def wait_healthy(self, timeout_s: float = HEALTH_WAIT_S) -> None:
        """Until every member answers /health with "true" (the cluster has a leader)."""
        deadline = time.monotonic() + timeout_s
        problem = "no answer yet"
        while time.monotonic() < deadline:
            healthy = 0
            for proc, (host, port) in zip(self.procs, self.client_endpoints, strict=True):
                if proc.poll() is not None:
                    raise RuntimeError(f"etcd pid {proc.pid} exited; see {self.base_dir}/*.log")
                try:
                    with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as r:
                        doc = json.loads(r.read())
                    if doc.get("health") == "true":
                        healthy += 1
                    else:
                        problem = f"{port}: {doc}"
                except (OSError, ValueError) as e:
                    problem = f"{port}: {e}"
            if healthy == len(self.procs):
                return
            time.sleep(0.1)
        raise RuntimeError(f"etcd not healthy within {timeout_s:.0f} s ({problem})")

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM every member we started, SIGKILL any still alive after *grace_s*."""
        for proc in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.procs.clear()
