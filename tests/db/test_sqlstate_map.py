"""The SQLSTATE map, pinned by a literal table (not read back from the production one), and a
real lock timeout (55P03) answered as 503 DATABASE_TIMEOUT through HTTP on PostgreSQL."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from tests.api.test_errors_api import assert_envelope
from tests.conftest import World, make_settings, quote_body
from tripquote.db.errors import describe, is_retryable, map_db_error

# SQLSTATE -> (errorCode, HTTP status, retryable by the client, retried by the server).
# Written from the brief ("Saves: atomic and version-checked") and PostgreSQL Appendix A.
EXPECTED: dict[str, tuple[str, int, bool, bool]] = {
    # class 40, transaction rollback: the server runs the whole unit again, then gives up.
    "40001": ("DATABASE_TRANSACTION_ABORTED", 503, True, True),  # serialization_failure
    "40P01": ("DATABASE_TRANSACTION_ABORTED", 503, True, True),  # deadlock_detected
    "40003": ("DATABASE_TRANSACTION_ABORTED", 503, True, False),  # statement_completion_unknown
    # timeouts
    "57014": ("DATABASE_TIMEOUT", 503, True, False),  # query_canceled (statement_timeout)
    "55P03": ("DATABASE_TIMEOUT", 503, True, False),  # lock_not_available (lock_timeout)
    "25P03": ("DATABASE_TIMEOUT", 503, True, False),  # idle_in_transaction_session_timeout
    # class 23, integrity constraints
    "23505": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),  # unique_violation
    "23503": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),  # foreign_key_violation
    # not_null_violation: the server supplied no value (the validation requires every one)
    "23502": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),
    # check_violation naming no constraint: a row no partition takes (a day's partition
    # missing); one naming its constraint is the client's value (test_faults.py)
    "23514": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),
    # class 22, data exceptions
    "22003": ("QUOTE_VALIDATION_FAILED", 400, False, False),  # numeric_value_out_of_range
    "22001": ("QUOTE_VALIDATION_FAILED", 400, False, False),  # string_data_right_truncation
    "22P05": ("QUOTE_VALIDATION_FAILED", 400, False, False),  # untranslatable_character
    "22000": ("QUOTE_VALIDATION_FAILED", 400, False, False),  # data_exception
    # the server going away or full
    "25006": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),  # read_only_sql_transaction
    "57P01": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),  # admin_shutdown
    "57P02": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),  # crash_shutdown
    "57P03": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),  # cannot_connect_now
    "08006": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),  # connection_failure
    "08003": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),  # connection_does_not_exist
    "53300": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),  # too_many_connections
    "53100": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),  # disk_full
    "58030": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),  # io_error
    # a named prepared statement missing / already there: a transaction pooler the settings do
    # not name (TRIPQUOTE_DB_POOLER); no retry can succeed, so none is offered
    "26000": ("INTERNAL_ERROR", 500, False, False),  # invalid_sql_statement_name
    "42P05": ("INTERNAL_ERROR", 500, False, False),  # duplicate_prepared_statement
    # anything else: a persistence failure, never a 500 or a validation error
    "XX000": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),  # internal_error
    "42P01": ("QUOTE_PERSISTENCE_FAILED", 503, True, False),  # undefined_table
}


def _driver_error(sqlstate: str) -> asyncpg.PostgresError:
    error = asyncpg.PostgresError.new({"C": sqlstate, "M": "secret driver text", "S": "ERROR"})
    assert error.sqlstate == sqlstate
    return error


@pytest.mark.parametrize("sqlstate", sorted(EXPECTED))
@pytest.mark.parametrize("wrapped", [False, True], ids=["asyncpg", "sqlalchemy"])
def test_each_sqlstate_maps_to_its_code(sqlstate: str, wrapped: bool) -> None:
    code, status, retryable, server_retries = EXPECTED[sqlstate]
    error: BaseException = _driver_error(sqlstate)
    if wrapped:
        error = DBAPIError("INSERT INTO quotes …", None, error)
    mapped = map_db_error(error)
    assert (mapped.code, mapped.status, mapped.retryable) == (code, status, retryable)
    assert is_retryable(error) is server_retries
    assert "secret driver text" not in str(mapped.details)
    assert "INSERT" not in str(mapped.details)
    if status == 503:
        assert int(mapped.headers["Retry-After"]) >= 1


@pytest.mark.parametrize("sqlstate", ["26000", "42P05"])
def test_prepared_statement_errors_have_their_own_cause_and_name_the_setting(
    sqlstate: str,
) -> None:
    error = DBAPIError("SELECT …", None, _driver_error(sqlstate))
    assert map_db_error(error).details == {"cause": "prepared_statements_unsupported"}
    assert "set TRIPQUOTE_DB_POOLER=transaction" in describe(error)["hint"]
    assert "hint" not in describe(DBAPIError("SELECT …", None, _driver_error("57014")))


# --- a real lock timeout through HTTP -----------------------------------------------------


async def _held(world: World, quote_id: str) -> Any:
    """A second connection holding the quote's row lock in an open transaction."""
    holder = await asyncpg.connect(world.dsn)
    transaction = holder.transaction()
    await transaction.start()
    await holder.execute("SELECT id FROM quotes WHERE id = $1 FOR UPDATE", quote_id)
    return holder, transaction


@pytest.mark.parametrize(
    ("method", "suffix", "body"),
    [
        ("PATCH", "", {"version": 1, "travelers": 2}),
        ("POST", "/send", {"version": 1}),
        ("DELETE", "", {"version": 1}),
    ],
    ids=["patch", "send", "delete"],
)
async def test_a_lock_timeout_is_a_retryable_database_timeout(
    pg_url: str, world_factory: Any, method: str, suffix: str, body: dict[str, Any]
) -> None:
    world: World = await world_factory(make_settings(pg_url, tx_timeout_seconds=1))
    actor = await world.actor()
    created = await world.client.post(
        "/api/agents/quotes",
        json=quote_body("edinburgh-weekend-gbp", actor.client_id),
        headers=actor.headers,
    )
    quote_id = created.json()["quoteId"]
    url = f"/api/agents/quotes/{quote_id}{suffix}"
    before = await world.snapshot(quote_id)
    counts = await world.table_counts()
    holder, transaction = await _held(world, quote_id)
    try:
        response = await world.client.request(method, url, json=body, headers=actor.headers)
    finally:
        await transaction.rollback()
        await holder.close()
    error = assert_envelope(response, "DATABASE_TIMEOUT", 503)
    assert error["retryable"] is True
    assert error["details"]["cause"] == "55P03"  # lock_not_available, not a slow statement
    assert int(response.headers["retry-after"]) >= 1
    assert await world.snapshot(quote_id) == before
    assert await world.table_counts() == counts
    # The lock gone, the same request goes through: nothing of the first attempt remained.
    again = await world.client.request(method, url, json=body, headers=actor.headers)
    assert again.status_code == 200, again.text
    assert again.json()["version"] == 2
