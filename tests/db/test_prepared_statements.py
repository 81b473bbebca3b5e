"""PostgreSQL: the pool is warmed with the save path's statements already prepared, as no-ops
that write nothing, and sessions use generic plans from a statement's first run."""

from __future__ import annotations

from typing import Any

import pytest_asyncio

from tests.conftest import World, make_settings
from tripquote.db.engine import pooled_driver
from tripquote.quotes import pg

SAVE_STATEMENTS = {pg.LOAD_FOR_WRITE, pg.LOAD_FOR_CREATE, pg.CREATE, pg.UPDATE}


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
        await pg.prepare_save_statements(one)  # running them again still writes nothing
    assert await world.table_counts() == before
