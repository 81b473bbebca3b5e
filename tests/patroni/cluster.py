"""A two-node Patroni cluster of the tests' own: Debian's etcd (v3 API) and two Patroni
(PyPI) nodes running PostgreSQL 15, on free loopback ports, data in a temporary folder,
``synchronous_mode: true``. Every process is started in its own session and stopped by its
PID (and the postmaster by the PID in its ``postmaster.pid``); ``stop_all`` on exit.

Patroni and PostgreSQL run as the clusters' OS user (PostgreSQL refuses root). When that user
cannot run the virtualenv's interpreter (a pyenv Python under /root), Patroni runs on the
system's Python of the same version with the virtualenv's packages on ``PYTHONPATH``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.servers import PG_BIN, _cluster_user, free_port

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


def _interpreter(user: str) -> tuple[str, dict[str, str]]:
    """A Python that ``user`` may run with Patroni importable, and its extra environment."""
    if os.geteuid() != 0:
        return sys.executable, {}
    probe = ["runuser", "-u", user, "--", sys.executable, "-c", "import patroni"]
    if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
        return sys.executable, {}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/bin:/usr/local/bin") or f"/usr/bin/{version}"
    return system, {"PYTHONPATH": sysconfig.get_paths()["purelib"]}


@dataclass
class Process:
    """A process started in its own session, its output in ``log``."""

    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, grace: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.kill(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=grace)
        self.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=5)

    def tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""


def _start(name: str, argv: list[str], log: Path, env: dict[str, str] | None = None) -> Process:
    with log.open("ab") as out:
        popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )
    return Process(name, popen, log)


@dataclass
class Node:
    """One Patroni node: its PostgreSQL and REST ports, data folder and process."""

    name: str
    root: Path
    pg_port: int = field(default_factory=free_port)
    rest_port: int = field(default_factory=free_port)
    process: Process | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def rest(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.pg_port}"

    def postmaster_pid(self) -> int | None:
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        return None

    def kill(self) -> None:
        """The node is lost: Patroni and its PostgreSQL killed at once (SIGKILL)."""
        pid = self.postmaster_pid()
        if self.process is not None:
            self.process.kill()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Patroni stopped (it stops PostgreSQL), then whatever is left killed by PID."""
        if self.process is not None:
            self.process.stop()
        pid = self.postmaster_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@dataclass
class PatroniCluster:
    """etcd and two Patroni nodes; ``start`` waits for a leader and a synchronous standby."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tripquote-patroni-")))
    scope: str = field(default_factory=lambda: f"tq{uuid.uuid4().hex[:8]}")
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    nodes: list[Node] = field(default_factory=list)
    etcd: Process | None = None

    def __post_init__(self) -> None:
        self.nodes = [Node(f"node{i}", self.root / f"node{i}") for i in range(2)]

    @property
    def url_hosts(self) -> str:
        """The nodes as ``?host=…&host=…`` (tripquote's multi-host URL form)."""
        return "&".join(f"host=127.0.0.1:{node.pg_port}" for node in self.nodes)

    def start_etcd(self) -> None:
        data = self.root / "etcd"
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self.etcd = _start(
            "etcd",
            [ETCD, "--name", "etcd0", "--data-dir", str(data),
             "--listen-client-urls", client, "--advertise-client-urls", client,
             "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
             "--initial-cluster", f"etcd0={peer}", "--log-level", "warn"],
            self.root / "etcd.log",
        )  # fmt: skip

    def _config(self, node: Node) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "namespace": "/tripquote-tests/",
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {
                "listen": f"127.0.0.1:{node.rest_port}",
                "connect_address": f"127.0.0.1:{node.rest_port}",
            },
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd_port}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": 20,
                    "loop_wait": 1,
                    "retry_timeout": 5,
                    "maximum_lag_on_failover": 16 * 1024 * 1024,
                    "synchronous_mode": True,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "parameters": {
                            "max_connections": 100,
                            "wal_log_hints": "on",
                            "wal_keep_size": "128MB",
                            "fsync": "off",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, {"auth": "trust"}],
                "pg_hba": [
                    "local all all trust",
                    "host all all 127.0.0.1/32 trust",
                    "host replication all 127.0.0.1/32 trust",
                ],
            },
            "postgresql": {
                "listen": f"127.0.0.1:{node.pg_port}",
                "connect_address": f"127.0.0.1:{node.pg_port}",
                "data_dir": str(node.data_dir),
                "bin_dir": str(PG_BIN),
                "pgpass": str(node.root / "pgpass"),
                "authentication": {
                    "superuser": {"username": "postgres", "password": "postgres"},
                    "replication": {"username": "replicator", "password": "replicator"},
                    "rewind": {"username": "postgres", "password": "postgres"},
                },
                "parameters": {"unix_socket_directories": str(node.root)},
            },
            "tags": {},
        }

    def start_node(self, node: Node) -> None:
        node.root.mkdir(parents=True, exist_ok=True)
        config = node.root / "patroni.yml"
        config.write_text(yaml.safe_dump(self._config(node)))
        argv = [sys.executable, "-m", "patroni", str(config)]
        env = dict(os.environ)
        if os.geteuid() == 0:
            user = _cluster_user()
            for path in (self.root, node.root, config):
                shutil.chown(path, user, user)
            python, extra = _interpreter(user)
            env.update(extra)
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups",
                    python, "-m", "patroni", str(config)]  # fmt: skip
        node.process = _start(node.name, argv, node.root / "patroni.log", env)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = _cluster_user()
            shutil.chown(self.root, user, user)
        self.start_etcd()
        self.start_node(self.nodes[0])
        self.wait(lambda: self.role(self.nodes[0]) == "primary", 90, "node0 leading")
        self.start_node(self.nodes[1])
        self.wait(lambda: self.sync_standby() is not None, 90, "a synchronous standby")

    def patroni(self, node: Node) -> dict[str, Any] | None:
        """The node's ``GET /patroni`` (None when it does not answer)."""
        with contextlib.suppress(httpx.HTTPError, ValueError):
            response = httpx.get(node.rest + "/patroni", timeout=2)
            return dict(response.json())
        return None

    def role(self, node: Node) -> str | None:
        """``primary`` (leading, writable), ``replica``, or None."""
        state = self.patroni(node)
        if state is None or state.get("state") != "running":
            return None
        return str(state.get("role"))

    def leader(self) -> Node | None:
        for node in self.nodes:
            if self.role(node) == "primary":
                return node
        return None

    def sync_standby(self) -> Node | None:
        """The node that is the synchronous standby and streaming (``GET /sync``: 200)."""
        for node in self.nodes:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(node.rest + "/sync", timeout=2).status_code == 200:
                    return node
        return None

    def switchover(self, leader: Node, candidate: Node) -> None:
        response = httpx.post(
            leader.rest + "/switchover",
            json={"leader": leader.name, "candidate": candidate.name},
            timeout=30,
        )
        assert response.status_code == 200, response.text

    def wait(self, condition: Any, within: float, what: str) -> None:
        deadline = time.monotonic() + within
        while not condition():
            if time.monotonic() > deadline:
                tails = "\n".join(
                    f"--- {n.name}\n{n.process.tail() if n.process else ''}" for n in self.nodes
                )
                raise AssertionError(f"timed out waiting for {what}\n{tails}")
            time.sleep(0.2)

    def destroy(self) -> None:
        """Stop every node and etcd by PID, then delete the folder."""
        for node in self.nodes:
            node.stop()
        if self.etcd is not None:
            self.etcd.stop()
        shutil.rmtree(self.root, ignore_errors=True)
