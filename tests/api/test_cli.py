"""The maintenance commands as cron runs them: real processes on the real databases."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import socket
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, text

from tests.api.test_lifecycle import quote_in
from tests.conftest import World, cli_error
from tests.test_config import run_cli
from tripquote.cli import _links_to, _unavailable_hint
from tripquote.config import Settings
from tripquote.db import migrate
from tripquote.db.tables import idempotency_keys
from tripquote.quotes.lifecycle import QuoteStatus


async def _cli(url: str, *args: str) -> dict[str, Any]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tripquote.cli", *args, "--json",
        env={"TRIPQUOTE_DATABASE_URL": url, "TRIPQUOTE_LOG_LEVEL": "WARNING"},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


async def test_two_concurrent_expire_runs_expire_each_quote_once(world: World, db_url: str) -> None:
    actor = await world.actor()
    due = [(await quote_in(world, actor, QuoteStatus.EXPIRED))[0] for _ in range(6)]
    fresh, _ = await quote_in(world, actor, QuoteStatus.SENT)
    # The command runs on the system's clock, the app on the tests' pinned one: the quote
    # not due must stay in the command's future too.
    async with world.engine.begin() as conn:
        await conn.execute(
            text("UPDATE quotes SET expires_at = :at WHERE id = :id"),
            {"at": datetime.now(UTC) + timedelta(days=1), "id": fresh},
        )
    runs = await asyncio.gather(
        _cli(db_url, "expire", "--batch-size", "2"), _cli(db_url, "expire", "--batch-size", "2")
    )
    placeholders = ", ".join(f":q{i}" for i in range(len(due)))
    params = {f"q{i}": quote_id for i, quote_id in enumerate(due)}
    expired = await world.count(
        "quote_revisions", f"operation = 'EXPIRE' AND quote_id IN ({placeholders})", **params
    )
    assert expired == len(due)  # exactly once each, whichever run wrote it
    assert sum(run["expired"] for run in runs) == len(due)
    assert (
        await world.count("quote_revisions", "quote_id = :q AND operation = 'EXPIRE'", q=fresh) == 0
    )


async def test_idempotency_purge_removes_only_expired_keys(world: World, db_url: str) -> None:
    actor = await world.actor()
    now = datetime.now(UTC)
    async with world.engine.begin() as conn:
        for key, expires in (("old", now - timedelta(hours=1)), ("new", now + timedelta(hours=1))):
            await conn.execute(
                insert(idempotency_keys).values(
                    agent_id=actor.agent_id, key=key, request_hash="0" * 64, state="done",
                    created_at=now - timedelta(hours=25), expires_at=expires,
                    response_status=201, response_body="{}", response_headers={},
                )
            )  # fmt: skip
    result = await _cli(db_url, "idempotency", "purge")
    assert result["purged"] >= 1
    left = await world.count("idempotency_keys", "agent_id = :a", a=actor.agent_id)
    assert left == 1


def test_a_database_it_cannot_reach_is_one_json_line_not_a_traceback() -> None:
    commands = [("db", "current"), ("db", "upgrade"), ("agencies", "create", "X")]
    commands += [("expire",), ("idempotency", "purge")]  # the cron jobs: the transaction runner
    commands += [("token", "--agent", "a1")]
    closed_port = "postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/x"
    no_socket = "postgresql+asyncpg://postgres:hunter2@/x?host=/nonexistent/folder"
    for url, command in itertools.product((closed_port, no_socket), commands):
        line = cli_error(url, *command)
        assert line["event"] == "database_unavailable", command
        assert "hunter2" not in line["_stderr"]
        for other in line["_stderr"].strip().splitlines():
            json.loads(other)  # every line it wrote is one JSON object


UNUSABLE_URLS = {
    "sqlite": "sqlite+aiosqlite:///./tripquote.db",  # SQLite is gone: told so at start-up
    "garbage": "not a url",
    "unknown-driver": "mysql+aiomysql://postgres:hunter2@127.0.0.1/x",
    "psycopg2": "postgresql://postgres:hunter2@127.0.0.1/x",  # its driver is not installed
    "port-not-a-number": "postgresql+asyncpg://postgres:hunter2@127.0.0.1:notaport/x",
    "port-out-of-range": "postgresql+asyncpg://postgres:hunter2@127.0.0.1:99999/x",
    "unknown-query": "postgresql+asyncpg://postgres:hunter2@127.0.0.1/x?sslmode=require",
    "unreadable-query": (
        "postgresql+asyncpg://postgres:hunter2@127.0.0.1/x?prepared_statement_cache_size=many"
    ),
}
URL_COMMANDS = [
    ("db", "current"), ("db", "upgrade"), ("serve",), ("expire",), ("token", "--agent", "a1"),
    ("agents", "create", "--agency", "g1", "--email", "a@b.example"), ("idempotency", "purge"),
]  # fmt: skip


@pytest.mark.parametrize("url", UNUSABLE_URLS.values(), ids=UNUSABLE_URLS.keys())
@pytest.mark.parametrize("command", URL_COMMANDS, ids=" ".join)
def test_a_database_url_it_cannot_use_is_a_configuration_error(
    url: str, command: tuple[str, ...]
) -> None:
    status, output = run_cli(*command, env={"TRIPQUOTE_DATABASE_URL": url})
    assert status == 2, output
    (line,) = output.strip().splitlines()  # no traceback, nothing else
    event = json.loads(line)
    assert event["event"] == "configuration_error"
    assert event["error"].startswith("TRIPQUOTE_DATABASE_URL")
    assert "hunter2" not in line


@pytest.mark.parametrize(
    ("command", "host"),
    [
        *[("serve", host) for host in ("0.0.0.0", "::", "192.0.2.10", "quotes.example")],
        # demo checks first that it can listen there: addresses of this machine
        *[("demo", host) for host in ("0.0.0.0", "::")],
    ],
)
def test_the_published_development_secret_serves_on_loopback_only(host: str, command: str) -> None:
    # Before: `serve --host 0.0.0.0` with no secret set served tokens anyone could sign; a
    # demo wrote its data, minted a token and sent a quote before refusing.
    unreachable = "postgresql+asyncpg://postgres@127.0.0.1:1/x"  # refused before connecting
    status, output = run_cli(
        command, "--host", host, "--port", "1", env={"TRIPQUOTE_DATABASE_URL": unreachable}
    )
    assert status == 2, output
    (line,) = output.strip().splitlines()
    event = json.loads(line)
    assert event["event"] == "configuration_error"
    assert event["error"].startswith("TRIPQUOTE_JWT_SECRET is the published development secret")


def test_a_statement_the_database_refuses_is_told_as_such_not_as_an_outage(
    empty_db: str,
) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from tests.conftest import make_settings
    from tripquote.db import migrate

    migrate.upgrade(make_settings(empty_db))

    async def break_schema() -> None:  # a column the command writes is not there
        engine = create_async_engine(empty_db)
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE agencies RENAME COLUMN timezone TO tz"))
        await engine.dispose()

    asyncio.run(break_schema())
    line = cli_error(empty_db, "agencies", "create", "X")
    assert line["event"] == "database_error" and line["sqlstate"] == "42703"  # undefined_column
    assert "timezone" in line["error"] and "TRIPQUOTE_DATABASE_URL" not in line["hint"]


@pytest.mark.parametrize(
    "command", [("expire",), ("idempotency", "purge"), ("agencies", "create", "X")]
)
def test_a_database_not_migrated_says_to_migrate_it(empty_db: str, command: tuple[str]) -> None:
    line = cli_error(empty_db, *command)
    assert line["event"] == "database_not_migrated"
    assert line["hint"] == "Run: tripquote db upgrade"
    for other in line["_stderr"].strip().splitlines():
        json.loads(other)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung database)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


@pytest.mark.parametrize("command", [("db", "upgrade"), ("agencies", "create", "X"), ("expire",)])
def test_a_database_that_never_answers_is_one_json_line_in_bounded_time(
    silent_server: int, command: tuple[str, ...]
) -> None:
    # Connection set-up is bounded (10 s), so the command ends instead of hanging.
    line = cli_error(f"postgresql+asyncpg://postgres@127.0.0.1:{silent_server}/x", *command)
    assert line["event"] == "database_unavailable"
    assert "did not answer in time" in line["error"]
    assert len(line["_stderr"].strip().splitlines()) == 1


async def test_agents_create_refuses_an_email_taken_in_another_case(world: World) -> None:
    agency = await world.agency()
    local = f"casey.{uuid.uuid4().hex[:8]}"
    env = {"TRIPQUOTE_DATABASE_URL": str(world.settings.database_url)}
    create = ("agents", "create", "--agency", agency, "--json", "--email")
    status, output = await asyncio.to_thread(run_cli, *create, f"{local}@demo.example", env=env)
    assert status == 0, output
    variant = f"{local.capitalize()}@Demo.Example"
    status, output = await asyncio.to_thread(run_cli, *create, variant, env=env)
    assert status == 1, output
    (line,) = output.strip().splitlines()
    assert json.loads(line)["event"] == "agent_refused"
    assert await world.count("agents", "lower(email) = :e", e=f"{local}@demo.example") == 1


OUT_OF_RANGE = [
    ("serve", "--port", "99999"), ("serve", "--port", "0"), ("demo", "--port", "65536"),
    ("serve", "--workers", "0"), ("serve", "--backlog", "0"), ("serve", "--backlog", "65536"),
]  # fmt: skip
MISSING_COMMAND = [("db",), ("agencies",), ("agents",), ("idempotency",), ("ops",)]


@pytest.mark.parametrize("command", OUT_OF_RANGE + MISSING_COMMAND, ids=" ".join)
def test_a_usage_error_is_one_json_line(command: tuple[str, ...], tmp_path: Path) -> None:
    status, output = run_cli(*command, env={}, cwd=tmp_path)  # were it to start, not here
    assert status == 2, output
    (line,) = output.strip().splitlines()  # no help box, nothing started
    event = json.loads(line)
    assert event["event"] == "usage_error"
    assert f" {command[0]} [OPTIONS]" in event["usage"]


def test_db_current_says_a_database_is_not_migrated(empty_db: str) -> None:
    env = {"TRIPQUOTE_DATABASE_URL": empty_db}
    status, output = run_cli("db", "current", "--json", env=env)
    assert status == 0, output
    assert json.loads(output) == {
        "revision": None, "head": False, "hint": "Run: tripquote db upgrade"
    }  # fmt: skip
    assert run_cli("db", "current", env=env) == (0, "not migrated (run: tripquote db upgrade)\n")


async def test_concurrent_upgrades_of_a_new_database_migrate_it_once(empty_db: str) -> None:
    env = {"TRIPQUOTE_DATABASE_URL": empty_db}
    runs = await asyncio.gather(
        *(asyncio.to_thread(run_cli, "db", "upgrade", env=env) for _ in range(3))
    )
    for status, output in runs:
        assert status == 0, output
    head, _ = migrate.revisions()
    status, output = run_cli("db", "current", "--json", env=env)
    assert json.loads(output) == {"revision": head, "head": True}, output
    assert run_cli("db", "current", env=env) == (0, f"{head} (head)\n")


def test_an_unavailable_database_hint_names_what_to_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no .env
    for name in [k for k in os.environ if k.startswith("TRIPQUOTE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("TRIPQUOTE_EMBEDDED_DATA_DIR", "data/pg")
    folder = tmp_path / "data" / "pg"
    assert _unavailable_hint() == (
        f"TRIPQUOTE_DATABASE_URL is unset: check the embedded PostgreSQL in {folder} "
        f"(its log: {folder / 'log'}), or set TRIPQUOTE_DATABASE_URL."
    )
    monkeypatch.setenv("TRIPQUOTE_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:1/x")
    assert _unavailable_hint().startswith("Check TRIPQUOTE_DATABASE_URL")


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [
        ("127.0.0.1", 8101, "http://127.0.0.1:8101"),
        ("0.0.0.0", 8102, "http://127.0.0.1:8102"),
        ("::1", 8103, "http://[::1]:8103"),
        ("quotes.local", 80, "http://quotes.local:80"),
    ],
)
def test_client_links_follow_the_address_served_unless_set(
    monkeypatch: pytest.MonkeyPatch, host: str, port: int, expected: str
) -> None:
    # `serve --port 8101` without TRIPQUOTE_PUBLIC_BASE_URL: links point at 8101, not 8000.
    monkeypatch.delenv("TRIPQUOTE_PUBLIC_BASE_URL", raising=False)
    linked = _links_to(Settings(jwt_secret="x" * 32), host=host, port=port)
    assert linked.public_base_url == expected
    assert os.environ["TRIPQUOTE_PUBLIC_BASE_URL"] == expected  # the workers read it
    chosen = Settings(jwt_secret="x" * 32, public_base_url="https://quotes.example.com")
    assert _links_to(chosen, host=host, port=port).public_base_url == "https://quotes.example.com"


def test_a_busy_metrics_port_is_said_so_not_blamed_on_the_database() -> None:
    # Before: {"event": "database_unavailable", "hint": "Check TRIPQUOTE_DATABASE_URL ..."}.
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, output = run_cli(
            "webhooks", "run", "--metrics-port", str(port),
            env={"TRIPQUOTE_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/x"},
        )  # fmt: skip
    assert status == 1, output
    event = json.loads(output.strip().splitlines()[-1])
    assert event["event"] == "metrics_port_unavailable", event
    assert str(port) in event["error"]
