"""Fixtures of the fault tests: a migrated database per module on the shared PostgreSQL, an
agent on it, and fault triggers installed for one test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest_asyncio

from tests.conftest import Actor
from tests.servers import Database, migrated_database, provision_actor


@pytest_asyncio.fixture(scope="module")
async def database() -> AsyncIterator[Database]:
    """A database of this module's own (``tripquote_faults_<pid>_…``), dropped afterwards."""
    async with migrated_database("faults") as database:
        yield database


@pytest_asyncio.fixture(scope="module")
async def actor(database: Database) -> Actor:
    """An agent of a new agency, with one client and a token."""
    return await provision_actor(database.url)


@pytest_asyncio.fixture
async def trigger(database: Database) -> AsyncIterator[Any]:
    """``await install(plpgsql_body)`` puts a BEFORE INSERT trigger on quote_items, with a
    sequence ``TG_NAME || '_n'`` for counting; everything installed is dropped after the test."""
    installed: list[str] = []
    conn = await asyncpg.connect(database.dsn)

    async def install(body: str) -> str:
        name = f"fault_{uuid.uuid4().hex[:8]}"
        await conn.execute(f"CREATE SEQUENCE {name}_n")
        await conn.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ {body} $$"
        )
        await conn.execute(
            f"CREATE TRIGGER {name} BEFORE INSERT ON quote_items "
            f"FOR EACH ROW EXECUTE FUNCTION {name}()"
        )
        installed.append(name)
        return name

    try:
        yield install
    finally:
        for name in installed:
            await conn.execute(f"DROP TRIGGER IF EXISTS {name} ON quote_items")
            await conn.execute(f"DROP FUNCTION IF EXISTS {name}()")
            await conn.execute(f"DROP SEQUENCE IF EXISTS {name}_n")
        await conn.close()
