"""PostgreSQL helpers: the bench's own databases (created per run, dropped at the end), facts."""

from __future__ import annotations

import re
from typing import Any

import asyncpg

_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def dsn_for(base_dsn: str, database: str) -> str:
    """``postgresql://user@host:port`` + ``/database``."""
    return f"{base_dsn.rstrip('/')}/{database}"


def sqlalchemy_url(base_dsn: str, database: str) -> str:
    """The same database as a SQLAlchemy asyncpg URL (what tripquote reads)."""
    scheme, rest = base_dsn.split("://", 1)
    del scheme
    return f"postgresql+asyncpg://{rest.rstrip('/')}/{database}"


def asyncpg_dsn_from_sqlalchemy(url: str) -> str:
    """``postgresql+asyncpg://...`` → ``postgresql://...`` for asyncpg."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


async def create_database(base_dsn: str, name: str) -> None:
    """CREATE DATABASE name (the name is checked: identifiers cannot be bound parameters)."""
    if not _NAME.match(name):
        raise ValueError(f"unsafe database name {name!r}")
    conn = await asyncpg.connect(dsn_for(base_dsn, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def drop_database(base_dsn: str, name: str) -> None:
    """DROP DATABASE name, closing any connection left open to it."""
    if not _NAME.match(name):
        raise ValueError(f"unsafe database name {name!r}")
    conn = await asyncpg.connect(dsn_for(base_dsn, "postgres"))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


async def server_facts(dsn: str) -> dict[str, Any]:
    """PostgreSQL version and the settings that shape write latency and concurrency."""
    conn = await asyncpg.connect(dsn)
    try:
        facts: dict[str, Any] = {"version": await conn.fetchval("SELECT version()")}
        for setting in (
            "server_version",
            "synchronous_commit",
            "fsync",
            "wal_sync_method",
            "max_connections",
            "shared_buffers",
            "default_transaction_isolation",
        ):
            facts[setting] = await conn.fetchval(f"SHOW {setting}")
        return facts
    finally:
        await conn.close()


async def connection_count(dsn: str, database: str) -> int:
    """How many backends are connected to ``database`` (for leak checks)."""
    conn = await asyncpg.connect(dsn)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1", database
            )
        )
    finally:
        await conn.close()
