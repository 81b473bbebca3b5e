"""Operation records persisted off the request path, and the cross-process summary they allow.

The request path only calls ``enqueue`` (``put_nowait`` on a bounded queue). One background task
writes batches (what arrives within the linger after a first record, up to the batch size)
with one statement each, in its own short transaction on its own pool connection;
a failing or slow database is retried a bounded number of times, then the batch is dropped and
counted in ``tripquote_oprecords_dropped_total``. Saves never wait for, or fail because of, it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import ColumnElement, func, select

from tripquote.db.engine import pooled_driver
from tripquote.observability import metrics
from tripquote.observability.summary import (
    ROLLBACK_OPERATION,
    SAVE_OPERATIONS,
    OperationRecord,
    assemble_summary,
    duration_stats,
    rank_index,
)

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

logger = structlog.get_logger("tripquote.oprecords")


def default_table() -> Table:
    """The ``operation_records`` table of the app's schema (imported lazily)."""
    from tripquote.db.tables import operation_records

    return operation_records


class _Throttle:
    """Lets one message through per ``interval`` seconds and counts the ones held back."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last = -float("inf")
        self.held_back = 0

    def allow(self) -> bool:
        now = time.monotonic()
        if now - self._last >= self.interval:
            self._last = now
            return True
        self.held_back += 1
        return False


class OpRecordWriter:
    """Bounded queue + background batch writer for ``operation_records``."""

    def __init__(
        self,
        *,
        queue_size: int,
        batch_size: int,
        linger_seconds: float = 0.0,
        table: Table | None = None,
        max_attempts: int = 3,
        write_timeout_seconds: float = 5.0,
        retry_delay_seconds: float = 0.2,
        log_interval_seconds: float = 30.0,
    ) -> None:
        self._queue: asyncio.Queue[OperationRecord] = asyncio.Queue(queue_size)
        self._batch_size = batch_size
        self._linger = linger_seconds
        self._table = table
        self._max_attempts = max_attempts
        self._write_timeout = write_timeout_seconds
        self._retry_delay = retry_delay_seconds
        self._throttle = _Throttle(log_interval_seconds)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._stopping = asyncio.Event()
        self.written = 0
        self.batches = 0
        self.dropped = 0

    @property
    def pending(self) -> int:
        """Records waiting in the queue."""
        return self._queue.qsize()

    def enqueue(self, record: OperationRecord) -> None:
        """Queue one record without waiting; when full or closed, drop and count it."""
        if self._closed:
            self._drop(1)
            return
        try:
            self._queue.put_nowait(record)
        except asyncio.QueueFull:
            self._drop(1)

    async def start(self, engine: AsyncEngine) -> None:
        """Start the background writer on ``engine``."""
        table = self._table if self._table is not None else default_table()
        self._closed = False
        self._stopping = asyncio.Event()  # of the loop it runs on
        self._task = asyncio.create_task(self._run(engine, table), name="tripquote-oprecords")

    async def stop(self, *, timeout_seconds: float = 5.0) -> None:
        """Refuse new records, write what is queued (at most ``timeout_seconds``), then stop."""
        self._closed = True
        self._stopping.set()
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_seconds):
                    await self._queue.join()
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        leftover = 0
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            leftover += 1
        if leftover:
            self._drop(leftover)
            logger.warning("oprecords_dropped_at_shutdown", dropped=leftover)

    def _drop(self, count: int) -> None:
        self.dropped += count
        with contextlib.suppress(Exception):
            metrics.OPRECORDS_DROPPED.inc(count)

    async def _run(self, engine: AsyncEngine, table: Table) -> None:
        while True:
            batch = [await self._queue.get()]
            if self._linger and not self._closed and self._queue.qsize() + 1 < self._batch_size:
                # Under load records arrive every few hundred microseconds: gathering them
                # for a moment turns a COPY (two round trips, a commit) per handful of
                # requests into one per batch. Shutdown ends the wait and drains.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._linger):
                        await self._stopping.wait()
            while len(batch) < self._batch_size:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            try:
                await self._write(engine, table, batch)
            except asyncio.CancelledError:
                self._drop(len(batch))
                raise
            except Exception:  # never let the writer die: it would stop draining the queue
                self._drop(len(batch))
                logger.exception("oprecords_writer_error", batch=len(batch))
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _write(self, engine: AsyncEngine, table: Table, batch: list[OperationRecord]) -> None:
        rows = [record.as_row() for record in batch]
        for attempt in range(1, self._max_attempts + 1):
            try:
                async with asyncio.timeout(self._write_timeout):
                    await _insert(engine, table, rows)
            except Exception as exc:
                if attempt < self._max_attempts:
                    await asyncio.sleep(self._retry_delay * 2 ** (attempt - 1))
                    continue
                self._drop(len(batch))
                if self._throttle.allow():
                    logger.warning(
                        "oprecords_write_failed",
                        dropped=len(batch),
                        attempts=attempt,
                        error_type=type(exc).__name__,
                        error=str(exc)[:300],
                        failures_not_logged=self._throttle.held_back,
                    )
                    self._throttle.held_back = 0
                return
            self.written += len(batch)
            self.batches += 1
            return


async def _insert(engine: AsyncEngine, table: Table, rows: list[dict[str, Any]]) -> None:
    """One batch in one statement: binary COPY (the cheapest bulk insert, off SQLAlchemy's
    per-row parameter processing)."""
    columns = list(rows[0])
    async with pooled_driver(engine) as driver:
        await driver.copy_records_to_table(
            table.name,
            schema_name=table.schema,
            columns=columns,
            records=[tuple(row[column] for column in columns) for row in rows],
        )


async def _percentiles(
    conn: AsyncConnection, table: Table, where: list[ColumnElement[bool]], count: int
) -> dict[int, float | None]:
    picked: dict[int, float | None] = {}
    for p in (50, 95, 99):
        query = (
            select(table.c.duration_ms)
            .where(*where)
            .order_by(table.c.duration_ms)
            .limit(1)
            .offset(rank_index(count, p))
        )
        picked[p] = (await conn.execute(query)).scalar_one_or_none()
    return picked


async def _group_stats(
    conn: AsyncConnection, table: Table, where: list[ColumnElement[bool]]
) -> dict[str, Any]:
    c = table.c
    query = select(func.count(), func.sum(c.duration_ms), func.max(c.duration_ms)).where(*where)
    count, total, maximum = (await conn.execute(query)).one()
    pick = await _percentiles(conn, table, where, count) if count else {}
    return duration_stats(count=count, total_ms=float(total or 0.0), max_ms=maximum, pick=pick)


async def summary_from_records(
    engine: AsyncEngine, since: datetime, *, table: Table | None = None
) -> dict[str, Any]:
    """The ``/api/ops/summary`` figures from ``operation_records`` ``since``, all processes."""
    t = table if table is not None else default_table()
    c = t.c
    since_utc = (since if since.tzinfo else since.replace(tzinfo=UTC)).astimezone(UTC)
    in_range = c.recorded_at >= since_utc
    is_save = c.operation.in_(sorted(SAVE_OPERATIONS))
    async with engine.connect() as conn:
        names = (
            (
                await conn.execute(
                    select(c.operation)
                    .where(in_range, c.operation != ROLLBACK_OPERATION)
                    .group_by(c.operation)
                )
            )
            .scalars()
            .all()
        )
        operations = {
            name: await _group_stats(conn, t, [in_range, c.operation == name]) for name in names
        }
        saves = await _group_stats(conn, t, [in_range, is_save])
        errors = await conn.execute(
            select(c.error_code, func.count())
            .where(in_range, is_save, c.outcome == "error")
            .group_by(c.error_code)
        )
        save_errors = {code or "UNKNOWN": n for code, n in errors.all()}
        rollbacks = (
            await conn.execute(
                select(func.count()).where(in_range, c.operation == ROLLBACK_OPERATION)
            )
        ).scalar_one()
    return assemble_summary(
        size=sum(stats["count"] for stats in operations.values()),
        since=since_utc,
        until=datetime.now(UTC),
        operations=operations,
        saves=saves,
        save_errors=save_errors,
        rollbacks=rollbacks,
    )
