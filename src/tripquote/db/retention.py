"""Retention: tables that only grow, kept for a period and removed without long locks or bloat.

A retained table is range-partitioned by day on an instant column (PostgreSQL declarative
partitioning); ``keep_partitions`` creates the days ahead (a standalone empty table, then
``ATTACH PARTITION``: a SHARE UPDATE EXCLUSIVE lock on the parent, writes go on) and removes
each partition wholly older than the retention (``DETACH PARTITION … CONCURRENTLY``, then
``DROP TABLE``): no row-by-row DELETE, no dead rows left for VACUUM. Rows that are not
partitioned (idempotency keys) are deleted in small batches (``IdempotencyStore.purge``).

``run_maintenance`` does it all under one advisory lock, taken without waiting: a second run
(another host's cron) finds it held and reports it skipped. ``tripquote maintenance`` runs it.

To retain another table: partition it by day on its instant column in its migration, and
add a ``Retained`` to ``RETAINED`` naming the ``Settings`` field of its retention in days.
Give it no foreign key, to or from it: a partition's key locks the table it names whenever a
day is attached (SHARE ROW EXCLUSIVE) or dropped (ACCESS EXCLUSIVE), and every write (or, for
a drop, every read) of that table queues behind the wait (migration 0012 says what was
measured). A table whose rows another table's rows name (a delivery its event) comes after
that table in ``RETAINED`` and names it in ``referenced_by``: its day is dropped only once
every day of the other table up to its end is gone.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from tripquote.config import Settings
from tripquote.db.errors import sqlstate_of

MAINTENANCE_LOCK = 0x7472_6970_4D61_696E
"""The session advisory lock of a maintenance run (per database)."""

LOCK_TIMEOUT_MS = 5_000
"""How long a partition change waits for its lock before it is left to the next run."""


@dataclass(frozen=True, slots=True)
class Retained:
    """A table partitioned by day (range on an instant), kept ``Settings.<retention_days>``
    days."""

    table: str
    retention_days: str
    referenced_by: str | None = None
    """A retained table (earlier in ``RETAINED``) whose rows name this one's by its key:
    no partition of this table is dropped while a partition of that one ending no later
    remains."""


RETAINED = (
    Retained("operation_records", "operation_records_retention_days"),
    # A delivery's day goes before its event's; pending and dead-lettered ones go with it
    # (the retention outlasts the retry schedule: config.Settings checks it).
    Retained("webhook_deliveries", "webhook_retention_days"),
    Retained("events", "webhook_retention_days", referenced_by="webhook_deliveries"),
)
"""Every retained table, in the order maintenance keeps them (the hook: a new one is one
more entry)."""


def is_partition(name: str) -> bool:
    """Whether table ``name`` is a partition of a retained table (maintenance makes and drops
    those; the models and migrations describe only the parent)."""
    return any(name.startswith(f"{retained.table}_") for retained in RETAINED)


def include_object(_object: Any, name: str | None, type_: str, reflected: bool, _to: Any) -> bool:
    """Alembic's autogenerate filter: every object but the partitions of retained tables."""
    return not (type_ == "table" and reflected and name is not None and is_partition(name))


_BOUND = re.compile(r"TO \('([^']+)'\)")


def partition_name(table: str, day: date) -> str:
    """The partition of ``table`` holding ``day`` (UTC): ``<table>_p<YYYYMMDD>``."""
    return f"{table}_p{day:%Y%m%d}"


async def partitions(conn: AsyncConnection, table: str) -> dict[str, datetime | None]:
    """Each partition of ``table`` and its upper bound (None: MAXVALUE)."""
    rows = await conn.execute(
        text(
            """SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
                 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                WHERE i.inhparent = CAST(:table AS regclass)"""
        ),
        {"table": table},
    )
    found: dict[str, datetime | None] = {}
    for name, bound in rows.all():
        match = _BOUND.search(bound or "")
        found[name] = datetime.fromisoformat(match.group(1)) if match else None
    return found


