"""Retention on a real PostgreSQL: operation records (migration 0011) and the webhook outbox's
events and deliveries (0012) partitioned by day, rows kept; ``tripquote maintenance`` making
partitions ahead and dropping old ones whole (never a DELETE), a delivery's day before its
event's, one run at a time (an advisory lock); expired idempotency keys purged in batches."""

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
from tripquote.db import migrate, retention
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


async def _maintain(
    url: str, *, now: datetime, statements: list[str] | None = None, **overrides: Any
) -> dict[str, Any]:
    """One maintenance run at ``now``; every SQL statement it sent appended to
    ``statements``."""
    settings = make_settings(url, **overrides)
    engine = create_engine(settings)
    if statements is not None:
        event.listen(
            engine.sync_engine,
            "before_cursor_execute",
            lambda _c, _cu, statement, *_: statements.append(statement),
        )
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


OUTBOX = ("webhook_deliveries", "events")


def _partitions_of(url: str, table: str) -> list[str]:
    rows = asyncio.run(
        _fetch(
            url,
            """SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = $1::regclass ORDER BY 1""",
            table,
        )
    )
    return [r["relname"] for r in rows]


async def _outbox(url: str, *instants: datetime) -> list[str]:
    """An event at each instant with its one delivery, as a save writes them (the delivery's
    created_at its event's occurred_at); an agency and subscription first if need be. The
    events' ids."""
    conn = await asyncpg.connect(_dsn(url))
    try:
        await conn.execute(
            """INSERT INTO agencies (id, name, timezone, created_at)
               VALUES ('g1', 'G', 'UTC', now()) ON CONFLICT DO NOTHING;
               INSERT INTO webhook_subscriptions (id, agency_id, url, event_types, enabled,
                      secret, created_at, updated_at)
               VALUES ('w1', 'g1', 'https://example.com/h', ARRAY['quote.created'], true,
                      'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', now(), now())
               ON CONFLICT DO NOTHING"""
        )
        ids = []
        for at in instants:
            event_id = f"evt_{uuid.uuid4().hex}"
            await conn.execute(
                """INSERT INTO events (id, type, occurred_at, agency_id, quote_id, version,
                          actor, correlation_id)
                   VALUES ($1, 'quote.created', $2, 'g1', $3, 1, 'a1', 'c1')""",
                event_id,
                at,
                str(uuid.uuid4()),
            )
            await conn.execute(
                """INSERT INTO webhook_deliveries (event_id, subscription_id, quote_id, version,
                          status, next_attempt_at, created_at)
                   SELECT id, 'w1', quote_id, version, 'pending', occurred_at, occurred_at
                     FROM events WHERE id = $1""",
                event_id,
            )
            ids.append(event_id)
        return ids
    finally:
        await conn.close()


def test_0012_keeps_the_outbox_and_partitions_it_by_day(fresh_url: str) -> None:
    settings = make_settings(fresh_url)
    migrate.upgrade(settings, "0011")
    now = datetime.now(UTC)
    kept = asyncio.run(_outbox(fresh_url, *(now - timedelta(days=d) for d in (0, 3, 400))))
    before = asyncio.run(_fetch(fresh_url, "SELECT * FROM webhook_deliveries ORDER BY id"))
    migrate.upgrade(settings)

    events = asyncio.run(_fetch(fresh_url, "SELECT id FROM events"))
    assert sorted(r["id"] for r in events) == sorted(kept)
    after = asyncio.run(_fetch(fresh_url, "SELECT * FROM webhook_deliveries ORDER BY id"))
    assert [dict(r) for r in after] == [dict(r) for r in before]
    for table in OUTBOX:
        first = f"{table}_before_{_midnight(1):%Y%m%d}"
        assert _partitions_of(fresh_url, table) == sorted(
            [first, *(partition_name(table, _midnight(d).date()) for d in range(1, 8))]
        )
        (held,) = asyncio.run(_fetch(fresh_url, f"SELECT count(*) AS n FROM {first}"))
        assert held["n"] == 3  # the old table is the first partition, not a copy
    # An event and its delivery of today and of a week ahead land; delivery ids go on.
    asyncio.run(_outbox(fresh_url, now, _midnight(7) + timedelta(hours=5)))
    ids = asyncio.run(_fetch(fresh_url, "SELECT id FROM webhook_deliveries ORDER BY id"))
    assert len(ids) == 5 and min(r["id"] for r in ids[3:]) > max(r["id"] for r in before)

    # Back to plain tables: every row copied back, the keys restored, the ids going on.
    migrate.downgrade(settings, "0011")
    assert len(asyncio.run(_fetch(fresh_url, "SELECT id FROM events"))) == 5
    back = asyncio.run(_fetch(fresh_url, "SELECT * FROM webhook_deliveries ORDER BY id"))
    assert [dict(r) for r in back[:3]] == [dict(r) for r in before] and len(back) == 5
    asyncio.run(_outbox(fresh_url, now))
    newest = asyncio.run(_fetch(fresh_url, "SELECT max(id) AS id FROM webhook_deliveries"))
    assert newest[0]["id"] > max(r["id"] for r in back)
    assert _partitions_of(fresh_url, "events") == []


