"""PostgreSQL: the pool is warmed with the save path's statements already prepared, as no-ops
that write nothing, and sessions use generic plans from a statement's first run."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest_asyncio

from tests.conftest import World, make_settings, quote_body
from tripquote.db.engine import pooled_driver
from tripquote.quotes import sql
from tripquote.quotes.store import prepare_statements

SAVE_STATEMENTS = {sql.LOAD.text, sql.CREATE.text, sql.EDIT.text, sql.TRANSITION.text}


@pytest_asyncio.fixture
async def world(pg_url: str, world_factory: Any) -> World:
    built: World = await world_factory(make_settings(pg_url, db_pool_size=3))
    return built


async def test_every_warmed_connection_has_the_save_statements_prepared(world: World) -> None:
    await world.actor()  # something stored, to show the warm-up writes nothing
    before = await world.table_counts()
    # Hold all three pooled connections at once so each is looked at.
    async with (
        pooled_driver(world.engine) as one,
        pooled_driver(world.engine) as two,
        pooled_driver(world.engine) as three,
    ):
        for driver in (one, two, three):
            prepared = {
                row[0] for row in await driver.fetch("SELECT statement FROM pg_prepared_statements")
            }
            assert prepared >= SAVE_STATEMENTS
            assert await driver.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        await prepare_statements(one)  # running them again still writes nothing
    assert await world.table_counts() == before


async def test_a_locked_table_delays_start_up_by_the_warm_up_timeouts_only(
    pg_url: str, world_factory: Any
) -> None:
    # A VACUUM FULL or an index build holds the table; start-up must not wait for it the
    # whole lock_timeout (TX_TIMEOUT_SECONDS, 60 here) per statement and connection.
    holder = await asyncpg.connect(pg_url.replace("+asyncpg", ""))
    try:
        locked = holder.transaction()
        await locked.start()
        await holder.execute("LOCK TABLE quotes IN ACCESS EXCLUSIVE MODE")
        world: World = await asyncio.wait_for(
            world_factory(make_settings(pg_url, db_pool_size=3, tx_timeout_seconds=60)), 30
        )
        await locked.rollback()
    finally:
        await holder.close()
    actor = await world.actor()
    response = await world.client.post(
        "/api/agents/quotes",
        json=quote_body("kyoto-autumn-jpy", actor.client_id),
        headers=actor.headers,
    )
    assert response.status_code == 201, response.text
