"""The one owner of every transaction: begin, time-box, commit once, roll back by default,
and retry the whole unit on serialization failures and deadlocks (exponential backoff, jitter).

The quote store (``quotes/store.py``) always gets a ``Tx`` (``run_store``): the asyncpg
connection of a pooled SQLAlchemy connection. Its statements are hand-written (``quotes/sql.py``),
so SQLAlchemy's per-statement layer would be pure cost; the pool, its timeout and its
invalidation stay SQLAlchemy's. Other features get a SQLAlchemy ``AsyncConnection`` (``run``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import structlog
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from tenacity import (
    AsyncRetrying,
    RetryError,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

from tripquote.db.engine import WRITE_OPTION, pooled_driver, pooling
from tripquote.db.errors import (
    DRIVER_ERRORS,
    describe,
    is_retryable,
    map_db_error,
    sqlstate_of,
)
from tripquote.errors import (
    DatabaseTimeout,
    DatabaseTransactionAborted,
    QuotePersistenceFailed,
    TripquoteError,
)

if TYPE_CHECKING:
    from tripquote.config import Settings
    from tripquote.observability.operations import Observer

T = TypeVar("T")
_logger = structlog.get_logger("tripquote.db")


@dataclass(slots=True)
class Tx:
    """The asyncpg connection of one store unit (``TransactionRunner.run_store``).

    ``atomic``: its statements join the transaction the runner commits. Otherwise each
    statement commits by itself: the unit's change is ONE statement (``write``), after which
    the unit runs nothing more when it wrote (a retried unit can then never have committed
    before), and during which the backstop timeout is paused (as COMMIT is never cancelled);
    the server's ``statement_timeout`` still bounds it.
    """

    connection: Any  # asyncpg.Connection
    atomic: bool = True
    deadline: asyncio.Timeout | None = None
    _committed: bool = False

    @property
    def driver(self) -> Any:
        """The asyncpg connection; RuntimeError once the unit's change committed by itself."""
        if self._committed:
            raise RuntimeError("a one-statement unit ran a statement after its change committed")
        return self.connection

    async def fetch(self, statement: Statement, values: Mapping[str, Any]) -> list[Any]:
        """The rows of a read."""
        return list(await self.driver.fetch(statement.text, *statement.args(values)))

    async def fetchrow(self, statement: Statement, values: Mapping[str, Any]) -> Any:
        """The first row of a read, or None."""
        return await self.driver.fetchrow(statement.text, *statement.args(values))

    async def write(self, statement: Statement, values: Mapping[str, Any]) -> Any:
        """Run the unit's change: one statement returning one row whose ``written`` says
        whether it changed anything."""
        paused = None
        if not self.atomic and self.deadline is not None:
            paused = self.deadline.when()
            self.deadline.reschedule(None)
        row = await self.driver.fetchrow(statement.text, *statement.args(values))
        if row["written"]:
            self._committed = not self.atomic
        elif paused is not None and self.deadline is not None:
            self.deadline.reschedule(paused)  # the reads that say why are bounded again
        return row


async def joined_tx(conn: AsyncConnection) -> Tx:
    """The ``Tx`` of a ``run`` unit's own transaction: a statement written for a ``Tx`` (the
    idempotent response of a change, ``idempotency.complete``) then commits or rolls back with
    the unit's SQLAlchemy statements. RuntimeError before the unit's first statement: the
    driver's transaction begins with it, so a statement run earlier would commit by itself."""
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None or not driver.is_in_transaction():
        raise RuntimeError("joined_tx before the unit's first statement")
    return Tx(driver)


