"""The one owner of every transaction: begin, time-box, commit once, roll back by default,
and retry the whole unit on serialization failures and deadlocks (exponential backoff, jitter).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

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

from tripquote.db.engine import WRITE_OPTION
from tripquote.db.errors import DRIVER_ERRORS, is_disconnect, is_retryable, map_db_error
from tripquote.errors import DatabaseTimeout, DatabaseTransactionAborted, TripquoteError

if TYPE_CHECKING:
    from tripquote.config import Settings
    from tripquote.observability.operations import Observer

T = TypeVar("T")
Work = Callable[[AsyncConnection], Awaitable[T]]

# Past the server-side timeouts, so PostgreSQL cancels first and the connection stays usable.
_BACKSTOP_MARGIN_SECONDS = 1.0


class TransactionRunner:
    """Runs a unit of work in one transaction on ``engine``; see ``run``."""

    def __init__(self, *, engine: AsyncEngine, settings: Settings, observer: Observer) -> None:
        self.engine = engine
        self.settings = settings
        self.observer = observer

    async def run(self, work: Work[T], *, write: bool = True) -> T:
        """Run ``work(conn)`` in one transaction and commit it once; return its result.

        Raises the ``TripquoteError`` that ``work`` raised (after rolling back), or the mapped
        database error: DATABASE_TIMEOUT, DATABASE_TRANSACTION_ABORTED (retries exhausted),
        QUOTE_PERSISTENCE_FAILED, QUOTE_VALIDATION_FAILED.
        """
        try:  # the common case, without building a retry controller
            return await self._once(work, write=write)
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
                    return await self._once(work, write=write)
        except RetryError as exhausted:
            cause = exhausted.last_attempt.exception()
            self.observer.db_rollback(DatabaseTransactionAborted.code)
            raise DatabaseTransactionAborted(
                details={"attempts": self.settings.tx_max_attempts}
            ) from cause
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(self, work: Work[T], *, write: bool) -> T:
        budget = self.settings.tx_timeout_seconds + _BACKSTOP_MARGIN_SECONDS
        try:
            # Waiting for a pooled connection is bounded by the pool timeout.
            async with self.engine.connect() as conn:
                await conn.execution_options(**{WRITE_OPTION: write})
                try:
                    async with conn.begin():
                        async with asyncio.timeout(budget):
                            result = await work(conn)
                    # COMMIT ran above, outside the timeout: once the database may have
                    # committed, only its answer may decide whether the save happened.
                    return result
                except DRIVER_ERRORS as error:
                    if is_disconnect(error) and not conn.invalidated:
                        # Lost under the raw-driver fast path: SQLAlchemy did not see it,
                        # so keep the dead connection out of the pool ourselves.
                        await conn.invalidate()
                    raise
        except TripquoteError as error:
            self._rolled_back(write, error.code)
            raise
        except DRIVER_ERRORS as error:
            if is_retryable(error):
                raise  # tenacity runs the whole unit again
            mapped = map_db_error(error)
            self._rolled_back(write, mapped.code)
            raise mapped from error
        except (TimeoutError, PoolTimeoutError) as error:
            self._rolled_back(write, DatabaseTimeout.code)
            raise DatabaseTimeout(
                details={"timeoutSeconds": self.settings.tx_timeout_seconds}
            ) from error
        except OSError as error:  # connection refused / reset before SQLAlchemy wrapped it
            mapped = map_db_error(DBAPIError(None, None, error, connection_invalidated=True))
            self._rolled_back(write, mapped.code)
            raise mapped from error

    def _rolled_back(self, write: bool, reason: str) -> None:
        if write:
            self.observer.db_rollback(reason)
