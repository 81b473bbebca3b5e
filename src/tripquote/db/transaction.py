"""The one owner of every transaction: begin, time-box, commit once, roll back by default,
and retry the whole unit on serialization failures and deadlocks (exponential backoff, jitter).

A write unit's COMMIT that was sent but got no answer (the connection lost meanwhile: a
failover, a backend terminated while it waited for a synchronous standby) has an unknown
outcome, never reported as "nothing was written": the runner reconnects and asks the unit's
``outcome`` (``run_store``) within ``SAVE_OUTCOME_TIMEOUT_SECONDS``, once the old backend is
gone and on a primary, so the answer is the truth (the found result, or
QUOTE_PERSISTENCE_FAILED when it certainly did not commit), else SAVE_OUTCOME_UNKNOWN.

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
from functools import partial
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

from tripquote.db.engine import WRITE_OPTION, connected, pooled_driver, pooling
from tripquote.db.errors import (
    DRIVER_ERRORS,
    describe,
    is_disconnect,
    is_retryable,
    map_db_error,
    sqlstate_of,
)
from tripquote.errors import (
    DatabaseTimeout,
    DatabaseTransactionAborted,
    QuotePersistenceFailed,
    SaveOutcomeUnknown,
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
    sending: bool = False
    """True from the moment a one-statement unit's change is sent until its answer came: a
    connection lost meanwhile leaves its outcome unknown."""

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
        self.sending = not self.atomic
        row = await self.driver.fetchrow(statement.text, *statement.args(values))
        self.sending = False
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

Outcome = Callable[[Tx], Awaitable[T | None]]
"""What a write unit committed, read on a new connection after its COMMIT got no answer: the
unit's result if its change is there, None if not (e.g. ``sql.OUTCOME`` by its save id)."""


class _InDoubt(Exception):
    """A write unit's change was sent for commit on backend ``pid`` and no answer came."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"commit sent on backend {pid}, no answer")
        self.pid = pid


class _Undecided(Exception):
    """The outcome cannot be read yet: the old backend still runs, or the server is a standby."""


_DECIDABLE = """
SELECT pg_is_in_recovery() AS standby,
       EXISTS (SELECT 1 FROM pg_stat_activity
                WHERE pid = $1 AND pid <> pg_backend_pid()) AS pending
"""
"""Whether a lookup here is conclusive: on a primary, the backend that was committing gone
(its transaction then ended one way or the other, and a backend's activity row goes only
after that). Another server (a failover) shows no such backend, unless one of its own has
the same pid: the lookup then only waits longer, never answers wrongly."""


_UNDECIDED: tuple[type[BaseException], ...] = (
    _Undecided,
    OSError,  # TimeoutError too: the lookup's whole time is up
    PoolTimeoutError,
    *DRIVER_ERRORS,
)
"""What keeps a lookup from deciding: looked for again until the time is up."""


def _lost(error: BaseException) -> bool:
    """The connection is gone (no answer will come), as opposed to an error the server sent."""
    if isinstance(error, OSError) and not isinstance(error, TimeoutError):
        return True
    return isinstance(error, DRIVER_ERRORS) and is_disconnect(error)


def _unanswered(error: BaseException, *, logged: bool = True) -> SaveOutcomeUnknown:
    """SAVE_OUTCOME_UNKNOWN of a change whose COMMIT got no answer and that has no save id to
    look up (clients, agents): never QUOTE_PERSISTENCE_FAILED's "nothing was written"."""
    if logged:
        _log_database_error(SaveOutcomeUnknown(), error)
    return SaveOutcomeUnknown(
        "The connection to the database was lost while the change was being committed; "
        "whether it was saved is unknown. Retry only with the same Idempotency-Key, or read "
        "it first.",
        details={"cause": "commit_unanswered"},
    )


# Past the server-side timeouts, so PostgreSQL cancels first and the connection stays usable.
_BACKSTOP_MARGIN_SECONDS = 1.0


