"""Migrations are the only way the schema is made: upgrade -> downgrade to base -> upgrade
works on both databases, and the models and migrations agree (no pending autogenerate diff)."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import cli_error, make_settings
from tripquote.db import migrate
from tripquote.db.retention import include_object, is_partition
from tripquote.db.tables import metadata


def _inspect(url: str) -> tuple[set[str], list[Any]]:
    async def run() -> tuple[set[str], list[Any]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:

                def look(sync_conn: Any) -> tuple[set[str], list[Any]]:
                    tables = {
                        t for t in inspect(sync_conn).get_table_names() if not is_partition(t)
                    }
                    context = MigrationContext.configure(
                        sync_conn,
                        opts={
                            "compare_type": True,
                            "compare_server_default": True,
                            "include_object": include_object,
                        },
                    )
                    return tables, compare_metadata(context, metadata)

                return await conn.run_sync(look)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _columns(url: str, table: str) -> set[str]:
    async def run() -> set[str]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync_conn: {c["name"] for c in inspect(sync_conn).get_columns(table)}
                )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _sql(url: str, *statements: str) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as conn:
                results = [await conn.execute(text(statement)) for statement in statements]
                return [r.all() if r.returns_rows else None for r in results]
        finally:
            await engine.dispose()

    return asyncio.run(run())


QUOTE = (
    "INSERT INTO quotes (id, agency_id, agent_id, client_id, trip_name, destination,"
    " start_date, end_date, travelers, currency, markup_percent, discount,"
    " expires_in_days, subtotal, markup_amount, total, status, version, created_at,"
    " last_modified_by, last_modified_at) VALUES ('{id}', 'g1', '{agent}', 'c1', 'T', 'D',"
    " '2027-01-01', '2027-01-05', 1, 'EUR', 0, 0, 14, 0, 0, 0, '{status}', {version},"
    " '2026-11-29 10:00:00', '{agent}', '2026-11-29 10:00:00')"
)
"""A quote of agency ``g1``, client ``c1`` (``_owners``): format with id, agent, status,
version."""


def _owners(*agents: str) -> list[str]:
    """The INSERTs of agency ``g1``, its ``agents`` and client ``c1`` of the first."""
    return [
        "INSERT INTO agencies (id, name, timezone, created_at)"
        " VALUES ('g1', 'A', 'UTC', '2026-11-29 10:00:00')",
        *(
            f"INSERT INTO agents (id, agency_id, email, name, role, active, created_at) VALUES"
            f" ('{agent}', 'g1', '{agent}@x.example', 'N', 'agent', true, '2026-11-29 10:00:00')"
            for agent in agents
        ),
        "INSERT INTO clients (id, agency_id, agent_id, name, created_at)"
        f" VALUES ('c1', 'g1', '{agents[0]}', 'C', '2026-11-29 10:00:00')",
    ]


def test_open_quote_bound_starts_at_the_draft_and_sent_quotes(empty_db: str) -> None:
    settings = make_settings(empty_db)
    migrate.upgrade(settings, "0002")
    statuses = ["DRAFT", "DRAFT", "SENT", "ACCEPTED", "REJECTED", "EXPIRED", "CANCELLED"]
    _sql(
        empty_db,
        *_owners("a1", "a2"),
        *(
            QUOTE.format(id=f"q{n}", agent="a1", status=status, version=1)
            for n, status in enumerate(statuses)
        ),
    )
    migrate.upgrade(settings)
    rows = _sql(empty_db, "SELECT id, open_quote_bound FROM agents ORDER BY id")[0]
    assert [tuple(row) for row in rows] == [("a1", 3), ("a2", 0)]


def test_0014_rows_written_without_ids_get_them_back_on_downgrade(empty_db: str) -> None:
    settings = make_settings(empty_db)
    migrate.upgrade(settings, "0013")
    before = (
        "INSERT INTO quote_items (id, item_id, quote_id, position, type, description, quantity,"
        " unit_price, line_total, details) VALUES ('row-0', {item}, 'q1', {n}, 'HOTEL', 'H', 1,"
        " 10, 10, '{{}}')"
    )
    _sql(
        empty_db,
        *_owners("a1"),
        QUOTE.format(id="q1", agent="a1", status="DRAFT", version=2),
        before.format(item="NULL", n=0),  # written before 0008: its row id is its API id
        "INSERT INTO quote_revisions (id, quote_id, version, operation, status, actor_id,"
        " correlation_id, created_at, snapshot) VALUES ('rev-1', 'q1', 1, 'CREATE', 'DRAFT',"
        " 'a1', 'c', '2026-11-29 10:00:00', '{}')",
    )
    migrate.upgrade(settings)  # 0014: rows written from now on have no row id
    _sql(
        empty_db,
        "INSERT INTO quote_items (item_id, quote_id, position, type, description, quantity,"
        " unit_price, line_total, details) VALUES ('item-1', 'q1', 1, 'HOTEL', 'H', 1, 10, 10,"
        " '{}')",
        "INSERT INTO quote_revisions (quote_id, version, operation, status, actor_id,"
        " correlation_id, created_at, snapshot) VALUES ('q1', 2, 'UPDATE', 'DRAFT', 'a1', 'c',"
        " '2026-11-29 11:00:00', '{}')",
    )
    with pytest.raises(IntegrityError):  # the key is the quote's position, as before
        _sql(empty_db, before.format(item="'item-2'", n=1).replace("'row-0', ", "NULL, "))

    migrate.downgrade(settings, "0013")
    items = _sql(empty_db, "SELECT position, id, item_id FROM quote_items ORDER BY position")[0]
    assert [tuple(row) for row in items] == [(0, "row-0", None), (1, "item-1", "item-1")]
    revisions = _sql(empty_db, "SELECT version, id FROM quote_revisions ORDER BY version")[0]
    assert revisions[0][1] == "rev-1" and len(revisions[1][1]) == 36
    migrate.upgrade(settings)
    assert _primary_keys(empty_db) == {
        "quote_items": ["quote_id", "position"],
        "quote_revisions": ["quote_id", "version"],
    }


def test_0014_downgrade_when_a_pre_0008_item_moved_since(empty_db: str) -> None:
    # An item written before 0008 has its row id as its API id. Moved by this release, the
    # row at its new position is written without an id and with that API id as item_id,
    # while the row at its old position keeps the id: the downgrade may not give the new row
    # its item_id as its id (duplicate primary key; the downgrade failed).
    settings = make_settings(empty_db)
    migrate.upgrade(settings, "0013")
    item = (
        "INSERT INTO quote_items (id, item_id, quote_id, position, type, description, quantity,"
        " unit_price, line_total, details) VALUES ({id}, {item}, 'q1', {n}, 'HOTEL', 'H', 1,"
        " 10, 10, '{{}}')"
    )
    _sql(
        empty_db,
        *_owners("a1"),
        QUOTE.format(id="q1", agent="a1", status="DRAFT", version=2),
        item.format(id="'row-0'", item="NULL", n=0),
    )
    migrate.upgrade(settings)
    _sql(  # an edit by this release: a new item first, the old one moved to position 1
        empty_db,
        "UPDATE quote_items SET item_id = 'item-new' WHERE position = 0",
        item.format(id="NULL", item="'row-0'", n=1),
    )
    api_ids = "SELECT position, coalesce(item_id, id) FROM quote_items ORDER BY position"
    before = _sql(empty_db, api_ids)[0]

    migrate.downgrade(settings, "0013")
    assert _sql(empty_db, api_ids)[0] == before  # the previous release reads the same ids
    rows = _sql(empty_db, "SELECT position, id FROM quote_items ORDER BY position")[0]
    assert rows[0][1] == "row-0" and len(rows[1][1]) == 36


def _fillfactors(url: str) -> dict[str, int | None]:
    rows = _sql(
        url,
        "SELECT relname, (SELECT split_part(o, '=', 2) FROM unnest(reloptions) o"
        "  WHERE o LIKE 'fillfactor=%') FROM pg_class"
        " WHERE relname IN ('quotes', 'quote_items') AND relkind = 'r'",
    )[0]
    return {name: int(value) if value else None for name, value in rows}


def _primary_keys(url: str) -> dict[str, list[str]]:
    """The primary key columns of ``quote_items`` and ``quote_revisions``, in key order."""

    async def run() -> dict[str, list[str]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync_conn: {
                        table: inspect(sync_conn).get_pk_constraint(table)["constrained_columns"]
                        for table in ("quote_items", "quote_revisions")
                    }
                )
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _money_types(url: str) -> set[str]:
    rows = _sql(
        url,
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute"
        " WHERE attrelid IN ('quotes'::regclass, 'quote_items'::regclass)"
        " AND attname IN ('discount', 'subtotal', 'markup_amount', 'total', 'unit_price',"
        " 'line_total')",
    )[0]
    return {row[0] for row in rows}


def test_money_keeps_four_decimals_and_the_downgrade_will_not_round_them(empty_db: str) -> None:
    settings = make_settings(empty_db)
    migrate.upgrade(settings)
    _sql(
        empty_db,
        "INSERT INTO agencies (id, name, timezone, created_at) VALUES ('g', 'G', 'UTC', now())",
        "INSERT INTO agents (id, agency_id, email, name, role, active, created_at)"
        " VALUES ('a', 'g', 'a@x.example', 'A', 'agent', true, now())",
        "INSERT INTO clients (id, agency_id, agent_id, name, email, created_at)"
        " VALUES ('c', 'g', 'a', 'C', 'c@x.example', now())",
        "INSERT INTO quotes (id, agency_id, agent_id, client_id, trip_name, destination,"
        " start_date, end_date, travelers, currency, markup_percent, discount, expires_in_days,"
        " subtotal, markup_amount, total, status, version, created_at, last_modified_by,"
        " last_modified_at) VALUES ('q', 'g', 'a', 'c', 'T', 'D', '2027-01-01', '2027-01-02', 1,"
        " 'CLF', 0, 0.0001, 14, 1.2345, 0, 1.2344, 'DRAFT', 1, now(), 'a', now())",
    )
    assert _sql(empty_db, "SELECT subtotal, total FROM quotes")[0] == [
        (Decimal("1.2345"), Decimal("1.2344"))
    ]
    with pytest.raises(RuntimeError, match="more than 2 decimal places"):
        migrate.downgrade(settings, "0004")
    # The command says so in one JSON line, exit status 1, no traceback.
    for target, says in (("0004", "more than 2 decimal places"), ("nosuch", "nosuch")):
        event = cli_error(empty_db, "db", "downgrade", target)
        assert event["event"] == "db_downgrade_refused" and says in event["error"]
    assert _money_types(empty_db) == {"numeric(18,4)"}
    assert _sql(empty_db, "SELECT subtotal, total FROM quotes")[0] == [
        (Decimal("1.2345"), Decimal("1.2344"))
    ]


def _partitioned(url: str) -> dict[str, str]:
    """The partitioned tables and their strategy (``r``: by range)."""
    rows = _sql(
        url,
        "SELECT c.relname, p.partstrat::text FROM pg_partitioned_table p"
        " JOIN pg_class c ON c.oid = p.partrelid",
    )[0]
    return {name: strategy for name, strategy in rows}


def test_upgrade_downgrade_upgrade_and_no_drift(empty_db: str) -> None:
    settings = make_settings(empty_db)
    expected = set(metadata.tables)

    migrate.upgrade(settings)
    tables, diff = _inspect(empty_db)
    assert expected <= tables
    assert diff == []

    postgres = empty_db.startswith("postgresql")
    if postgres:
        assert _fillfactors(empty_db) == {"quotes": 80, "quote_items": 80}
        assert _money_types(empty_db) == {"numeric(18,4)"}
    if postgres:
        assert _partitioned(empty_db) == {
            "operation_records": "r",
            "events": "r",
            "webhook_deliveries": "r",
        }
    assert _primary_keys(empty_db) == {
        "quote_items": ["quote_id", "position"],
        "quote_revisions": ["quote_id", "version"],
    }
    migrate.downgrade(settings, "-1")  # one step back (0014: keyed by their quote)
    assert _primary_keys(empty_db) == {"quote_items": ["id"], "quote_revisions": ["id"]}
    migrate.downgrade(settings, "-1")  # 0013: deliveries fanned out after commit
    assert "xact" not in _columns(empty_db, "events")
    assert "fanned_out_to" not in _columns(empty_db, "webhook_subscriptions")
    migrate.downgrade(settings, "-1")  # 0012: the webhook outbox partitioned
    if postgres:
        assert _partitioned(empty_db) == {"operation_records": "r"}
    migrate.downgrade(settings, "-1")  # and 0011 (operation records partitioned)
    if postgres:
        assert _partitioned(empty_db) == {}
    migrate.downgrade(settings, "-1")  # and 0010 (proposals)
    assert "proposals" not in _inspect(empty_db)[0]
    migrate.downgrade(settings, "-1")  # and 0009 (the outbox)
    tables, _ = _inspect(empty_db)
    assert not tables & {"events", "webhook_subscriptions", "webhook_deliveries"}
    migrate.downgrade(settings, "-1")  # and 0008 (item ids, merge records)
    assert "merge" not in _columns(empty_db, "quote_revisions")
    migrate.downgrade(settings, "-1")  # and 0007
    assert "save_id" not in _columns(empty_db, "quote_revisions")
    migrate.downgrade(settings, "-1")  # and 0006
    assert "tokens_valid_after" not in _columns(empty_db, "agents")
    migrate.downgrade(settings, "-1")  # and 0005
    if postgres:
        assert _money_types(empty_db) == {"numeric(14,2)"}
    migrate.downgrade(settings, "-1")  # and 0004
    if postgres:
        assert _fillfactors(empty_db) == {"quotes": None, "quote_items": None}
    migrate.downgrade(settings, "-1")  # and 0003
    assert "open_quote_bound" not in _columns(empty_db, "agents")
    migrate.downgrade(settings, "-1")  # and 0002
    tables, _ = _inspect(empty_db)
    assert "quotes" in tables and "idempotency_keys" not in tables
    migrate.upgrade(settings)

    migrate.downgrade(settings, "base")
    tables, _ = _inspect(empty_db)
    assert tables & expected == set()

    migrate.upgrade(settings)
    tables, diff = _inspect(empty_db)
    assert expected <= tables
    assert diff == []


def test_0006_refuses_agents_whose_emails_differ_by_case_then_makes_them_unique(
    empty_db: str,
) -> None:
    settings = make_settings(empty_db)
    migrate.upgrade(settings, "0005")
    agent = (
        "INSERT INTO agents (id, agency_id, email, name, role, active, created_at)"
        " VALUES ('{id}', 'g1', '{email}', 'Casey', 'agent', true, now())"
    )
    _sql(
        empty_db,
        "INSERT INTO agencies (id, name, timezone, created_at) VALUES ('g1', 'G', 'UTC', now())",
        agent.format(id="a1", email="casey@demo.example"),
        agent.format(id="a2", email="Casey@Demo.Example"),
        agent.format(id="a3", email="other@demo.example"),
    )
    refused = cli_error(empty_db, "db", "upgrade")
    assert refused["event"] == "db_upgrade_refused"
    assert "agents a1, a2" in refused["error"] and "a3" not in refused["error"]
    assert "tokens_valid_after" not in _columns(empty_db, "agents")  # nothing changed

    _sql(empty_db, "UPDATE agents SET email = 'casey.second@demo.example' WHERE id = 'a2'")
    migrate.upgrade(settings)
    assert "tokens_valid_after" in _columns(empty_db, "agents")
    with pytest.raises(IntegrityError):
        _sql(empty_db, agent.format(id="a4", email="CASEY@demo.example"))

    migrate.downgrade(settings, "0005")
    assert "tokens_valid_after" not in _columns(empty_db, "agents")
    _sql(empty_db, agent.format(id="a4", email="CASEY@demo.example"))  # as before 0006
    with pytest.raises(IntegrityError):  # the exact duplicate is still refused
        _sql(empty_db, agent.format(id="a5", email="casey@demo.example"))
