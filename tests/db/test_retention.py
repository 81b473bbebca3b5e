"""Retention on a real PostgreSQL: operation records partitioned by day (migration 0008, rows
kept), ``tripquote maintenance`` making partitions ahead and dropping old ones whole, one run
at a time (an advisory lock), and expired idempotency keys purged in batches."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event

from tests.conftest import _run_admin, database_url, make_settings
from tripquote.cli import _maintenance_text
from tripquote.db import migrate
from tripquote.db.engine import create_engine
from tripquote.db.retention import MAINTENANCE_LOCK, partition_name, run_maintenance
from tripquote.db.transaction import TransactionRunner
from tripquote.idempotency import IdempotencyStore
from tripquote.observability.operations import Observer

pytestmark = pytest.mark.postgres


@pytest.fixture
def fresh_url() -> Iterator[str]:
    """A database of this test's own, not yet migrated (its partitions are the test's)."""
    name = f"tripquote_retention_{uuid.uuid4().hex[:8]}"
    asyncio.run(_run_admin(f'CREATE DATABASE "{name}"'))
    yield database_url(name)
    asyncio.run(_run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


async def _fetch(url: str, sql: str, *args: Any) -> list[Any]:
    conn = await asyncpg.connect(_dsn(url))
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


RECORD = """INSERT INTO operation_records (recorded_at, correlation_id, operation, outcome,
            duration_ms, pid) VALUES ($1, $2, 'quote.update', 'success', 1.5, 1) RETURNING id"""

PARTITIONS = """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                 WHERE i.inhparent = 'operation_records'::regclass ORDER BY 1"""


def _midnight(days: int, now: datetime | None = None) -> datetime:
    day = (now or datetime.now(UTC)).date() + timedelta(days=days)
    return datetime.combine(day, time(), tzinfo=UTC)


async def _maintain(url: str, *, now: datetime, **overrides: Any) -> dict[str, Any]:
    settings = make_settings(url, **overrides)
    engine = create_engine(settings)
    try:
        runner = TransactionRunner(engine=engine, settings=settings, observer=Observer(settings))
        store = IdempotencyStore(
            runner=runner, ttl=timedelta(hours=24), abandon_after=timedelta(seconds=30)
        )
        return await run_maintenance(
            engine, settings, now=now, purge=lambda at: store.purge(now=at, batch_size=3)
        )
    finally:
        await engine.dispose()


def test_0008_keeps_the_records_and_partitions_them_by_day(fresh_url: str) -> None:
    settings = make_settings(fresh_url)
    migrate.upgrade(settings, "0007")
    now = datetime.now(UTC)
    kept = [
        asyncio.run(_fetch(fresh_url, RECORD, now - timedelta(days=d), f"old-{d}"))[0]["id"]
        for d in (0, 3, 400)
    ]
    migrate.upgrade(settings)

    rows = asyncio.run(_fetch(fresh_url, "SELECT id, correlation_id FROM operation_records"))
    assert sorted(r["id"] for r in rows) == sorted(kept)
    names = [r["relname"] for r in asyncio.run(_fetch(fresh_url, PARTITIONS))]
    first = f"operation_records_before_{_midnight(1):%Y%m%d}"
    assert names == sorted(
        [first, *(partition_name("operation_records", _midnight(d).date()) for d in range(1, 8))]
    )
    (held,) = asyncio.run(
        _fetch(fresh_url, f"SELECT count(*) AS n FROM {first} WHERE correlation_id LIKE 'old-%'")
    )
    assert held["n"] == 3  # the old table is the first partition, not a copy
    # A record of today and one a week ahead land; the id sequence goes on from the old one.
    later = [
        asyncio.run(_fetch(fresh_url, RECORD, at, "new"))[0]["id"]
        for at in (now, _midnight(7) + timedelta(hours=5))
    ]
    assert min(later) > max(kept)


def test_maintenance_makes_days_ahead_and_drops_old_partitions_whole(fresh_url: str) -> None:
    migrate.upgrade(make_settings(fresh_url))
    now = datetime.now(UTC)
    asyncio.run(_fetch(fresh_url, RECORD, now, "today"))
    later = now + timedelta(days=40)  # with a 30-day retention: everything before day 10 goes

    report = asyncio.run(_maintain(fresh_url, now=later))

    part = report["operation_records"]
    assert part["created"] == [
        partition_name("operation_records", _midnight(d).date()) for d in range(10, 48)
    ]
    assert part["dropped"][0] == f"operation_records_before_{_midnight(1):%Y%m%d}"
    assert part["dropped"][1:] == [
        partition_name("operation_records", _midnight(d).date()) for d in range(1, 8)
    ]
    names = [r["relname"] for r in asyncio.run(_fetch(fresh_url, PARTITIONS))]
    assert names == [
        partition_name("operation_records", _midnight(d).date()) for d in range(10, 48)
    ]
    assert asyncio.run(_fetch(fresh_url, "SELECT * FROM operation_records")) == []
    # The days ahead take records; a second run has nothing to do.
    asyncio.run(_fetch(fresh_url, RECORD, later + timedelta(days=7), "ahead"))
    again = asyncio.run(_maintain(fresh_url, now=later))
    assert again["operation_records"] == {"created": [], "dropped": []}


def test_a_detach_left_pending_by_a_cancelled_run_is_finished(fresh_url: str) -> None:
    migrate.upgrade(make_settings(fresh_url))
    first = f"operation_records_before_{_midnight(1):%Y%m%d}"

    async def cancel_a_detach() -> None:
        reader = await asyncpg.connect(_dsn(fresh_url))
        detacher = await asyncpg.connect(_dsn(fresh_url))
        try:  # an open transaction that read the table: the detach's second phase waits
            async with reader.transaction():
                await reader.fetch("SELECT count(*) FROM operation_records")
                await detacher.execute("SET statement_timeout = 300")
                with pytest.raises(asyncpg.QueryCanceledError):
                    await detacher.execute(
                        f"ALTER TABLE operation_records DETACH PARTITION {first} CONCURRENTLY"
                    )
        finally:
            await reader.close()
            await detacher.close()

    asyncio.run(cancel_a_detach())
    (pending,) = asyncio.run(
        _fetch(
            fresh_url,
            f"SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = '{first}'::regclass",
        )
    )
    assert pending["inhdetachpending"] is True

    report = asyncio.run(_maintain(fresh_url, now=datetime.now(UTC) + timedelta(days=31)))

    assert first in report["operation_records"]["dropped"]
    names = [r["relname"] for r in asyncio.run(_fetch(fresh_url, PARTITIONS))]
    assert first not in names
    assert asyncio.run(_fetch(fresh_url, f"SELECT to_regclass('{first}') AS t"))[0]["t"] is None


def test_a_run_started_while_another_holds_the_lock_is_skipped(fresh_url: str) -> None:
    migrate.upgrade(make_settings(fresh_url))
    before = asyncio.run(_fetch(fresh_url, PARTITIONS))

    async def while_held() -> dict[str, Any]:
        holder = await asyncpg.connect(_dsn(fresh_url))
        try:
            await holder.execute("SELECT pg_advisory_lock($1)", MAINTENANCE_LOCK)
            return await _maintain(fresh_url, now=datetime.now(UTC) + timedelta(days=60))
        finally:
            await holder.close()

    assert asyncio.run(while_held()) == {"skipped": "another maintenance run holds the lock"}
    assert asyncio.run(_fetch(fresh_url, PARTITIONS)) == before
    assert "skipped" not in asyncio.run(_maintain(fresh_url, now=datetime.now(UTC)))


def test_expired_idempotency_keys_go_in_batches_and_live_ones_stay(fresh_url: str) -> None:
    settings = make_settings(fresh_url)
    migrate.upgrade(settings)
    now = datetime.now(UTC)
    insert = """INSERT INTO idempotency_keys (agent_id, key, request_hash, state, created_at,
                expires_at) VALUES ($1, $2, 'h', 'done', $3, $4)"""

    async def seed() -> None:
        conn = await asyncpg.connect(_dsn(fresh_url))
        try:
            for n in range(7):
                await conn.execute(insert, "a", f"old{n}", now, now - timedelta(minutes=n + 1))
            for n in range(2):
                await conn.execute(insert, "a", f"live{n}", now, now + timedelta(hours=1))
        finally:
            await conn.close()

    asyncio.run(seed())
    deletes: list[str] = []

    async def purge() -> int:
        engine = create_engine(settings)
        event.listen(
            engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cu, statement, *_: (
                deletes.append(statement) if statement.lstrip().startswith("DELETE") else None
            ),
        )
        try:
            runner = TransactionRunner(
                engine=engine, settings=settings, observer=Observer(settings)
            )
            store = IdempotencyStore(
                runner=runner, ttl=timedelta(hours=24), abandon_after=timedelta(seconds=30)
            )
            return await store.purge(now=now, batch_size=3)
        finally:
            await engine.dispose()

    assert asyncio.run(purge()) == 7
    assert len(deletes) == 3  # 3 + 3 + 1: one short transaction each
    left = asyncio.run(_fetch(fresh_url, "SELECT key FROM idempotency_keys ORDER BY key"))
    assert [r["key"] for r in left] == ["live0", "live1"]


def test_the_command_prints_its_report(fresh_url: str) -> None:
    migrate.upgrade(make_settings(fresh_url))
    done = subprocess.run(
        [sys.executable, "-m", "tripquote.cli", "maintenance", "--json"],
        env={**os.environ, "TRIPQUOTE_DATABASE_URL": fresh_url, "TRIPQUOTE_LOG_LEVEL": "WARNING",
             "TRIPQUOTE_PARTITIONS_AHEAD_DAYS": "9"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report == {
        "operation_records": {
            "created": [partition_name("operation_records", _midnight(d).date()) for d in (8, 9)],
            "dropped": [],
        },
        "idempotency_keys": {"purged": 0},
    }


def test_the_command_without_json_prints_a_line_per_table() -> None:
    created = [partition_name("operation_records", _midnight(d).date()) for d in (8, 9)]
    report = {
        "operation_records": {"created": created, "dropped": []},
        "idempotency_keys": {"purged": 3},
    }
    assert _maintenance_text(report).splitlines() == [
        f"maintenance: operation_records: created 2 ({', '.join(created)}); dropped 0",
        "maintenance: idempotency_keys: purged 3",
    ]
    held = {"skipped": "another maintenance run holds the lock"}
    assert (
        _maintenance_text(held) == "maintenance: skipped (another maintenance run holds the lock)"
    )
