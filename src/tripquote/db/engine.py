"""The async engine for PostgreSQL (asyncpg), built from Settings."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal, TypeVar

from sqlalchemy import URL, event
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.exc import DBAPIError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool
from sqlalchemy.util.concurrency import greenlet_spawn
from tenacity import AsyncRetrying, retry_if_exception, stop_after_delay, wait_random_exponential

from tripquote.config import Settings
from tripquote.db.errors import cannot_connect, drops_connection
from tripquote.db.url import parse_database_url

T = TypeVar("T")

WRITE_OPTION = "tripquote_write"
"""Execution option marking a write transaction; PostgreSQL needs no such mark (nothing reads
it): it goes when ``db/transaction.py`` stops setting it."""


def session_parameters(settings: Settings) -> dict[str, str]:
    """The PostgreSQL settings every session of the service runs with (name -> value): the
    transaction timeouts and the plan cache mode. Sent as startup parameters, SET once per
    connection, or SET LOCAL in every transaction, by ``Pooling``."""
    timeout_ms = int(settings.tx_timeout_seconds * 1000)
    # Below statement_timeout, or that always fires first (both timers run, the statement's
    # started earlier) and a wait on a held lock reads as a slow statement, 57014, instead of
    # lock_not_available, 55P03: the operator is told which one it was.
    lock_timeout_ms = max(1, timeout_ms * 9 // 10)
    return {
        "statement_timeout": str(timeout_ms),
        "lock_timeout": str(lock_timeout_ms),
        "idle_in_transaction_session_timeout": str(timeout_ms * 3),
        # Every prepared statement here looks rows up by key: the generic plan is right from
        # the first run, so skip the five custom plans PostgreSQL would otherwise build first
        # on each connection (a cold pool's first burst).
        "plan_cache_mode": "force_generic_plan",
    }


@dataclass(frozen=True, slots=True)
class Pooling:
    """How the service's sessions meet ``TRIPQUOTE_DB_POOLER`` (PgBouncer's pool modes,
    https://www.pgbouncer.org/features.html): the one place that differs between them.

    - ``none``: the session parameters are startup parameters (no round trip at all);
      asyncpg's named prepared statements are cached per connection.
    - ``session``: PgBouncer refuses startup parameters it does not know ("unsupported startup
      parameter", SQLSTATE 08P01), so they are SET once when a connection opens (PgBouncer's
      ``server_reset_query``, ``DISCARD ALL``, drops them with the client).
    - ``transaction``: a server connection is the client's only inside a transaction block.
      So no named prepared statement (asyncpg's and SQLAlchemy's caches off: asyncpg then
      prepares each statement unnamed, in the same transaction as it runs), every statement
      runs inside ``BEGIN … COMMIT`` (a statement alone would be prepared on one server
      connection and bound on another), and the timeouts are SET LOCAL by the ``BEGIN`` text
      itself: one simple-query round trip, as a bare ``BEGIN``.
    """

    mode: Literal["none", "transaction", "session"]
    begin: str
    """What opens a transaction on the asyncpg connection (a simple query)."""
    set_local: str | None
    """A statement that applies the session parameters to the current transaction, for
    SQLAlchemy connections (transaction mode only)."""
    server_settings: dict[str, str]
    """Startup parameters."""
    on_connect: str | None
    """Run once on each new connection (session mode)."""
    connect_args: dict[str, Any]
    """Extra ``connect()`` arguments (the statement caches' sizes)."""

    @property
    def autocommit(self) -> bool:
        """A statement may run outside a transaction block (its own implicit one)."""
        return self.mode != "transaction"

    @property
    def keeps_prepared_statements(self) -> bool:
        """Statements prepared on a connection stay there for its later transactions."""
        return self.mode != "transaction"


def pooling(settings: Settings) -> Pooling:
    """The ``Pooling`` of ``settings.db_pooler``."""
    parameters = session_parameters(settings)
    startup = {"application_name": settings.db_application_name}  # PgBouncer passes it through
    if settings.db_pooler == "none":
        return Pooling("none", "BEGIN", None, {**startup, **parameters}, None, {})
    if settings.db_pooler == "session":
        sets = "; ".join(f"SET {name} = '{value}'" for name, value in parameters.items())
        return Pooling("session", "BEGIN", None, startup, sets, {})
    local = {k: v for k, v in parameters.items() if k != "plan_cache_mode"}  # unnamed: moot
    begin = "BEGIN; " + "; ".join(f"SET LOCAL {name} = '{value}'" for name, value in local.items())
    set_local = "SELECT " + ", ".join(
        f"set_config('{name}', '{value}', true)" for name, value in local.items()
    )
    caches = {"statement_cache_size": 0, "prepared_statement_cache_size": 0}
    return Pooling("transaction", begin, set_local, startup, None, caches)


def connect_target(settings: Settings) -> tuple[URL, dict[str, Any]]:
    """``TRIPQUOTE_DATABASE_URL`` (parsed by ``db/url.py``) and the ``connect()`` arguments
    the pooler needs (the statement caches' sizes) and the URL's query gives, typed: what
    the service's engine and the migrations' connect with."""
    target = parse_database_url(settings.require_database_url())
    return target.url, {**pooling(settings).connect_args, **target.connect_args}


def create_engine(settings: Settings, *, pooled: bool = True) -> AsyncEngine:
    """An engine for ``connect_target(settings)`` with a fixed pool, the session parameters
    applied as ``pooling(settings)`` says. ``pooled`` False: a connection of its own each
    time, closed after (``NullPool``): the readiness probe's, which must say whether the
    database answers even while every pooled connection is busy."""
    url, arguments = connect_target(settings)
    policy = pooling(settings)
    pool: dict[str, Any] = (
        {
            "pool_size": settings.db_pool_size,
            "max_overflow": settings.db_max_overflow,
            "pool_timeout": settings.db_pool_timeout_seconds,
        }
        if pooled
        else {"poolclass": NullPool}
    )
    engine = create_async_engine(
        url,
        **pool,
        json_serializer=_dumps,
        json_deserializer=_loads,
        connect_args={
            "timeout": min(settings.tx_timeout_seconds, 10.0),
            "server_settings": policy.server_settings,
            **arguments,
        },
    )
    event.listen(engine.sync_engine, "checkout", _replace_closed)
    if policy.on_connect is not None:
        statement = policy.on_connect

        def set_once(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.run_async(lambda driver: driver.execute(statement))

        event.listen(engine.sync_engine, "connect", set_once)
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
) -> BaseException | None:
    """Open up to ``size`` pooled connections before serving, so a first burst does not pay
    for connection set-up; ``prepare(driver_connection)`` then runs on each (the save path
    prepares its statements there). A database that is down only delays readiness, never
    start-up: the first failure to connect is returned (for ``check_pooler``), not raised."""
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
    failure = None
    for conn in results:
        if not isinstance(conn, BaseException):
            await conn.close()
        elif not isinstance(conn, SQLAlchemyError | OSError | TimeoutError):
            raise conn
        else:
            failure = failure or conn
    return failure


async def _connecting(acquire: Callable[[], Awaitable[T]], seconds: float) -> T:
    """``acquire()`` (a pooled connection), tried again for up to ``seconds`` while the
    failure is one a moment may cure (``cannot_connect``: refused, no primary yet, starting
    up): no statement was sent, so a switchover costs a delay, not an error."""
    started = time.monotonic()
    try:  # the common case, without building a retry controller (about 23 us a checkout)
        return await acquire()
    except Exception as error:
        if seconds <= 0 or not cannot_connect(error):
            raise
        first_failure = error
    retrying = AsyncRetrying(
        stop=stop_after_delay(max(0.0, seconds - (time.monotonic() - started))),
        wait=wait_random_exponential(multiplier=0.05, max=0.5),
        retry=retry_if_exception(cannot_connect),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            if attempt.retry_state.attempt_number == 1:
                raise first_failure  # replayed, so the wait and the delay apply to it
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


class PoolerMisconfigured(ValueError):
    """A pooler stands in front of PostgreSQL and ``TRIPQUOTE_DB_POOLER`` does not say so."""


async def check_pooler(engine: AsyncEngine, settings: Settings, failure: BaseException) -> None:
    """Start-up, after ``failure`` to connect: raise ``PoolerMisconfigured`` when the server
    refused the session parameters ``TRIPQUOTE_DB_POOLER=none`` sends at connect (SQLSTATE
    08P01, protocol_violation: what PgBouncer answers, "unsupported startup parameter") yet
    accepts the same connection without them. Any other outcome lets start-up go on: an
    unreachable database only delays readiness."""
    import asyncpg

    from tripquote.db.errors import sqlstate_of

    if pooling(settings).mode != "none" or sqlstate_of(failure) != "08P01":
        return
    url, typed = connect_target(settings)
    _, arguments = engine.dialect.create_connect_args(url)
    arguments.update(typed)
    arguments.pop("prepared_statement_cache_size", None)
    try:
        connection = await asyncpg.connect(
            **arguments, timeout=10, server_settings={"application_name": "tripquote"}
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return
    await connection.close()
    raise PoolerMisconfigured(
        "TRIPQUOTE_DB_POOLER: the database refused the session parameters sent at connect "
        f"(SQLSTATE 08P01) and accepts the connection without them: {POOLER_HINT}"
    )


POOLER_HINT = (
    "a pooler (PgBouncer) stands in front of PostgreSQL; set TRIPQUOTE_DB_POOLER=transaction "
    "(pool_mode = transaction) or session (README, Running beyond one machine)"
)
"""What to do when a pooler refused the session parameters of ``TRIPQUOTE_DB_POOLER=none``."""