def test_maintenance_drops_old_days_of_the_outbox_whole_and_no_other(fresh_url: str) -> None:
    migrate.upgrade(make_settings(fresh_url))
    now = datetime.now(UTC)
    asyncio.run(_outbox(fresh_url, now, now + timedelta(days=2), now + timedelta(days=6)))
    day6 = {
        table: asyncio.run(
            _fetch(fresh_url, f"SELECT * FROM {table} WHERE {at} >= $1", _midnight(6))
        )
        for table, at in (("events", "occurred_at"), ("webhook_deliveries", "created_at"))
    }
    later = now + timedelta(days=10)  # with a 7-day retention: everything before day 3 goes
    statements: list[str] = []

    report = asyncio.run(_maintain(fresh_url, now=later, statements=statements))

    ahead = list(range(8, 18))  # from the migration's last day ahead to 7 days after day 10
    for table in (*OUTBOX, "operation_records"):
        assert report[table]["created"] == [
            partition_name(table, _midnight(d).date()) for d in ahead
        ]
    for table in OUTBOX:
        assert report[table]["dropped"] == [
            f"{table}_before_{_midnight(1):%Y%m%d}",
            *(partition_name(table, _midnight(d).date()) for d in (1, 2)),
        ]
        assert _partitions_of(fresh_url, table) == [
            partition_name(table, _midnight(d).date()) for d in (3, 4, 5, 6, 7, *ahead)
        ]
        rows = asyncio.run(_fetch(fresh_url, f"SELECT * FROM {table}"))
        assert [dict(r) for r in rows] == [dict(r) for r in day6[table]]  # untouched
    assert report["operation_records"]["dropped"] == []  # its retention is 30 days
    deletes = [s for s in statements if s.lstrip().upper().startswith("DELETE")]
    assert all("idempotency_keys" in s for s in deletes), deletes


def test_an_events_day_stays_while_its_deliveries_day_could_not_be_dropped(
    fresh_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    migrate.upgrade(make_settings(fresh_url))
    now = datetime.now(UTC)
    asyncio.run(_outbox(fresh_url, now + timedelta(days=1), now + timedelta(days=2)))
    monkeypatch.setattr(retention, "LOCK_TIMEOUT_MS", 200)
    busy = partition_name("webhook_deliveries", _midnight(1).date())
    later = now + timedelta(days=10)

    async def while_a_day_is_locked() -> dict[str, Any]:
        holder = await asyncpg.connect(_dsn(fresh_url))
        try:
            async with holder.transaction():
                await holder.execute(f"LOCK TABLE {busy} IN SHARE UPDATE EXCLUSIVE MODE")
                return await _maintain(fresh_url, now=later)
        finally:
            await holder.close()

    report = asyncio.run(while_a_day_is_locked())

    # Day 1's deliveries could not be detached: its events stay (and every later events day);
    # day 2's deliveries went, the events before day 1 too.
    assert report["webhook_deliveries"]["dropped"] == [
        f"webhook_deliveries_before_{_midnight(1):%Y%m%d}",
        partition_name("webhook_deliveries", _midnight(2).date()),
    ]
    assert report["events"]["dropped"] == [f"events_before_{_midnight(1):%Y%m%d}"]
    joined = """SELECT count(*) AS n FROM webhook_deliveries d
                  JOIN events e ON e.id = d.event_id AND e.occurred_at = d.created_at"""
    assert asyncio.run(_fetch(fresh_url, joined))[0]["n"] == 1  # day 1's, its event found

    again = asyncio.run(_maintain(fresh_url, now=later))  # the lock gone: the rest goes
    assert again["webhook_deliveries"]["dropped"] == [busy]
    assert again["events"]["dropped"] == [
        partition_name("events", _midnight(d).date()) for d in (1, 2)
    ]
    for table in OUTBOX:
        assert asyncio.run(_fetch(fresh_url, f"SELECT * FROM {table}")) == []


def test_two_runs_at_once_do_the_work_once(fresh_url: str) -> None:
    migrate.upgrade(make_settings(fresh_url))
    later = datetime.now(UTC) + timedelta(days=10)

    async def both() -> list[dict[str, Any]]:
        return list(
            await asyncio.gather(_maintain(fresh_url, now=later), _maintain(fresh_url, now=later))
        )

    reports = asyncio.run(both())

    for table in (*OUTBOX, "operation_records"):
        created = [name for r in reports if "skipped" not in r for name in r[table]["created"]]
        assert created == [partition_name(table, _midnight(d).date()) for d in range(8, 18)]
    for table in OUTBOX:
        dropped = [name for r in reports if "skipped" not in r for name in r[table]["dropped"]]
        assert len(dropped) == 3 and len(set(dropped)) == 3
        assert _partitions_of(fresh_url, table) == [
            partition_name(table, _midnight(d).date()) for d in range(3, 18)
        ]


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
        **{
            table: {
                "created": [partition_name(table, _midnight(d).date()) for d in (8, 9)],
                "dropped": [],
            }
            for table in ("operation_records", *OUTBOX)
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
