"""The webhook outbox's statements on plain tables (migration 0011) against daily partitions
(0012), side by side in one run: ``python -m bench.outbox_partitions [--days 7] [--per-day N]``.

Two databases on the server of ``--admin-url`` are migrated, one to 0011 and one to head, and
loaded alike: one agency, two subscriptions to ``quote.created``, ``--per-day`` events a day
over ``--days`` days with one delivery per subscription (every one delivered but the last
``--pending`` events'), and a revision per event (written with the foreign keys off: no quote
rows are needed). The partitioned one has ``--days`` days of partitions and as many ahead
(``--days`` x 2 + 1 per table, what a 7-day retention keeps). Then, alternating the two in
``--rounds`` rounds, it times the real statements: the worker's claim and record
(``webhooks/sql.py``, one transaction each, asyncpg prepared as the worker's are), a save's
outbox fragment (``quotes/sql.py`` ``outbox``: an event and its deliveries) and an admin's
deliveries page (``webhooks/repository.py``). Prints each one's median per call and the ratio
partitioned / plain. Both databases are dropped at the end. Run it under the bench lock.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from tripquote.config import Settings
from tripquote.db import migrate
from tripquote.db.retention import keep_partitions
from tripquote.quotes.sql import Statement, outbox
from tripquote.webhooks import repository, sql


def _before_0012(statement: Statement) -> Statement:
    """``statement`` as it was before 0012: a delivery and its event found by id alone."""
    text = statement.text.replace("SELECT d.id, d.created_at\n", "SELECT d.id\n")
    text = text.replace("d.id, d.created_at, d.attempts", "d.id, d.attempts")
    text = text.replace(" AND d.created_at = due.created_at", "")
    text = text.replace(" AND e.occurred_at = d.created_at", "")
    if "created_at" in statement.names:  # RECORD's last parameter
        assert statement.names[-1] == "created_at"
        text = re.sub(r" AND created_at = \$\d+", "", text)
    return Statement(text, tuple(name for name in statement.names if name != "created_at"))


CLAIM_BEFORE, RECORD_BEFORE = _before_0012(sql.CLAIM), _before_0012(sql.RECORD)

SAVE = Statement.of(
    "WITH saved AS (SELECT 'g1'::text AS agency_id, :quote_id::text AS id, 1 AS version), "
    + outbox("saved", "'quote.created'")
    + " SELECT 1"
)


def _url(admin: str, name: str) -> str:
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg", "postgresql")


async def _load(dsn: str, *, start: datetime, days: int, per_day: int, pending: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SET session_replication_role = replica")  # no quote rows needed
        await conn.execute(
            """INSERT INTO agencies (id, name, timezone, created_at)
               VALUES ('g1', 'G', 'UTC', now());
               INSERT INTO webhook_subscriptions (id, agency_id, url, event_types, enabled,
                      secret, created_at, updated_at)
               SELECT 'w' || n, 'g1', 'http://127.0.0.1:9/h', ARRAY['quote.created'], true,
                      'whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', now(), now()
                 FROM generate_series(1, 2) n"""
        )
        total = days * per_day
        await conn.execute(
            """INSERT INTO events (id, type, occurred_at, agency_id, quote_id, version, actor,
                      correlation_id)
               SELECT 'evt_' || n, 'quote.created',
                      $1::timestamptz + (n * ($2::float8 / $3)) * interval '1 day',
                      'g1', 'q' || n, 1, 'a1', 'c' || n
                 FROM generate_series(0, $3 - 1) n""",
            start,
            float(days),
            total,
        )
        await conn.execute(
            """INSERT INTO quote_revisions (id, quote_id, version, operation, status, actor_id,
                      correlation_id, created_at, snapshot)
               SELECT 'r' || substr(e.id, 5), e.quote_id, 1, 'create', 'DRAFT', 'a1', 'c',
                      e.occurred_at, '{"quoteId": "x", "items": [1, 2, 3]}'::json
                 FROM events e"""
        )
        await conn.execute(
            """INSERT INTO webhook_deliveries (event_id, subscription_id, quote_id, version,
                      status, attempts, next_attempt_at, created_at, delivered_at)
               SELECT e.id, w.id, e.quote_id, 1,
                      CASE WHEN substr(e.id, 5)::int >= $1 THEN 'pending' ELSE 'delivered' END,
                      0, e.occurred_at, e.occurred_at, NULL
                 FROM events e CROSS JOIN webhook_subscriptions w ORDER BY e.occurred_at""",
            total - pending,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def _timed(n: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    times = []
    for i in range(n):
        started = time.perf_counter()
        await call(i)
        times.append((time.perf_counter() - started) * 1000)
    return times


async def _measure(url: str, *, now: datetime, calls: int, offset: int) -> dict[str, list[float]]:
    conn = await asyncpg.connect(_dsn(url))
    engine = create_async_engine(url)
    partitioned = await conn.fetchval(
        "SELECT count(*) > 0 FROM pg_partitioned_table p"
        " JOIN pg_class c ON c.oid = p.partrelid WHERE c.relname = 'webhook_deliveries'"
    )
    claim_sql, record_sql = (
        (sql.CLAIM, sql.RECORD) if partitioned else (CLAIM_BEFORE, RECORD_BEFORE)
    )
    claim, record = await conn.prepare(claim_sql.text), await conn.prepare(record_sql.text)
    save = await conn.prepare(SAVE.text)

    async def deliver(_: int) -> None:
        async with conn.transaction():
            row = await claim.fetchrow(*claim_sql.args({"now": now}))
            assert row is not None, "nothing due: raise --pending"
            values = {
                "delivery_id": row["id"],
                "created_at": row["created_at"] if partitioned else None,
                "now": now,
                "status_code": 204,
                "duration_ms": 1.0,
                "error": None,
                "delivered": True,
                "gone": False,
                "max_attempts": 10,
                "next_attempt_at": now,
            }
            assert (await record.fetchrow(*record_sql.args(values)))["status"] == "delivered"

    async def write(i: int) -> None:
        values = {"quote_id": f"bench-{offset}-{i}-{uuid.uuid4().hex[:6]}", "now": now}
        values |= {"actor": "a1", "correlation_id": "c"}
        await save.fetchval(*SAVE.args(values))

    async def page(_: int) -> None:
        async with engine.connect() as sa:
            await repository.deliveries_page(
                sa, subscription_id="w1", before_id=None, limit=50, status=None
            )

    try:
        return {
            "worker claim + record": await _timed(calls, deliver),
            "save's outbox (event + 2 deliveries)": await _timed(calls, write),
            "deliveries page (50)": await _timed(calls, page),
        }
    finally:
        await conn.close()
        await engine.dispose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--admin-url", default="postgresql+asyncpg://postgres@127.0.0.1:5432/")
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--per-day", type=int, default=20_000)
    parser.add_argument("--pending", type=int, default=3_000)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    tag = uuid.uuid4().hex[:6]
    names = {"plain": f"bench_outbox_plain_{tag}", "partitioned": f"bench_outbox_part_{tag}"}
    admin = await asyncpg.connect(_dsn(_url(args.admin_url, "postgres")))
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    start = today + timedelta(days=1)  # the loaded days: ahead of the migration's first one
    now = start + timedelta(days=args.days)
    try:
        for name in names.values():
            await admin.execute(f'CREATE DATABASE "{name}"')
        for kind, name in names.items():
            url = _url(args.admin_url, name)
            target = "0011" if kind == "plain" else "head"
            await asyncio.to_thread(migrate.upgrade, Settings(database_url=url), target)
            if kind == "partitioned":
                engine = create_async_engine(url, isolation_level="AUTOCOMMIT")
                async with engine.connect() as conn:
                    for table in ("events", "webhook_deliveries"):
                        await keep_partitions(
                            conn,
                            table=table,
                            retention=timedelta(days=args.days),
                            ahead_days=args.days * 2,
                            now=today,
                        )
                await engine.dispose()
            await _load(
                _dsn(url), start=start, days=args.days, per_day=args.per_day,
                pending=args.pending,
            )  # fmt: skip
        results: dict[str, dict[str, list[float]]] = {kind: {} for kind in names}
        for round_ in range(args.rounds):
            for kind, name in names.items():
                got = await _measure(
                    _url(args.admin_url, name), now=now, calls=args.calls, offset=round_
                )
                for what, times in got.items():
                    results[kind].setdefault(what, []).extend(times)
        print(
            f"outbox partitions: {args.days} days x {args.per_day} events, 2 deliveries each; "
            f"{args.rounds} rounds x {args.calls} calls, alternating"
        )
        print(f"{'statement':40} {'plain ms':>9} {'partitioned ms':>15} {'ratio':>7}")
        for what in results["plain"]:
            a = statistics.median(results["plain"][what])
            b = statistics.median(results["partitioned"][what])
            print(f"{what:40} {a:9.3f} {b:15.3f} {b / a:7.2f}")
    finally:
        for name in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
