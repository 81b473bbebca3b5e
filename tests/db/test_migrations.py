"""Migrations are the only way the schema is made: upgrade -> downgrade to base -> upgrade
works on both databases, and the models and migrations agree (no pending autogenerate diff)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import PG_ADMIN_URL, _run_admin, make_settings
from tripquote.db import migrate
from tripquote.db.tables import metadata


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'migrations.db'}"
        return
    name = f"tripquote_mig_{uuid.uuid4().hex[:8]}"
    asyncio.run(_run_admin(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    asyncio.run(_run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _inspect(url: str) -> tuple[set[str], list[Any]]:
    async def run() -> tuple[set[str], list[Any]]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:

                def look(sync_conn: Any) -> tuple[set[str], list[Any]]:
                    tables = set(inspect(sync_conn).get_table_names())
                    context = MigrationContext.configure(
                        sync_conn, opts={"compare_type": True, "compare_server_default": True}
                    )
                    return tables, compare_metadata(context, metadata)

                return await conn.run_sync(look)
        finally:
            await engine.dispose()

    return asyncio.run(run())


def test_upgrade_downgrade_upgrade_and_no_drift(empty_db: str) -> None:
    settings = make_settings(empty_db)
    expected = set(metadata.tables)

    migrate.upgrade(settings)
    tables, diff = _inspect(empty_db)
    assert expected <= tables
    assert diff == []

    migrate.downgrade(settings, "-1")  # one step back, then forward again
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
