"""A real PgBouncer 1.18 (Debian's; no prepared-statement support) in ``pool_mode =
transaction`` in front of a migrated database of its own on the tests' PostgreSQL, and the app
on it with ``TRIPQUOTE_DB_POOLER=transaction``: ``world`` and ``db_url`` here are the ones of
tests/conftest.py through the bouncer, so save-path tests imported into this folder run
through it unchanged.

PgBouncer missing: these tests skip with the reason, except under CI (``CI`` set), where they
fail: .ci/run installs it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import World, make_settings
from tests.ops.support import in_ci
from tests.servers import Database, PgBouncer, migrated_database, pgbouncer_program

BOUNCER_POOL_SIZE = 5
"""Server connections per database and user: fewer than the app's 15, so its connections'
transactions really are spread over server connections they do not own."""


def require_pgbouncer() -> None:
    """Skip (fail under CI) when the ``pgbouncer`` program is not installed."""
    if pgbouncer_program() is None:
        reason = "pgbouncer is not installed (apt-get install pgbouncer; .ci/run installs it)"
        if in_ci():
            pytest.fail(f"{reason}: CI must run the PgBouncer tests")
        pytest.skip(reason)


@pytest_asyncio.fixture(scope="session")
async def bounced_database() -> AsyncIterator[Database]:
    """A migrated database of its own (dropped at the end of the session)."""
    require_pgbouncer()
    async with migrated_database("pgbouncer") as database:
        yield database


@pytest_asyncio.fixture(scope="session")
async def bouncer(bounced_database: Database) -> AsyncIterator[PgBouncer]:
    """PgBouncer in transaction mode, stopped by its PID at the end of the session."""
    started = await PgBouncer(default_pool_size=BOUNCER_POOL_SIZE).start()
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def db_url(bouncer: PgBouncer, bounced_database: Database) -> str:
    """The database, through the bouncer."""
    return bouncer.url(bounced_database.name)


@pytest_asyncio.fixture
async def world(db_url: str, world_factory: Any) -> World:
    """The app through the bouncer with ``TRIPQUOTE_DB_POOLER=transaction``."""
    built: World = await world_factory(make_settings(db_url, db_pooler="transaction"))
    return built
