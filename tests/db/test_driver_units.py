"""Store units run on the asyncpg connection (``TransactionRunner.run_store``): in a
transaction when atomic, statement by statement otherwise, the one write of a unit without a
transaction never cut by the runner's backstop timeout, and nothing run after it committed."""

from __future__ import annotations

import time
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import World, make_settings
from tripquote.db.transaction import TransactionRunner, Tx
from tripquote.errors import DatabaseTimeout, QuotePersistenceFailed
from tripquote.quotes.sql import Statement

SLOW_WRITE = Statement.of("SELECT true AS written FROM pg_sleep(2)")


@pytest_asyncio.fixture
async def runner(pg_url: str, world_factory: Any) -> TransactionRunner:
    world: World = await world_factory(make_settings(pg_url, tx_timeout_seconds=0.5))
    result: TransactionRunner = world.app.state.runner
    return result


@pytest.mark.parametrize("atomic", [False, True])
async def test_a_unit_runs_in_a_transaction_only_when_atomic(
    runner: TransactionRunner, atomic: bool
) -> None:
    async def work(tx: Tx) -> bool:
        return bool(tx.driver.is_in_transaction())

    assert await runner.run_store(work, atomic=atomic) is atomic


@pytest.mark.parametrize("as_write", [True, False], ids=["the write", "a read"])
async def test_backstop_spares_only_the_write_of_a_unit_without_transaction(
    runner: TransactionRunner, as_write: bool
) -> None:
    # Backstop = 0.5 s + 1 s margin; the server's own statement_timeout is lifted so only the
    # backstop can stop a 2 s statement.
    async def work(tx: Tx) -> str:
        await tx.driver.execute("SET statement_timeout = 0")
        try:
            if as_write:
                await tx.write(SLOW_WRITE, {})
            else:
                await tx.fetchrow(SLOW_WRITE, {})
        finally:
            if not tx.connection.is_closed():
                await tx.connection.execute("RESET statement_timeout")
        return "committed"

    started = time.monotonic()
    if as_write:
        assert await runner.run_store(work, atomic=False) == "committed"
        assert time.monotonic() - started >= 2
    else:
        with pytest.raises(DatabaseTimeout):
            await runner.run_store(work, atomic=False)
        assert time.monotonic() - started < 2


@pytest.mark.parametrize("write", [False, True], ids=["read", "write"])
async def test_a_lost_connection_is_worded_for_what_the_unit_did(
    runner: TransactionRunner, write: bool
) -> None:
    async def work(conn: Any) -> None:
        await conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")

    with pytest.raises(QuotePersistenceFailed) as raised:
        await runner.run(work, write=write)
    assert raised.value.details["cause"] in {"08003", "08006", "connection_lost"}
    assert ("saved" in raised.value.message) is write
    assert ("read" in raised.value.message) is not write


_INSERT_AGENCY = Statement.of(
    """
WITH a AS (INSERT INTO agencies (id, name, timezone, created_at)
           VALUES (:marker, :marker, 'UTC', now()) RETURNING id)
SELECT count(*) > 0 AS written FROM a
"""
)


async def test_no_statement_follows_a_change_committed_by_itself(
    runner: TransactionRunner,
) -> None:
    """The runner may run a unit again after a retryable error; that is only safe while the
    unit has committed nothing, so after its one write committed a change the unit can run
    no other (found by the breaker: a synthetic unit committed three times)."""
    marker = f"once-{time.monotonic_ns()}"
    runs = 0

    async def work(tx: Tx) -> None:
        nonlocal runs
        runs += 1
        await tx.write(_INSERT_AGENCY, {"marker": marker})
        await tx.driver.execute("SELECT 1")  # refused: the change above is already committed

    with pytest.raises(RuntimeError, match="after its change committed"):
        await runner.run_store(work, atomic=False)
    assert runs == 1
    async with runner.engine.begin() as conn:
        count = await conn.exec_driver_sql("SELECT count(*) FROM agencies WHERE id = $1", (marker,))
        assert count.scalar_one() == 1
        await conn.exec_driver_sql("DELETE FROM agencies WHERE id = $1", (marker,))


async def test_statements_may_follow_a_change_inside_a_transaction(
    runner: TransactionRunner,
) -> None:
    marker = f"atomic-{time.monotonic_ns()}"

    async def work(tx: Tx) -> int:
        await tx.write(_INSERT_AGENCY, {"marker": marker})
        return int(await tx.driver.fetchval("SELECT count(*) FROM agencies WHERE id = $1", marker))

    assert await runner.run_store(work, atomic=True) == 1
    async with runner.engine.begin() as conn:
        await conn.exec_driver_sql("DELETE FROM agencies WHERE id = $1", (marker,))
