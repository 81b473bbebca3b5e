"""Operation records on a real PostgreSQL: they land, drain; a failing DB only drops."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import Column, MetaData, Table, func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from tripquote.errors import QuoteConflictVersion
from tripquote.observability.context import correlation_id_var
from tripquote.observability.operations import Observer
from tripquote.observability.oprecords import OpRecordWriter, summary_from_records
from tripquote.observability.summary import OperationRecord

from .conftest import define_operation_records


def dropped_total() -> float:
    return REGISTRY.get_sample_value("tripquote_oprecords_dropped_total") or 0.0


async def count_rows(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(select(func.count()).select_from(table))).scalar_one()


def record(
    i: int, *, op: str = "quote.update", ms: float = 1.0, code: str | None = None
) -> OperationRecord:
    return OperationRecord(
        recorded_at=datetime.now(UTC),
        correlation_id=f"REQ-W-{i}",
        operation=op,
        outcome="error" if code else "success",
        duration_ms=ms,
        pid=4242,
        error_code=code,
        http_status=409 if code else 200,
    )


async def test_tracked_operations_land_with_every_field(
    engine: AsyncEngine, records_table: Table, settings_factory: Any
) -> None:
    observer = Observer(settings_factory(oprecord_batch_size=3), records_table=records_table)
    await observer.start(engine)
    token = correlation_id_var.set("REQ-LAND-1")
    try:
        async with observer.track("quote.create", agent_id="a" * 36) as scope:
            scope.quote_id = "q" * 36
            scope.http_status = 201
        with pytest.raises(QuoteConflictVersion):
            async with observer.track("quote.update", agent_id="a" * 36):
                raise QuoteConflictVersion()
        for _ in range(5):
            async with observer.track("quote.read"):
                pass
    finally:
        correlation_id_var.reset(token)
    await observer.stop()

    async with engine.connect() as conn:
        rows = (
            (await conn.execute(select(records_table).order_by(records_table.c.id)))
            .mappings()
            .all()
        )
    assert len(rows) == 7
    first, second = rows[0], rows[1]
    assert (first["operation"], first["outcome"], first["http_status"]) == (
        "quote.create",
        "success",
        201,
    )
    assert (first["agent_id"], first["quote_id"], first["error_code"]) == ("a" * 36, "q" * 36, None)
    assert first["correlation_id"] == "REQ-LAND-1"
    assert first["duration_ms"] >= 0
    assert isinstance(first["pid"], int)
    assert (second["outcome"], second["error_code"], second["http_status"]) == (
        "error",
        "QUOTE_CONFLICT_VERSION",
        409,
    )
    assert observer.records.written == 7


@pytest.mark.parametrize(("linger", "batches"), [(0.0, 2), (5.0, 1)])
async def test_records_arriving_within_the_linger_share_one_batch(
    engine: AsyncEngine, records_table: Table, linger: float, batches: int
) -> None:
    writer = OpRecordWriter(
        queue_size=100, batch_size=50, linger_seconds=linger, table=records_table
    )
    await writer.start(engine)
    writer.enqueue(record(0))
    await asyncio.sleep(0)  # the writer takes the first record (then lingers, or writes it)
    for i in range(1, 10):
        writer.enqueue(record(i))
    await writer.stop()  # drains at once: shutdown never waits out the linger
    assert await count_rows(engine, records_table) == 10
    assert (writer.written, writer.batches, writer.dropped) == (10, batches, 0)


async def test_stop_drains_the_queue(engine: AsyncEngine, records_table: Table) -> None:
    writer = OpRecordWriter(queue_size=1000, batch_size=50, table=records_table)
    for i in range(500):  # queued before the writer even starts
        writer.enqueue(record(i))
    await writer.start(engine)
    await writer.stop()
    assert await count_rows(engine, records_table) == 500
    assert (writer.written, writer.dropped) == (500, 0)


async def test_unreachable_database_drops_and_counts(
    records_table: Table, settings_factory: Any, closed_port: int
) -> None:
    dead = create_async_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/none")
    settings = settings_factory(oprecord_queue_size=5, oprecord_batch_size=2)
    observer = Observer(settings, records_table=records_table, drain_timeout_seconds=1.0)
    await observer.start(dead)
    before = dropped_total()
    completed = 0
    for _ in range(50):  # no await between operations: the writer cannot have run at all
        async with observer.track("quote.update"):
            pass
        completed += 1
    assert completed == 50
    assert observer.records.dropped == 45  # the queue holds 5; the rest were dropped at once
    await observer.stop()
    assert (observer.records.written, observer.records.dropped) == (0, 50)
    assert dropped_total() == before + 50
    await dead.dispose()


async def test_missing_table_drops_the_batch_after_bounded_retries(
    engine: AsyncEngine, records_table: Table
) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE operation_records"))
    writer = OpRecordWriter(
        queue_size=100, batch_size=10, table=records_table, retry_delay_seconds=0.001
    )
    await writer.start(engine)
    for i in range(4):
        writer.enqueue(record(i))
    await writer.stop(timeout_seconds=5)
    assert (writer.written, writer.dropped) == (0, 4)


async def test_a_blocked_table_never_holds_up_operations(
    engine: AsyncEngine, records_table: Table, settings_factory: Any, until: Any
) -> None:
    """A writer stuck on a lock: operations keep completing; records land once it is released."""
    observer = Observer(settings_factory(oprecord_batch_size=100), records_table=records_table)
    await observer.start(engine)
    async with engine.connect() as locker:
        await locker.execute(text("LOCK TABLE operation_records IN ACCESS EXCLUSIVE MODE"))
        async with observer.track("quote.update"):
            pass
        await until(lambda: observer.records.pending == 0)  # the writer took the batch and blocks
        for _ in range(20):
            async with observer.track("quote.update"):
                pass
            await asyncio.sleep(0)  # let the event loop run: the writer still cannot finish
        assert observer.records.written == 0
        await locker.rollback()
    await observer.stop()
    assert await count_rows(engine, records_table) == 21


async def test_summary_from_records_matches_the_in_memory_window(
    engine: AsyncEngine, records_table: Table, settings_factory: Any
) -> None:
    observer = Observer(settings_factory(), records_table=records_table)
    durations = [float(v) for v in range(1, 41)]
    records = [record(i, op="quote.update", ms=ms) for i, ms in enumerate(durations)]
    records += [
        record(100 + i, op="quote.send", ms=5.0 * i, code="QUOTE_ALREADY_SENT") for i in range(3)
    ]
    records += [record(200, op="quote.update", ms=2.5, code="QUOTE_CONFLICT_VERSION")]
    records += [record(300 + i, op="quote.read", ms=0.5 + i) for i in range(7)]
    for r in records:
        observer.window.add(r)
        observer.records.enqueue(r)
    async with observer.track("quote.update"):
        observer.db_rollback("DATABASE_TIMEOUT")
    await observer.start(engine)
    await observer.stop()

    from_table = await summary_from_records(
        engine, datetime.now(UTC) - timedelta(hours=1), table=records_table
    )
    in_memory = observer.summary()
    # The tracked update took real time; replace it on both sides by comparing everything else.
    for key in ("operations", "saves"):
        assert set(from_table[key]) == set(in_memory[key])
    assert from_table["operations"]["quote.read"] == in_memory["operations"]["quote.read"]
    assert from_table["operations"]["quote.send"] == in_memory["operations"]["quote.send"]
    for key in ("errorRateByCode", "errorRate", "conflictRate", "rollbackRate"):
        assert from_table[key] == in_memory[key], key
    assert from_table["window"]["size"] == in_memory["window"]["size"] == 52
    assert from_table["saves"]["count"] == 45
    assert from_table["rollbackRate"] == round(1 / 45, 6)
    assert from_table["errorRateByCode"] == {
        "QUOTE_ALREADY_SENT": round(3 / 45, 6),
        "QUOTE_CONFLICT_VERSION": round(1 / 45, 6),
    }


async def test_summary_from_records_respects_since(
    engine: AsyncEngine, records_table: Table
) -> None:
    writer = OpRecordWriter(queue_size=10, batch_size=10, table=records_table)
    old = OperationRecord(
        recorded_at=datetime.now(UTC) - timedelta(days=3),
        correlation_id="REQ-OLD",
        operation="quote.update",
        outcome="success",
        duration_ms=9.0,
        pid=1,
    )
    writer.enqueue(old)
    writer.enqueue(record(1, ms=4.0))
    await writer.start(engine)
    await writer.stop()
    summary = await summary_from_records(
        engine, datetime.now(UTC) - timedelta(days=1), table=records_table
    )
    assert summary["saves"]["count"] == 1
    assert summary["operations"]["quote.update"]["maxMs"] == 4.0
    empty = await summary_from_records(
        engine, datetime.now(UTC) + timedelta(days=1), table=records_table
    )
    assert empty["window"]["size"] == 0
    assert empty["saves"]["avgMs"] is None


def test_the_application_table_matches_the_brief() -> None:
    tables = pytest.importorskip("tripquote.db.tables", reason="db/tables.py not written yet")
    app_table: Table = tables.operation_records
    brief = define_operation_records(MetaData())

    def shape(table: Table) -> list[tuple[str, str, bool]]:
        def base(column: Column[Any]) -> str:  # a TypeDecorator stands for its impl
            return repr(getattr(column.type, "impl", column.type))

        return [(c.name, base(c), c.nullable is True) for c in table.columns]

    assert shape(app_table) == shape(brief)
    # The brief's key (id) and the partition key (migration 0008: partitioned by day on
    # recorded_at, whose unique keys must include it).
    assert [c.name for c in brief.primary_key] == ["id"]
    assert [c.name for c in app_table.primary_key] == ["id", "recorded_at"]
    assert any([c.name for c in index.columns] == ["recorded_at"] for index in app_table.indexes)
