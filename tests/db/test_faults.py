"""Real database faults: held locks, constraint failures after items were written, a killed
connection, serialization failures and deadlocks. Nothing is ever half-written."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.api.test_errors_api import assert_envelope
from tests.conftest import World, make_settings, quote_body
from tripquote.observability.logging import flush_logs


@pytest_asyncio.fixture
async def fast_world(db_url: str, world_factory: Any) -> World:
    world: World = await world_factory(
        make_settings(db_url, tx_timeout_seconds=1, tx_max_attempts=3)
    )
    return world


async def _create(world: World, actor: Any, **changes: Any) -> Any:
    body = {**quote_body("iceland-ring-road-eur", actor.client_id), **changes}
    return await world.client.post("/api/agents/quotes", json=body, headers=actor.headers)


async def test_held_row_lock_times_out_cleanly(fast_world: World, db_url: str) -> None:
    world = fast_world
    actor = await world.actor()
    quote_id = (await _create(world, actor)).json()["quoteId"]
    before = await world.snapshot(quote_id)
    engine = create_async_engine(db_url)
    holder = await engine.connect()
    await holder.begin()
    await holder.execute(text("SELECT id FROM quotes WHERE id = :id FOR UPDATE"), {"id": quote_id})
    try:
        started = time.monotonic()
        response = await world.client.patch(
            f"/api/agents/quotes/{quote_id}",
            json={"version": 1, "travelers": 2},
            headers=actor.headers,
        )
        elapsed = time.monotonic() - started
    finally:
        await holder.rollback()
        await holder.close()
        await engine.dispose()
    body = assert_envelope(response, "DATABASE_TIMEOUT", 503)
    assert body["retryable"] is True
    assert int(response.headers["retry-after"]) >= 1
    # Bounded by the configured 1 s timeout (the default would wait 10 s); slack for a busy CI.
    assert elapsed < world.settings.tx_timeout_seconds + 5
    assert await world.snapshot(quote_id) == before
    # The lock is gone: the same save now goes through.
    retry = await world.client.patch(
        f"/api/agents/quotes/{quote_id}", json={"version": 1, "travelers": 2}, headers=actor.headers
    )
    assert retry.status_code == 200


async def test_failure_after_items_written_leaves_no_trace(world: World, poison_item: str) -> None:
    actor = await world.actor()
    body = quote_body("iceland-ring-road-eur", actor.client_id)
    body["items"][-1]["description"] = poison_item  # the last item fails
    before = await world.table_counts()
    response = await world.client.post("/api/agents/quotes", json=body, headers=actor.headers)
    assert_envelope(response, "QUOTE_PERSISTENCE_FAILED", 503)
    assert await world.table_counts() == before

    quote_id = (await _create(world, actor)).json()["quoteId"]
    before_quote = await world.snapshot(quote_id)
    response = await world.client.patch(
        f"/api/agents/quotes/{quote_id}",
        json={"version": 1, "tripName": "changed", "items": body["items"]},
        headers=actor.headers,
    )
    assert_envelope(response, "QUOTE_PERSISTENCE_FAILED", 503)
    assert await world.snapshot(quote_id) == before_quote


@pytest_asyncio.fixture
async def pg_trigger(pg_url: str) -> AsyncIterator[Any]:
    """Install a plpgsql BEFORE INSERT trigger on quote_items for one test; drops it after."""
    engine = create_async_engine(pg_url)
    installed: list[str] = []

    async def install(body: str) -> str:
        name = f"fault_{uuid.uuid4().hex[:8]}"
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ {body} $$"
            )
            await conn.exec_driver_sql(
                f"CREATE TRIGGER {name} BEFORE INSERT ON quote_items "
                f"FOR EACH ROW EXECUTE FUNCTION {name}()"
            )
        installed.append(name)
        return name

    yield install
    async with engine.begin() as conn:
        for name in installed:
            await conn.exec_driver_sql(f"DROP TRIGGER {name} ON quote_items")
            await conn.exec_driver_sql(f"DROP FUNCTION {name}()")
            await conn.exec_driver_sql(f"DROP SEQUENCE IF EXISTS {name}_n")
    await engine.dispose()


@pytest_asyncio.fixture
async def pg_world(pg_url: str, world_factory: Any) -> World:
    world: World = await world_factory(
        make_settings(pg_url, tx_timeout_seconds=2, tx_max_attempts=3)
    )
    return world


async def test_connection_killed_mid_transaction(pg_world: World, pg_trigger: Any) -> None:
    world = pg_world
    marker = f"KILL-{uuid.uuid4().hex[:8]}"
    await pg_trigger(
        f"BEGIN IF NEW.description = '{marker}' THEN "
        f"PERFORM pg_terminate_backend(pg_backend_pid()); END IF; RETURN NEW; END"
    )
    actor = await world.actor()
    body = quote_body("iceland-ring-road-eur", actor.client_id)
    body["items"][-1]["description"] = marker
    before = await world.table_counts()
    response = await world.client.post("/api/agents/quotes", json=body, headers=actor.headers)
    result = assert_envelope(response, "QUOTE_PERSISTENCE_FAILED", 503)
    assert result["retryable"] is True
    assert await world.table_counts() == before
    # The pool recovers without a restart: the next save succeeds.
    assert (await _create(world, actor)).status_code == 201


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"], ids=["serialization", "deadlock"])
async def test_retryable_failures_are_retried_then_succeed(
    pg_world: World, pg_url: str, pg_trigger: Any, sqlstate: str
) -> None:
    world = pg_world
    name = await pg_trigger(
        "BEGIN IF nextval(TG_NAME || '_n') <= 2 THEN "
        f"RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; END IF; RETURN NEW; END"
    )
    async with world.engine.begin() as conn:
        await conn.exec_driver_sql(f"CREATE SEQUENCE {name}_n")
    actor = await world.actor()
    response = await _create(world, actor)  # attempts 1 and 2 fail, attempt 3 commits
    assert response.status_code == 201, response.text
    quote_id = response.json()["quoteId"]
    assert await world.count("quotes", "id = :id", id=quote_id) == 1
    assert await world.count("quote_revisions", "quote_id = :id", id=quote_id) == 1


@pytest.mark.parametrize("sqlstate", ["40001", "40P01"])
async def test_retries_exhausted_is_transaction_aborted(
    pg_world: World, pg_trigger: Any, sqlstate: str
) -> None:
    world = pg_world
    await pg_trigger(
        f"BEGIN RAISE EXCEPTION 'injected' USING ERRCODE = '{sqlstate}'; RETURN NEW; END"
    )
    actor = await world.actor()
    before = await world.table_counts()
    response = await _create(world, actor)
    body = assert_envelope(response, "DATABASE_TRANSACTION_ABORTED", 503)
    assert body["retryable"] is True
    assert body["details"] == {"attempts": 3, "sqlstate": sqlstate}  # what aborted the last
    assert "retry-after" in response.headers
    assert await world.table_counts() == before


@pytest.mark.parametrize(
    ("sqlstate", "code"),
    [("XX000", "QUOTE_PERSISTENCE_FAILED"), ("40001", "DATABASE_TRANSACTION_ABORTED")],
)
async def test_what_the_database_said_is_logged_under_the_correlation_id(
    pg_world: World, pg_trigger: Any, capsys: pytest.CaptureFixture[str], sqlstate: str, code: str
) -> None:
    # The envelope carries a code and a cause; the log line carries the database's own words,
    # for the operator, without the statement or its parameters.
    world = pg_world
    await pg_trigger(
        f"BEGIN RAISE EXCEPTION 'injected fault for the log' USING ERRCODE = '{sqlstate}'; END"
    )
    actor = await world.actor()
    before = await world.table_counts()
    capsys.readouterr()
    response = await _create(world, actor)
    body = assert_envelope(response, code, 503)
    flush_logs()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    logged = [
        line
        for line in lines
        if line.get("correlation_id") == body["correlationId"] and line["event"] == "database_error"
    ]
    assert len(logged) == 1, lines
    assert logged[0]["level"] == "error"
    assert logged[0]["error_code"] == code
    assert logged[0]["sqlstate"] == sqlstate
    assert logged[0]["driver_message"] == "injected fault for the log"
    assert logged[0]["driver_error"].endswith("Error")
    assert "INSERT" not in json.dumps(logged[0])
    assert await world.table_counts() == before


@pytest.mark.parametrize(
    ("raised", "code", "status", "details"),
    [
        # A check naming its constraint: the client's value the validation missed.
        (
            "'new row violates check' USING ERRCODE = '23514', "
            "CONSTRAINT = 'quote_items_quantity_check', COLUMN = 'quantity'",
            "QUOTE_VALIDATION_FAILED",
            400,
            {
                "errors": [
                    {
                        "path": "quantity",
                        "code": "database_constraint",
                        "message": "The database refused the value (quote_items_quantity_check).",
                    }
                ],
                "cause": "23514",
            },
        ),
        # One naming none: a row no partition takes (a day's partition missing, maintenance
        # not run). Before: the same 400, not retryable, paging no one while saves failed.
        (
            "'no partition of relation \"events\" found for row' USING ERRCODE = '23514'",
            "QUOTE_PERSISTENCE_FAILED",
            503,
            {"cause": "23514"},
        ),
    ],
    ids=["a constraint", "no partition"],
)
async def test_a_check_violation_is_the_clients_only_when_it_names_a_constraint(
    pg_world: World, pg_trigger: Any, raised: str, code: str, status: int, details: Any
) -> None:
    world = pg_world
    await pg_trigger(f"BEGIN RAISE EXCEPTION {raised}; END")
    actor = await world.actor()
    before = await world.table_counts()
    body = assert_envelope(await _create(world, actor), code, status)
    assert (body["details"], body["retryable"]) == (details, status == 503)
    assert await world.table_counts() == before
