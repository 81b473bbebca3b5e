"""The maintenance commands as cron runs them: real processes on the real databases."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import insert

from tests.api.test_lifecycle import quote_in
from tests.conftest import World, cli_error
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
    url = "postgresql+asyncpg://postgres:hunter2@127.0.0.1:1/x"
    commands = [("db", "current"), ("db", "upgrade"), ("agencies", "create", "X")]
    commands += [("expire",), ("idempotency", "purge")]  # the cron jobs: the transaction runner
    for command in commands:
        line = cli_error(url, *command)
        assert line["event"] == "database_unavailable", command
        assert "hunter2" not in line["_stderr"]
        for other in line["_stderr"].strip().splitlines():
            json.loads(other)  # every line it wrote is one JSON object


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:///./tripquote.db",  # SQLite is gone: told so at start-up
        "not a url",
        "postgresql+asyncpg://postgres:hunter2@127.0.0.1:notaport/x",
        "postgresql://postgres:hunter2@127.0.0.1/x",  # psycopg2's scheme: not installed
    ],
)
def test_a_database_url_it_cannot_use_is_a_configuration_error(url: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tripquote.cli", "db", "current"],
        env={**os.environ, "TRIPQUOTE_DATABASE_URL": url},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.strip().splitlines()
    event = json.loads(line)
    assert event["event"] == "configuration_error"
    assert "must be a PostgreSQL URL" in event["error"]
    assert "hunter2" not in line


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
