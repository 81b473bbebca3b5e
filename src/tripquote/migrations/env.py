"""Alembic environment: runs migrations over the async engine named by the Alembic config."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tripquote.db.migrate import CONNECT_TARGET
from tripquote.db.retention import include_object
from tripquote.db.tables import metadata

config = context.config

MIGRATION_LOCK = 0x7472_6970_5175_6F74
"""The PostgreSQL advisory lock (per database) each upgrade, downgrade or ``current`` holds for
its transaction: concurrent ``tripquote db upgrade`` and ``demo`` runs migrate one after the
other, the later ones finding the work done, instead of racing to create the same tables."""


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        compare_server_default=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


CONNECT_TIMEOUT_SECONDS = 10.0
"""A PostgreSQL server that accepts the connection and never answers fails the migration
after this long (asyncpg's own default is 60 s), like the service's engine."""


async def _run_async() -> None:
    url, arguments = config.attributes.get(CONNECT_TARGET) or (
        config.get_main_option("sqlalchemy.url") or "",
        {},
    )
    engine = create_async_engine(
        url, poolclass=NullPool, connect_args={"timeout": CONNECT_TIMEOUT_SECONDS, **arguments}
    )
    async with engine.connect() as connection:
        await connection.run_sync(_run)
    await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    connection = config.attributes.get("connection")
    if connection is not None:
        _run(connection)
    else:
        asyncio.run(_run_async())
