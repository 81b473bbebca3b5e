"""``/health/ready`` is 200 only when the database answers and carries this release's schema:
never migrated, behind, unreadable or locked → 503 SERVICE_NOT_READY saying which; a revision
this release does not know (a newer schema kept after a code rollback) is served."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import make_settings
from tripquote.db import migrate


async def _set_revision(url: str, revision: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("UPDATE alembic_version SET version_num = :r"), {"r": revision})
    finally:
        await engine.dispose()


async def _ready(world_factory: Any, url: str) -> tuple[int, dict[str, Any]]:
    world = await world_factory(make_settings(url))
    response = await world.client.get("/health/ready")
    return response.status_code, response.json()


async def test_ready_only_on_this_releases_schema(empty_db: str, world_factory: Any) -> None:
    head, _ = migrate.revisions()
    status, body = await _ready(world_factory, empty_db)  # the app starts on an empty database
    assert status == 503, body
    assert body["errorCode"] == "SERVICE_NOT_READY"
    assert body["details"] == {"database": "not migrated", "expected": head}

    await asyncio.to_thread(migrate.upgrade, make_settings(empty_db), "0003")
    status, body = await _ready(world_factory, empty_db)
    assert status == 503, body
    assert body["details"] == {
        "database": "migration pending",
        "revision": "0003",
        "expected": head,
    }

    await asyncio.to_thread(migrate.upgrade, make_settings(empty_db))
    status, body = await _ready(world_factory, empty_db)
    assert (status, body) == (200, {"status": "ready", "database": "ok"})

    await _set_revision(empty_db, "9999_from_a_newer_release")
    status, body = await _ready(world_factory, empty_db)
    assert status == 200, body


async def test_an_unreadable_or_locked_schema_version(empty_db: str, world_factory: Any) -> None:
    head, _ = migrate.revisions()
    await asyncio.to_thread(migrate.upgrade, make_settings(empty_db))
    if empty_db.startswith("postgresql"):
        # A migration in progress holds alembic_version: the database answers, the version
        # cannot be read within the probe's 2 s.
        holder = await asyncpg.connect(empty_db.replace("+asyncpg", ""))
        try:
            locked = holder.transaction()
            await locked.start()
            await holder.execute("LOCK TABLE alembic_version IN ACCESS EXCLUSIVE MODE")
            status, body = await _ready(world_factory, empty_db)
            await locked.rollback()
        finally:
            await holder.close()
        assert status == 503, body
        assert body["details"] == {"database": "schema check timed out", "expected": head}
    engine = create_async_engine(empty_db)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("ALTER TABLE alembic_version RENAME COLUMN version_num TO v"))
    finally:
        await engine.dispose()
    status, body = await _ready(world_factory, empty_db)
    assert status == 503, body
    assert body["details"] == {"database": "schema unreadable", "expected": head}


async def test_ready_while_every_pooled_connection_is_busy(db_url: str, world_factory: Any) -> None:
    """Readiness asks the database on a connection of its own: with the pool (2 here) all
    taken by work waiting on a lock, the database still answers, so the instance is ready (a
    tester's hot row made every instance report the database unreachable at once)."""
    world = await world_factory(make_settings(db_url, db_pool_size=2, db_max_overflow=0))
    engine = world.app.state.engine
    async with engine.connect() as first, engine.connect() as second:
        await first.execute(text("SELECT 1"))
        await second.execute(text("SELECT 1"))  # both checked out: the pool is empty
        response = await world.client.get("/health/ready")
    assert (response.status_code, response.json()) == (200, {"status": "ready", "database": "ok"})