class Statement(Protocol):
    """SQL text with its parameters' names (``quotes/sql.py``)."""

    @property
    def text(self) -> str:
        """The SQL with ``$n`` parameters."""
        ...

    def args(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        """Positional arguments for ``values``."""
        ...


Work = Callable[[Any], Awaitable[T]]

# Past the server-side timeouts, so PostgreSQL cancels first and the connection stays usable.
_BACKSTOP_MARGIN_SECONDS = 1.0


class TransactionRunner:
    """Runs a unit of work in one transaction on ``engine``; see ``run``."""

    def __init__(self, *, engine: AsyncEngine, settings: Settings, observer: Observer) -> None:
        self.engine = engine
        self.settings = settings
        self.observer = observer
        self.pooling = pooling(settings)

    async def run(self, work: Work[T], *, write: bool = True) -> T:
        """Run ``work(conn)`` (an ``AsyncConnection``) in one transaction and commit it once;
        return its result. Raises the ``TripquoteError`` that ``work`` raised (after rolling
        back), or the mapped database error (see ``run_store``)."""
        return await self._retrying(work, write=write, store=False, atomic=True)

    async def run_store(self, work: Work[T], *, atomic: bool, write: bool = True) -> T:
        """Run ``work(tx)`` on the asyncpg connection of a pooled connection (a ``Tx``): in
        one transaction committed once when ``atomic``, else each statement commits by
        itself (a unit whose change is one statement: no BEGIN/COMMIT round trips).

        Raises the ``TripquoteError`` that ``work`` raised (after rolling back), or the mapped
        database error: DATABASE_TIMEOUT, DATABASE_TRANSACTION_ABORTED (retries exhausted),
        QUOTE_PERSISTENCE_FAILED, QUOTE_VALIDATION_FAILED.
        """
        return await self._retrying(work, write=write, store=True, atomic=atomic)

    async def _retrying(self, work: Work[T], *, write: bool, store: bool, atomic: bool) -> T:
        try:  # the common case, without building a retry controller
            return await self._once(work, write=write, store=store, atomic=atomic)
        except DRIVER_ERRORS as error:  # only retryable errors leave _once unmapped
            first_failure: BaseException = error
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.tx_max_attempts),
            wait=wait_random_exponential(multiplier=0.02, max=0.5),
            retry=retry_if_exception(is_retryable),
            reraise=False,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    if attempt.retry_state.attempt_number == 1:
                        raise first_failure  # replayed, so backoff and limits apply to it
                    self.observer.db_retry()
                    return await self._once(work, write=write, store=store, atomic=atomic)
        except RetryError as exhausted:
            cause = exhausted.last_attempt.exception()
            if cause is not None:
                _log_database_error(DatabaseTransactionAborted(), cause)
            self.observer.db_rollback(DatabaseTransactionAborted.code)
            raise DatabaseTransactionAborted(
                details={
                    "attempts": self.settings.tx_max_attempts,
                    "sqlstate": sqlstate_of(cause) if cause is not None else None,
                }
            ) from cause
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, work: Work[T], *, write: bool, store: bool, atomic: bool) -> T:
        budget = self.settings.tx_timeout_seconds + _BACKSTOP_MARGIN_SECONDS
        try:
            if store:
                return await self._on_driver(work, budget, atomic=atomic)
            # Waiting for a pooled connection is bounded by the pool timeout.
            async with self.engine.connect() as conn:
                await conn.execution_options(**{WRITE_OPTION: write})
                async with conn.begin():
                    async with asyncio.timeout(budget):
                        if self.pooling.set_local is not None:
                            await conn.exec_driver_sql(self.pooling.set_local)
                        result = await work(conn)
                # COMMIT ran above, outside the timeout: once the database may have
                # committed, only its answer may decide whether the save happened.
                return result
        except TripquoteError as error:
            self._rolled_back(write, error.code)
            raise
        except DRIVER_ERRORS as error:
            if is_retryable(error):
                raise  # tenacity runs the whole unit again
            mapped = _worded(map_db_error(error), write)
            _log_database_error(mapped, error)
            self._rolled_back(write, mapped.code)
            raise mapped from error
        except (TimeoutError, PoolTimeoutError) as error:
            self._rolled_back(write, DatabaseTimeout.code)
            raise DatabaseTimeout(
                details={"timeoutSeconds": self.settings.tx_timeout_seconds}
            ) from error
        except OSError as error:  # connection refused / reset before SQLAlchemy wrapped it
            mapped = _worded(
                map_db_error(DBAPIError(None, None, error, connection_invalidated=True)), write
            )
            _log_database_error(mapped, error)
            self._rolled_back(write, mapped.code)
            raise mapped from error

    async def _on_driver(self, work: Work[T], budget: float, *, atomic: bool) -> T:
        """One attempt on the asyncpg connection of a pooled connection (see ``Tx``); a
        one-statement unit runs in a transaction too where the pooler needs one (``Pooling``).

        The connection goes back to the pool only outside any transaction and alive; otherwise
        it is invalidated (closed and replaced), so no later unit inherits its state.
        """
        async with pooled_driver(self.engine) as driver:
            if not atomic and self.pooling.autocommit:
                async with asyncio.timeout(budget) as deadline:
                    return await work(Tx(driver, atomic=False, deadline=deadline))
            await driver.execute(self.pooling.begin)
            try:
                async with asyncio.timeout(budget):
                    result = await work(Tx(driver))
            except BaseException:
                with contextlib.suppress(Exception):  # a dead connection is invalidated
                    await driver.execute("ROLLBACK")
                raise
            # Outside the timeout: never cancel an in-flight COMMIT.
            await driver.execute("COMMIT")
            return result

    def rolled_back(self, reason: str) -> None:
        """Count a write unit that changed nothing because what it found refused the change
        (the unit returned the facts, its caller raised the error ``reason``)."""
        self._rolled_back(True, reason)

    def _rolled_back(self, write: bool, reason: str) -> None:
        if write:
            self.observer.db_rollback(reason)


_READ_FAILED = "The database could not be read. Nothing was changed; please retry."


def _worded(error: TripquoteError, write: bool) -> TripquoteError:
    """QUOTE_PERSISTENCE_FAILED of a read-only unit, worded for a read (its default message
    speaks of a save); same code, status and details."""
    if write or not isinstance(error, QuotePersistenceFailed):
        return error
    return QuotePersistenceFailed(_READ_FAILED, details=error.details)


def _log_database_error(mapped: TripquoteError, error: BaseException) -> None:
    """One ``database_error`` line for the operator, under the request's correlation ID: the
    code the client got and what the database said (``describe``), which the envelope never
    carries."""
    _logger.error("database_error", error_code=mapped.code, **describe(error))
