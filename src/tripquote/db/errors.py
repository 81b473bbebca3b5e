"""Every database failure mapped to the error taxonomy, by SQLSTATE (PostgreSQL Appendix A
"Error Codes") and exception type; never by message text."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy.exc import DBAPIError

from tripquote.errors import (
    DatabaseTimeout,
    DatabaseTransactionAborted,
    InternalError,
    QuotePersistenceFailed,
    QuoteValidationFailed,
    TripquoteError,
)

# PostgreSQL SQLSTATEs whose whole transaction is retried (then DATABASE_TRANSACTION_ABORTED).
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected

PG_SQLSTATE_ERRORS: dict[str, type[TripquoteError]] = {
    "40001": DatabaseTransactionAborted,  # serialization_failure
    "40P01": DatabaseTransactionAborted,  # deadlock_detected
    "57014": DatabaseTimeout,  # query_canceled (statement_timeout)
    "55P03": DatabaseTimeout,  # lock_not_available (lock_timeout)
    "25P03": DatabaseTimeout,  # idle_in_transaction_session_timeout
    "23505": QuotePersistenceFailed,  # unique_violation
    "23503": QuotePersistenceFailed,  # foreign_key_violation
    # A value missing that the validation requires: the server supplied none (a schema ahead
    # of the code during a migration, a bug), never the client's fault.
    "23502": QuotePersistenceFailed,  # not_null_violation
    "23514": QuoteValidationFailed,  # check_violation (one with no constraint: below)
    "22003": QuoteValidationFailed,  # numeric_value_out_of_range
    "22001": QuoteValidationFailed,  # string_data_right_truncation
    "25006": QuotePersistenceFailed,  # read_only_sql_transaction (a demoted primary: failover)
    "57P01": QuotePersistenceFailed,  # admin_shutdown (pg_terminate_backend)
    "57P02": QuotePersistenceFailed,  # crash_shutdown
    "57P03": QuotePersistenceFailed,  # cannot_connect_now (starting up / shutting down)
    "53300": QuotePersistenceFailed,  # too_many_connections
    # A named prepared statement missing or already there: a pooler in transaction mode
    # (PgBouncer before 1.21) hands the connection's transactions to several server
    # connections. A configuration error no retry can cure (PG_SQLSTATE_CAUSES).
    "26000": InternalError,  # invalid_sql_statement_name
    "42P05": InternalError,  # duplicate_prepared_statement
}
PG_SQLSTATE_CAUSES: dict[str, tuple[str, str]] = {
    state: (
        "prepared_statements_unsupported",
        "a pooler in transaction mode stands in front of PostgreSQL: set "
        "TRIPQUOTE_DB_POOLER=transaction (README, Running beyond one machine)",
    )
    for state in ("26000", "42P05")
}
"""SQLSTATE -> (``details.cause`` for the client, ``hint`` for the operator's log line)."""
PG_SQLSTATE_CLASSES: dict[str, type[TripquoteError]] = {
    "22": QuoteValidationFailed,  # data_exception: NUL in text, int4 overflow (asyncpg: 22000)
    "08": QuotePersistenceFailed,  # connection_exception
    "40": DatabaseTransactionAborted,  # transaction_rollback
    "53": QuotePersistenceFailed,  # insufficient_resources
    "58": QuotePersistenceFailed,  # system_error
}

DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    DBAPIError,
    asyncpg.PostgresError,  # raised unwrapped by the quote store (quotes/store.py)
    asyncpg.InterfaceError,  # connection closed or lost under the quote store
    # A pooled connection whose backend was terminated while idle: asyncpg consumed the FATAL
    # message and refuses the next query ("another operation is in progress").
    asyncpg.InternalClientError,
)
"""Every database error the transaction runner maps."""


def _driver_error(error: BaseException) -> BaseException:
    return error.orig if isinstance(error, DBAPIError) and error.orig is not None else error


