"""The one owner of every transaction: begin, time-box, commit once, roll back by default,
and retry the whole unit on serialization failures and deadlocks (exponential backoff, jitter).

A unit of work gets either a SQLAlchemy ``AsyncConnection`` (every database, every use case)
or, for the quote saves on PostgreSQL (``run(..., driver=True)``), a ``DriverTx``: the asyncpg
connection of a pooled SQLAlchemy connection, with the transaction opened on it directly. The
saves' statements are hand-written single statements (``quotes/pg.py``), so SQLAlchemy's
per-statement layer (greenlet hop, compiled-cache lookup, result wrapping) would be pure cost;
the pool, its timeout and its invalidation stay SQLAlchemy's.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

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

from tripquote.db.engine import WRITE_OPTION, pooled_driver
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


class TransactionRequired(Exception):
    """Raised by a single-statement unit (``DriverTx.in_transaction`` False) before it writes
    anything, when what it found needs several statements to be atomic: the runner then runs
    the unit again inside a transaction."""


@dataclass(slots=True)
class DriverTx:
    """The asyncpg connection ``driver`` of a unit run with ``driver=True`` on PostgreSQL.

    In a transaction (the default), statements run on it join the transaction the runner
    commits. Without one (``single_statement=True``), each statement commits by itself: the
    unit reads, then makes its whole change in ONE statement, announced by ``committing()``
    and, when it changed something, confirmed by ``committed()``: after that the unit runs
    no statement (``driver`` refuses), so a retried unit can never have committed before.
    """

    connection: Any  # asyncpg.Connection
    in_transaction: bool = True
    deadline: asyncio.Timeout | None = None
    _paused_deadline: float | None = None
    _committed: bool = False

    @property
    def driver(self) -> Any:
        """The asyncpg connection. RuntimeError once the unit's change committed by itself:
        the runner runs a unit again after a retryable error, which is only safe while the
        unit has committed nothing."""
        if self._committed:
            raise RuntimeError("a one-statement unit ran a statement after its change committed")
        return self.connection

    def require_transaction(self) -> None:
        """TransactionRequired unless in a transaction (call it before any write)."""
        if not self.in_transaction:
            raise TransactionRequired

    def committing(self) -> None:
        """The next statement makes the unit's change; without a transaction it commits by
        itself, so the runner's backstop timeout must not cancel it in flight (as COMMIT never
        is); the server's ``statement_timeout`` still bounds it."""
        if not self.in_transaction and self.deadline is not None:
            self._paused_deadline = self.deadline.when()
            self.deadline.reschedule(None)

    def committed(self) -> None:
        """The statement announced by ``committing()`` changed the database; without a
        transaction that is for good, and the unit runs no statement after it."""
        if not self.in_transaction:
            self._committed = True

    def wrote_nothing(self) -> None:
        """The statement announced by ``committing()`` changed nothing: what the unit does next
        (the reads that say why) is bounded by the backstop again, at its original deadline."""
        if self.deadline is not None and self._paused_deadline is not None:
            self.deadline.reschedule(self._paused_deadline)
            self._paused_deadline = None


UnitConnection = AsyncConnection | DriverTx
"""What a unit of work receives: ``DriverTx`` only when it asked for it, on PostgreSQL."""

Work = Callable[[Any], Awaitable[T]]

# Past the server-side timeouts, so PostgreSQL cancels first and the connection stays usable.
_BACKSTOP_MARGIN_SECONDS = 1.0


class TransactionRunner:
    """Runs a unit of work in one transaction on ``engine``; see ``run``."""

    def __init__(self, *, engine: AsyncEngine, settings: Settings, observer: Observer) -> None:
        self.engine = engine
        self.settings = settings
        self.observer = observer

    @property
    def is_postgres(self) -> bool:
        """True when the engine is PostgreSQL (asyncpg)."""
        return self.engine.dialect.name == "postgresql"

    async def run(
        self,
        work: Work[T],
        *,
        write: bool = True,
        driver: bool = False,
        single_statement: bool = False,
    ) -> T:
        """Run ``work(conn)`` in one transaction and commit it once; return its result.

        ``conn`` is an ``AsyncConnection``, or with ``driver=True`` on PostgreSQL a ``DriverTx``
        (the unit must then use only statements written for the driver: ``quotes/pg.py``).
        ``single_statement=True`` (with ``driver``): the unit's reads need no snapshot in
        common and its change is one statement, so no BEGIN/COMMIT round trips; a unit that
        finds it needs more raises TransactionRequired first and runs again in a transaction.

        Raises the ``TripquoteError`` that ``work`` raised (after rolling back), or the mapped
        database error: DATABASE_TIMEOUT, DATABASE_TRANSACTION_ABORTED (retries exhausted),
        QUOTE_PERSISTENCE_FAILED, QUOTE_VALIDATION_FAILED.
        """
        try:  # the common case, without building a retry controller
            return await self._once(work, write=write, driver=driver, single=single_statement)
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
                    return await self._once(
                        work, write=write, driver=driver, single=single_statement
                    )
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

    async def _once(self, work: Work[T], *, write: bool, driver: bool, single: bool) -> T:
        budget = self.settings.tx_timeout_seconds + _BACKSTOP_MARGIN_SECONDS
        try:
            if driver and self.is_postgres:
                return await self._on_driver(work, budget, single=single)
            # Waiting for a pooled connection is bounded by the pool timeout.
            async with self.engine.connect() as conn:
                await conn.execution_options(**{WRITE_OPTION: write})
                async with conn.begin():
                    async with asyncio.timeout(budget):
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

    async def _on_driver(self, work: Work[T], budget: float, *, single: bool) -> T:
        """One attempt on the asyncpg connection of a pooled connection (see ``DriverTx``).

        The connection goes back to the pool only outside any transaction and alive; otherwise
        it is invalidated (closed and replaced), so no later unit inherits its state.
        """
        async with pooled_driver(self.engine) as driver:
            if single:
                try:
                    async with asyncio.timeout(budget) as deadline:
                        return await work(DriverTx(driver, in_transaction=False, deadline=deadline))
                except TransactionRequired:
                    pass  # raised before any write: run it again, in a transaction
            transaction = driver.transaction()
            await transaction.start()
            try:
                async with asyncio.timeout(budget):
                    result = await work(DriverTx(driver))
            except BaseException:
                with contextlib.suppress(Exception):  # a dead connection is invalidated
                    await transaction.rollback()
                raise
            # Outside the timeout, as on the SQLAlchemy path: never cancel an in-flight COMMIT.
            await transaction.commit()
            return result

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