class TransactionRunner:
    """Runs a unit of work in one transaction on ``engine``; see ``run``."""

    def __init__(self, *, engine: AsyncEngine, settings: Settings, observer: Observer) -> None:
        self.engine = engine
        self.settings = settings
        self.observer = observer
        self.pooling = pooling(settings)

    async def run(self, work: Work[T], *, write: bool = True, accounted: bool = True) -> T:
        """Run ``work(conn)`` (an ``AsyncConnection``) in one transaction and commit it once;
        return its result. Raises the ``TripquoteError`` that ``work`` raised (after rolling
        back), or the mapped database error (see ``run_store``). ``accounted`` False: a clean-up
        after the request's own unit failed (an idempotency key's release), whose failure is
        the caller's to report: not counted as a rollback nor logged as a database error, the
        request's own unit having been."""
        return await self._retrying(
            work, write=write, store=False, atomic=True, outcome=None, accounted=accounted
        )

    async def run_store(
        self,
        work: Work[T],
        *,
        atomic: bool,
        write: bool = True,
        outcome: Outcome[T] | None = None,
    ) -> T:
        """Run ``work(tx)`` on the asyncpg connection of a pooled connection (a ``Tx``): in
        one transaction committed once when ``atomic``, else each statement commits by
        itself (a unit whose change is one statement, ``Tx.write``: no BEGIN/COMMIT round
        trips).

        ``outcome``: how to read what the unit committed when its COMMIT (or its one-statement
        change) was sent and the connection was lost before the answer (see the module's
        docstring); without it (a unit whose re-run is harmless) that is a lost connection.

        Raises the ``TripquoteError`` that ``work`` raised (after rolling back), or the mapped
        database error: DATABASE_TIMEOUT, DATABASE_TRANSACTION_ABORTED (retries exhausted),
        QUOTE_PERSISTENCE_FAILED (nothing was written), QUOTE_VALIDATION_FAILED,
        SAVE_OUTCOME_UNKNOWN (the commit's outcome not found in time).
        """
        return await self._retrying(work, write=write, store=True, atomic=atomic, outcome=outcome)

    async def _retrying(
        self, work: Work[T], *, write: bool, store: bool, atomic: bool, outcome: Outcome[T] | None,
        accounted: bool = True,
    ) -> T:  # fmt: skip
        once = partial(
            self._once, work, write=write, store=store, atomic=atomic, outcome=outcome,
            accounted=accounted,
        )  # fmt: skip
        try:  # the common case, without building a retry controller
            return await once()
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
                    return await once()
        except RetryError as exhausted:
            cause = exhausted.last_attempt.exception()
            if cause is not None and accounted:
                _log_database_error(DatabaseTransactionAborted(), cause)
            self._rolled_back(accounted, DatabaseTransactionAborted.code)
            raise DatabaseTransactionAborted(
                details={
                    "attempts": self.settings.tx_max_attempts,
                    "sqlstate": sqlstate_of(cause) if cause is not None else None,
                }
            ) from cause
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self, work: Work[T], *, write: bool, store: bool, atomic: bool, outcome: Outcome[T] | None,
        accounted: bool,
    ) -> T:  # fmt: skip
        counted = write and accounted  # a failure counted as a rolled-back write and logged
        budget = self.settings.tx_timeout_seconds + _BACKSTOP_MARGIN_SECONDS
        try:
            if store:
                try:
                    return await self._on_driver(
                        work, budget, atomic=atomic, in_doubt=write and outcome is not None
                    )
                except _InDoubt as doubt:
                    assert outcome is not None
                    return await self._resolve(doubt, outcome)
            # Waiting for a pooled connection is bounded by the pool timeout.
            retry_seconds = self.settings.db_connect_retry_seconds
            async with connected(self.engine, retry_seconds=retry_seconds) as conn:
                await conn.execution_options(**{WRITE_OPTION: write})
                transaction = await conn.begin()
                try:
                    async with asyncio.timeout(budget):
                        if self.pooling.set_local is not None:
                            await conn.exec_driver_sql(self.pooling.set_local)
                        result = await work(conn)
                except BaseException:
                    with contextlib.suppress(Exception):  # a dead connection is invalidated
                        await transaction.rollback()
                    raise
                # Outside the timeout: once the database may have committed, only its answer
                # may decide whether the change happened. A unit without a save id to look up
                # (``run_store`` has one) cannot tell when that answer is lost: it says so.
                try:
                    await transaction.commit()
                except DRIVER_ERRORS as error:
                    if write and _lost(error):
                        raise _unanswered(error, logged=accounted) from error
                    raise
                return result
        except TripquoteError as error:
            self._rolled_back(counted, error.code)
            raise
        except DRIVER_ERRORS as error:
            if is_retryable(error):
                raise  # tenacity runs the whole unit again
            mapped = _worded(map_db_error(error), write)
            if accounted:
                _log_database_error(mapped, error)
            self._rolled_back(counted, mapped.code)
            raise mapped from error
        except (TimeoutError, PoolTimeoutError) as error:
            self._rolled_back(counted, DatabaseTimeout.code)
            raise DatabaseTimeout(
                details={"timeoutSeconds": self.settings.tx_timeout_seconds}
            ) from error
        except OSError as error:  # connection refused / reset before SQLAlchemy wrapped it
            mapped = _worded(
                map_db_error(DBAPIError(None, None, error, connection_invalidated=True)), write
            )
            if accounted:
                _log_database_error(mapped, error)
            self._rolled_back(counted, mapped.code)
            raise mapped from error

    async def _on_driver(self, work: Work[T], budget: float, *, atomic: bool, in_doubt: bool) -> T:
        """One attempt on the asyncpg connection of a pooled connection (see ``Tx``); a
        one-statement unit runs in a transaction too where the pooler needs one (``Pooling``).

        The connection goes back to the pool only outside any transaction and alive; otherwise
        it is invalidated (closed and replaced), so no later unit inherits its state.
        ``in_doubt``: a connection lost while the change was committing raises ``_InDoubt``.
        """
        retry_seconds = self.settings.db_connect_retry_seconds
        async with pooled_driver(self.engine, retry_seconds=retry_seconds) as driver:
            pid = driver.get_server_pid()
            if not atomic and self.pooling.autocommit:
                tx = Tx(driver, atomic=False)
                try:
                    async with asyncio.timeout(budget) as tx.deadline:
                        return await work(tx)
                except BaseException as error:
                    if in_doubt and tx.sending and _lost(error):
                        raise _InDoubt(pid) from error
                    raise
            await driver.execute(self.pooling.begin)
            try:
                async with asyncio.timeout(budget):
                    result = await work(Tx(driver))
            except BaseException:
                with contextlib.suppress(Exception):  # a dead connection is invalidated
                    await driver.execute("ROLLBACK")
                raise
            # Outside the timeout: never cancel an in-flight COMMIT.
            try:
                await driver.execute("COMMIT")
            except BaseException as error:
                if in_doubt and _lost(error):
                    raise _InDoubt(pid) from error
                raise
            return result

    async def _resolve(self, doubt: _InDoubt, outcome: Outcome[T]) -> T:
        """The truth about a unit whose commit got no answer: reconnect (the pool's URL: the
        new primary, if there is one) until a lookup is conclusive (``_DECIDABLE``), within
        ``save_outcome_timeout_seconds``. Returns what ``outcome`` found; raises
        QUOTE_PERSISTENCE_FAILED (it did not commit) or SAVE_OUTCOME_UNKNOWN."""
        lost = doubt.__cause__ or doubt
        seconds = self.settings.save_outcome_timeout_seconds
        _logger.warning("commit_in_doubt", backend_pid=doubt.pid, **describe(lost))

        async def look_up() -> T | None:
            async with pooled_driver(self.engine) as driver:
                facts = await driver.fetchrow(_DECIDABLE, doubt.pid)
                if facts["standby"] or facts["pending"]:
                    raise _Undecided
                return await outcome(Tx(driver, atomic=False))

        retrying = AsyncRetrying(
            wait=wait_random_exponential(multiplier=0.05, max=0.5),
            retry=retry_if_exception(lambda e: isinstance(e, _UNDECIDED)),
            reraise=True,
        )
        try:
            async with asyncio.timeout(seconds):
                async for attempt in retrying:
                    with attempt:
                        found = await look_up()
        except _UNDECIDED as error:
            unknown = SaveOutcomeUnknown(details={"cause": "commit_unanswered"})
            _logger.error(
                "commit_outcome_unknown",
                error_code=unknown.code,
                backend_pid=doubt.pid,
                waited_seconds=seconds,
                last_error=type(error).__name__,
            )
            raise unknown from lost
        if found is None:
            not_saved = QuotePersistenceFailed(
                details={"cause": "connection_lost", "outcome": "not_committed"}
            )
            _logger.warning("commit_outcome_resolved", committed=False, backend_pid=doubt.pid)
            raise not_saved from lost
        _logger.warning("commit_outcome_resolved", committed=True, backend_pid=doubt.pid)
        return found

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
