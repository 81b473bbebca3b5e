"""Units run on the asyncpg connection (``driver=True``, PostgreSQL): statement by statement
when asked, falling back to a transaction when the unit says it needs one, and a committing
statement never cut by the runner's backstop timeout."""

from __future__ import annotations

import time
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import World, make_settings
from tripquote.db.transaction import DriverTx, TransactionRunner
from tripquote.errors import DatabaseTimeout, QuotePersistenceFailed


@pytest_asyncio.fixture
async def runner(pg_url: str, world_factory: Any) -> TransactionRunner:
    world: World = await world_factory(make_settings(pg_url, tx_timeout_seconds=0.5))
    result: TransactionRunner = world.app.state.runner
    return result


async def test_single_statement_unit_falls_back_to_a_transaction(
    runner: TransactionRunner,
) -> None:
    seen: list[tuple[bool, bool]] = []

    async def work(tx: DriverTx) -> str:
        seen.append((tx.in_transaction, tx.driver.is_in_transaction()))
        tx.require_transaction()
        return "written"

    assert await runner.run(work, driver=True, single_statement=True) == "written"
    assert seen == [(False, False), (True, True)]


async def test_transaction_required_is_refused_inside_a_transaction(
    runner: TransactionRunner,
) -> None:
    async def work(tx: DriverTx) -> bool:
        tx.require_transaction()  # already in one: no-op
        return bool(tx.driver.is_in_transaction())

    assert await runner.run(work, driver=True) is True


@pytest.mark.parametrize("announced", [True, False], ids=["committing", "not-announced"])
async def test_backstop_spares_only_the_committing_statement(
    runner: TransactionRunner, announced: bool
) -> None:
    # Backstop = 0.5 s + 1 s margin; the server's own statement_timeout is lifted so only the
    # backstop can stop a 2 s statement.
    async def work(tx: DriverTx) -> str:
        await tx.driver.execute("SET statement_timeout = 0")
        if announced:
            tx.committing()
        try:
            await tx.driver.execute("SELECT pg_sleep(2)")
        finally:
            if not tx.driver.is_closed():
                await tx.driver.execute("RESET statement_timeout")
        return "committed"

    started = time.monotonic()
    if announced:
        assert await runner.run(work, driver=True, single_statement=True) == "committed"
        assert time.monotonic() - started >= 2
    else:
        with pytest.raises(DatabaseTimeout):
            await runner.run(work, driver=True, single_statement=True)
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


async def test_no_statement_follows_a_change_committed_by_itself(
    runner: TransactionRunner, pg_url: str
) -> None:
    """The runner may run a unit again after a retryable error; that is only safe while the
    unit has committed nothing, so after its one statement committed a change the unit can
    run no other (found by the breaker: a synthetic unit committed three times)."""
    marker = f"once-{time.monotonic_ns()}"
    runs = 0

    async def work(tx: DriverTx) -> None:
        nonlocal runs
        runs += 1
        tx.committing()
        await tx.driver.execute(
            "INSERT INTO agencies (id, name, timezone, created_at) VALUES ($1, $1, 'UTC', now())",
            marker,
        )
        tx.committed()
        await tx.driver.execute("SELECT 1")  # refused: the change above is already committed

    with pytest.raises(RuntimeError, match="after its change committed"):
        await runner.run(work, driver=True, single_statement=True)
    assert runs == 1
    async with runner.engine.begin() as conn:
        count = await conn.exec_driver_sql("SELECT count(*) FROM agencies WHERE id = $1", (marker,))
        assert count.scalar_one() == 1
        await conn.exec_driver_sql("DELETE FROM agencies WHERE id = $1", (marker,))


async def test_statements_may_follow_a_change_inside_a_transaction(
    runner: TransactionRunner,
) -> None:
    async def work(tx: DriverTx) -> int:
        tx.committing()
        tx.committed()  # in a transaction nothing is committed yet: the runner commits
        return int(await tx.driver.fetchval("SELECT 1"))

    assert await runner.run(work, driver=True) == 1