async def keep_partitions(
    conn: AsyncConnection,
    *,
    table: str,
    retention: timedelta,
    ahead_days: int,
    now: datetime,
    until: datetime | None = None,
) -> dict[str, list[str]]:
    """Create the daily partitions of ``table`` (partitioned by range on an instant) up to
    ``ahead_days`` after ``now``'s day, from the last one's end (or the retention's start);
    detach and drop every partition whose upper bound is at least ``retention`` before
    ``now`` (and, given ``until``, before it). ``conn`` in autocommit (a concurrent
    detach cannot run in a transaction). Returns the partitions created and dropped; one
    whose lock was not granted within ``LOCK_TIMEOUT_MS`` is left to the next run."""
    existing = await partitions(conn, table)
    bounds = [bound for bound in existing.values() if bound is not None]
    today = now.astimezone(UTC).date()
    horizon = now - retention
    # From the last partition's end, but no day already past the retention.
    start = max([horizon.astimezone(UTC).date(), *(b.astimezone(UTC).date() for b in bounds)])
    created, dropped = [], []
    for offset in range((today + timedelta(days=ahead_days + 1) - start).days):
        day = start + timedelta(days=offset)
        name = partition_name(table, day)
        low, high = _midnight(day), _midnight(day + timedelta(days=1))
        if await _ddl(
            conn,
            # A table left unattached by an interrupted run is attached now; the parent's
            # CHECK constraints copied (ATTACH requires them).
            f'CREATE TABLE IF NOT EXISTS "{name}"'
            f' (LIKE "{table}" INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
            f"""ALTER TABLE "{table}" ATTACH PARTITION "{name}"
                FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')""",
        ):
            created.append(name)
    for name, bound in sorted(existing.items(), key=lambda item: str(item[1])):
        kept = bound is None or bound > horizon or (until is not None and bound >= until)
        if not kept and await _drop(conn, table, name):
            dropped.append(name)
    return {"created": created, "dropped": dropped}


async def _drop(conn: AsyncConnection, table: str, name: str) -> bool:
    """Detach partition ``name`` concurrently and drop it. A detach an earlier run began and
    did not end (cancelled while it waited for older transactions: SQLSTATE 55000, the
    partition "pending detach") is finished with ``FINALIZE``."""
    detach = f'ALTER TABLE "{table}" DETACH PARTITION "{name}"'
    try:
        return await _ddl(conn, f"{detach} CONCURRENTLY", f'DROP TABLE "{name}"')
    except DBAPIError as exc:
        if sqlstate_of(exc) != "55000":
            raise
    return await _ddl(conn, f"{detach} FINALIZE", f'DROP TABLE "{name}"')


async def _oldest_end(conn: AsyncConnection, table: str | None) -> datetime | None:
    """The earliest upper bound among ``table``'s partitions (None: no table, or none)."""
    if table is None:
        return None
    return min(
        (bound for bound in (await partitions(conn, table)).values() if bound is not None),
        default=None,
    )


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


async def _ddl(conn: AsyncConnection, *statements: str) -> bool:
    """Run ``statements`` in order; False if a lock was not granted in time (SQLSTATE 55P03:
    the next run does it)."""
    try:
        for statement in statements:
            await conn.execute(text(statement))
    except DBAPIError as exc:
        if sqlstate_of(exc) != "55P03":
            raise
        return False
    return True


async def run_maintenance(
    engine: AsyncEngine, settings: Settings, *, now: datetime, purge: Any
) -> dict[str, Any]:
    """Every retained table's partitions kept (``keep_partitions``) and ``purge(now)`` (the
    expired idempotency keys, in batches) under ``MAINTENANCE_LOCK``; ``{"skipped": ...}``
    when another run holds it."""
    async with engine.connect() as pooled:
        conn = await pooled.execution_options(isolation_level="AUTOCOMMIT")
        held = await conn.execute(
            text("SELECT pg_try_advisory_lock(:key)"), {"key": MAINTENANCE_LOCK}
        )
        if not held.scalar():
            return {"skipped": "another maintenance run holds the lock"}
        try:
            await conn.execute(text(f"SET lock_timeout = {LOCK_TIMEOUT_MS}"))
            report: dict[str, Any] = {}
            for retained in RETAINED:
                report[retained.table] = await keep_partitions(
                    conn,
                    table=retained.table,
                    retention=timedelta(days=getattr(settings, retained.retention_days)),
                    ahead_days=settings.partitions_ahead_days,
                    now=now,
                    until=await _oldest_end(conn, retained.referenced_by),
                )
            report["idempotency_keys"] = {"purged": await purge(now)}
            return report
        finally:
            await conn.execute(text("RESET lock_timeout"))
            await conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MAINTENANCE_LOCK})