def sqlstate_of(error: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE (5 chars) of a driver error, wrapped or not, if it has one."""
    driver = _driver_error(error)
    code = getattr(driver, "sqlstate", None) or getattr(driver, "pgcode", None)
    return code if isinstance(code, str) else None


def describe(error: BaseException) -> dict[str, Any]:
    """What the operator needs about a database error, for the log line under the request's
    correlation ID (never for the client): ``sqlstate``, the driver's
    exception class and message (first line, at most 300 characters: no SQL text, no
    parameters), and the constraint, table and column PostgreSQL names, when it names them."""
    driver = _driver_error(error)
    innermost = driver.__cause__ if isinstance(driver.__cause__, asyncpg.PostgresError) else driver
    message = str(innermost).strip().splitlines()
    state = sqlstate_of(error)
    described: dict[str, Any] = {
        "sqlstate": state,
        "hint": PG_SQLSTATE_CAUSES[state][1] if state in PG_SQLSTATE_CAUSES else None,
        "driver_error": type(innermost).__name__,
        "driver_message": message[0][:300] if message else "",
    }
    for name in ("constraint_name", "table_name", "column_name"):
        value = getattr(innermost, name, None)
        if value:
            described[name.removesuffix("_name")] = value
    return {k: v for k, v in described.items() if v is not None}


def is_retryable(error: BaseException) -> bool:
    """True for failures whose whole transaction may be run again: serialization, deadlock,
    and a statement prepared before a schema change (``is_stale_statement``)."""
    return isinstance(error, DRIVER_ERRORS) and (
        sqlstate_of(error) in RETRYABLE_SQLSTATES or is_stale_statement(error)
    )


def is_stale_statement(error: BaseException) -> bool:
    """A statement a pooled connection prepared before a schema change (a migration run while
    the service serves): PostgreSQL refuses its cached plan ("cached plan must not change
    result type", SQLSTATE 0A000) and aborts the transaction. asyncpg and SQLAlchemy drop their
    statement caches as they raise it, so the whole unit, run again, prepares afresh."""
    driver = _driver_error(error)
    return isinstance(driver, asyncpg.InvalidCachedStatementError) or isinstance(
        driver.__cause__, asyncpg.InvalidCachedStatementError
    )


def is_disconnect(error: BaseException) -> bool:
    """True when the connection is gone (closed, terminated, server shutting down)."""
    if isinstance(error, asyncpg.InterfaceError | asyncpg.InternalClientError) or getattr(
        error, "connection_invalidated", False
    ):
        return True
    state = sqlstate_of(error)
    return state is not None and (state.startswith("08") or state in ("57P01", "57P02", "57P03"))


FAILOVER_SQLSTATES = frozenset({"25006", "57P01", "57P02", "57P03"})
"""read_only_sql_transaction, admin_shutdown, crash_shutdown, cannot_connect_now: the server
of this connection is no primary any more, or is going away (a switchover, a failover)."""


def drops_connection(error: BaseException) -> bool:
    """True when the connection must not be used again: it is gone (``is_disconnect``), or its
    server refuses writes or shuts down (``FAILOVER_SQLSTATES``). Its pool then reconnects,
    through the URL's hosts, to the primary there is now."""
    return is_disconnect(error) or sqlstate_of(error) in FAILOVER_SQLSTATES


def cannot_connect(error: BaseException) -> bool:
    """True for a failure to open a connection that a moment later may succeed: refused or
    reset, no server of the URL's hosts the session attributes ask for (no primary yet:
    ``target_session_attrs=read-write`` during a switchover), the server starting or shutting
    down (57P03), a connection exception (class 08). No statement was sent."""
    driver = _driver_error(error)
    for candidate in (error, driver, driver.__cause__):
        if isinstance(candidate, OSError | asyncpg.TargetServerAttributeNotMatched):
            return True
    state = sqlstate_of(error)
    return state is not None and (state.startswith("08") or state == "57P03")


def map_db_error(error: BaseException) -> TripquoteError:
    """The client-facing error for a driver error; never carries driver text."""
    state = sqlstate_of(error)
    if state is not None:
        cls = PG_SQLSTATE_ERRORS.get(state) or PG_SQLSTATE_CLASSES.get(state[:2])
        described = describe(error)
        if state == "23514" and "constraint" not in described:
            # A check no constraint of the schema made: a row no partition takes (its day's
            # partition missing: `tripquote maintenance` not run), the server's fault.
            cls = QuotePersistenceFailed
        if cls is not None:
            cause = PG_SQLSTATE_CAUSES[state][0] if state in PG_SQLSTATE_CAUSES else state
            return _build(cls, cause, described)
    if is_disconnect(error):
        return QuotePersistenceFailed(details={"cause": "connection_lost"})
    return QuotePersistenceFailed(details={"cause": "database_error"})


def _build(cls: type[TripquoteError], cause: str, described: dict[str, Any]) -> TripquoteError:
    if cls is QuoteValidationFailed:
        # Where the database says (a column, else a constraint); never the value itself.
        where = described.get("column") or ""
        what = f" ({described['constraint']})" if described.get("constraint") else ""
        return QuoteValidationFailed(
            "The database refused a value the validation did not catch.",
            details={
                "errors": [
                    {
                        "path": where,
                        "code": "database_constraint",
                        "message": f"The database refused the value{what}.",
                    }
                ],
                "cause": cause,
            },
        )
    return cls(details={"cause": cause})


UNUSABLE_CLASSES = frozenset({"08", "28", "3D", "53", "57"})
"""The SQLSTATE classes (PostgreSQL, Appendix A) of a database a command could not use: no
connection (08), refused credentials (28), no such database (3D), out of resources (53),
shutting down or its statement cancelled (57)."""


def statement_refused(error: BaseException) -> bool:
    """True when the database answered and refused the statement (an SQLSTATE outside
    ``UNUSABLE_CLASSES``: a constraint, a syntax error, a missing object…), not an outage."""
    state = sqlstate_of(error)
    return state is not None and state[:2] not in UNUSABLE_CLASSES
