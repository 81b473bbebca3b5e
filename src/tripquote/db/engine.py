"""The async engine for PostgreSQL (asyncpg), built from Settings."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.util.concurrency import greenlet_spawn
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_random_exponential

from tripquote.config import Settings
from tripquote.db.errors import cannot_connect, drops_connection

T = TypeVar("T")

WRITE_OPTION = "tripquote_write"
"""Execution option marking a write transaction; PostgreSQL needs no such mark (nothing reads
it): it goes when ``db/transaction.py`` stops setting it."""


def create_engine(settings: Settings) -> AsyncEngine:
    """An engine with the transaction timeouts applied per session (``statement_timeout``,
    ``lock_timeout``) and a fixed pool."""
    timeout_ms = int(settings.tx_timeout_seconds * 1000)
    # Below statement_timeout, or that always fires first (both timers run, the statement's
    # started earlier) and a wait on a held lock reads as a slow statement, 57014, instead of
    # lock_not_available, 55P03: the operator is told which one it was.
    lock_timeout_ms = max(1, timeout_ms * 9 // 10)
    engine = create_async_engine(
        settings.require_database_url(),
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        json_serializer=_dumps,
        json_deserializer=_loads,
        connect_args={
            "timeout": min(settings.tx_timeout_seconds, 10.0),
            "server_settings": {
                "application_name": "tripquote",
                # Per session, so no extra round trip per transaction.
                "statement_timeout": str(timeout_ms),
                "lock_timeout": str(lock_timeout_ms),
                "idle_in_transaction_session_timeout": str(timeout_ms * 3),
                # Every prepared statement here looks rows up by key: the generic plan is
                # right from the first run, so skip the five custom plans PostgreSQL would
                # otherwise build first on each connection (a cold pool's first burst).
                "plan_cache_mode": "force_generic_plan",
            },
        },
    )
    event.listen(engine.sync_engine, "checkout", _replace_closed)
    event.listen(engine.sync_engine, "handle_error", _drop_on_failover)
    return engine


def _drop_on_failover(context: ExceptionContext) -> None:
    """A statement refused because its server is no primary any more (25006) or shuts down
    (57P0x) counts as a disconnect: SQLAlchemy invalidates the connection and every older one
    of the pool, which reconnects to the primary there is now (``pooled_driver`` does the
    same for the quote store)."""
    if drops_connection(context.original_exception):
        context.is_disconnect = True


def _replace_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout: a connection the server already closed (restart, terminated backend,
    idle timeout; asyncpg saw the socket close) is reconnected before anyone uses it, and every
    older one is recycled at its own next checkout (SQLAlchemy's pessimistic disconnect
    handling, without a ping round trip). Otherwise each pooled connection would fail one
    request after a restart."""
    if dbapi_connection.driver_connection.is_closed():
        raise InvalidatePoolError("the server closed this connection")


async def warm_pool(
    engine: AsyncEngine, size: int, *, prepare: Callable[[Any], Awaitable[None]] | None = None
) -> None:
    """Open up to ``size`` pooled connections before serving, so a first burst does not pay
    for connection set-up; ``prepare(driver_connection)`` then runs on each (the save path
    prepares its statements there). A database that is down only delays readiness, never
    start-up."""
    import asyncio

    from sqlalchemy.exc import SQLAlchemyError

    async def one() -> Any:
        conn = await engine.connect()
        if prepare is not None:
            # Not migrated yet, or the server went away: each statement is then prepared on
            # its first use, as without warming.
            with contextlib.suppress(Exception):
                await prepare((await conn.get_raw_connection()).driver_connection)
        return conn

    results = await asyncio.gather(*(one() for _ in range(size)), return_exceptions=True)
    for conn in results:
        if not isinstance(conn, BaseException):
            await conn.close()
        elif not isinstance(conn, SQLAlchemyError | OSError | TimeoutError):
            raise conn


async def _connecting(acquire: Callable[[], Awaitable[T]], seconds: float) -> T:
    """``acquire()`` (a pooled connection), tried again for up to ``seconds`` while the
    failure is one a moment may cure (``cannot_connect``: refused, no primary yet, starting
    up): no statement was sent, so a switchover costs a delay, not an error."""
    if seconds <= 0:
        return await acquire()
    retrying = AsyncRetrying(
        stop=stop_after_delay(seconds),
        wait=wait_random_exponential(multiplier=0.05, max=0.5),
        retry=retry_if_exception(cannot_connect),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await acquire()
    raise AssertionError("unreachable")  # pragma: no cover


@asynccontextmanager
async def connected(engine: AsyncEngine, *, retry_seconds: float = 0) -> AsyncIterator[Any]:
    """``engine.connect()``, connecting retried for up to ``retry_seconds`` (``_connecting``)."""
    conn: AsyncConnection = await _connecting(lambda: engine.connect().start(), retry_seconds)
    try:
        yield conn
    finally:
        await conn.close()


@asynccontextmanager
async def pooled_driver(engine: AsyncEngine, *, retry_seconds: float = 0) -> AsyncIterator[Any]:
    """The driver connection (asyncpg's, on PostgreSQL) of a connection from the engine's pool,
    for code that runs hand-written statements without SQLAlchemy's per-statement layer.

    Waiting for it is bounded by the pool timeout (``sqlalchemy.exc.TimeoutError``); a failure
    to connect (tried again for up to ``retry_seconds``, ``_connecting``) raises ``DBAPIError``
    as ``engine.connect()`` would. On exit it goes back to the pool, or is invalidated (closed
    and replaced) when it is dead or still in a transaction, so no later user inherits its
    state; an error that ``drops_connection`` (a demoted or stopping server) invalidates every
    older connection of the pool too, as SQLAlchemy does on a disconnect.
    """
    dialect = engine.dialect

    async def acquire() -> Any:
        try:
            return await greenlet_spawn(engine.sync_engine.raw_connection)
        except dialect.loaded_dbapi.Error as error:
            raise DBAPIError.instance(
                None,
                None,
                error,
                dialect.loaded_dbapi.Error,
                connection_invalidated=dialect.is_disconnect(error, None, None),
            ) from error

    pooled = await _connecting(acquire, retry_seconds)
    driver: Any = pooled.driver_connection
    dropped = False
    try:
        yield driver
    except BaseException as error:
        dropped = drops_connection(error)
        raise
    finally:
        if dropped:
            await greenlet_spawn(engine.pool._invalidate, pooled)  # SQLAlchemy's own step
        elif driver.is_closed() or driver.is_in_transaction():
            await greenlet_spawn(pooled.invalidate)
        else:
            await greenlet_spawn(pooled.close)


def _loads(text: str) -> Any:
    """JSON columns read back with numbers as Decimal, never float."""
    return json.loads(text, parse_float=Decimal)


def _dumps(value: Any) -> str:
    """JSON columns written with Decimals as strings (orjson)."""
    from tripquote.json import dumps

    return dumps(value).decode()
