"""A clean-up unit after the request's own unit failed (an idempotency key's release,
``TransactionRunner.run(accounted=False)``) is not a second failure of the request: its own
failure is raised to the caller but neither counted in ``tripquote_db_rollbacks_total`` nor
logged as a ``database_error`` (a tester saw one request counted twice, the second time as
SAVE_OUTCOME_UNKNOWN while it was answered QUOTE_PERSISTENCE_FAILED)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.conftest import World
from tests.servers import metric_value
from tripquote.errors import TripquoteError
from tripquote.observability.logging import flush_logs


async def _fails(conn: AsyncConnection) -> None:
    await conn.execute(text("SELECT 1 / 0"))  # SQLSTATE 22012: no retry, mapped


async def _rollbacks(world: World) -> float:
    return metric_value((await world.client.get("/metrics")).text, "tripquote_db_rollbacks_total")


def _database_errors(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    flush_logs()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    return [line for line in lines if line.get("event") == "database_error"]


@pytest.mark.parametrize("accounted", [True, False])
async def test_a_clean_up_unit_fails_without_counting_a_second_failure(
    world: World, capsys: pytest.CaptureFixture[str], accounted: bool
) -> None:
    runner = world.app.state.runner
    before = await _rollbacks(world)
    _database_errors(capsys)
    with pytest.raises(TripquoteError):
        await runner.run(_fails, accounted=accounted)
    assert await _rollbacks(world) - before == (1 if accounted else 0)
    assert len(_database_errors(capsys)) == (1 if accounted else 0)
