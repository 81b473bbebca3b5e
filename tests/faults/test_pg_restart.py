"""PostgreSQL stopped and started again under a burst of saves, on a cluster this test owns
(``initdb`` in a temporary folder, never the shared server): the served process recovers by
itself, readiness follows the database, every failed save is a retryable 503 envelope, every
acknowledged save is stored, and no quote is half-written."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.api.test_errors_api import assert_envelope
from tests.faults.burst import Burst
from tests.faults.integrity import check_acknowledged, check_no_partial_writes
from tests.servers import (
    TempCluster,
    create_database,
    database_name,
    migrate_with_cli,
    provision_actor,
    running_cluster,
    server_env,
    serving,
    sqlalchemy_url,
    wait_until,
)

pytestmark = pytest.mark.postgres


@pytest_asyncio.fixture(scope="module")
async def cluster() -> AsyncIterator[TempCluster]:
    """A running cluster of this module's own; stopped and deleted afterwards."""
    async with running_cluster() as cluster:
        yield cluster


async def _readiness(client: httpx.AsyncClient, status: int) -> httpx.Response | None:
    response = await client.get("/health/ready")
    return response if response.status_code == status else None


async def test_postgres_restart_mid_burst(cluster: TempCluster, tmp_path: Path) -> None:
    name = database_name("restart")
    await create_database(name, dsn=cluster.dsn)
    url = sqlalchemy_url(cluster.dsn, name)
    await asyncio.to_thread(migrate_with_cli, url, cwd=tmp_path)
    actors = [await provision_actor(url) for _ in range(3)]
    # Short waits for a connection and for a cut COMMIT's outcome: the saves while down fail
    # within a second or two (each is the retryable envelope), not after the defaults.
    env = server_env(
        url,
        tx_timeout_seconds=3,
        db_pool_timeout_seconds=3,
        db_connect_retry_seconds=1,
        save_outcome_timeout_seconds=2,
    )

    async with (
        asyncio.timeout(60),
        serving(env, log_dir=tmp_path) as [server],
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as client,
    ):
        burst = Burst(client, actors)
        await burst.seed_quotes(6)
        running = asyncio.create_task(burst.run(concurrency=12, max_requests=700))
        try:
            await burst.wait_for(lambda: burst.completed >= 60, within=20, what="60 saves")
            await asyncio.to_thread(cluster.stop, "fast")  # requests are in flight
            down = await wait_until(
                lambda: _readiness(client, 503), within=10, what="readiness 503"
            )
            assert assert_envelope(down, "SERVICE_NOT_READY", 503)["retryable"] is True
            failed_before = burst.failures
            await burst.wait_for(
                lambda: burst.failures >= failed_before + 30, within=15, what="saves while down"
            )
            burst.pause()
            await asyncio.to_thread(cluster.start)
            up = await wait_until(lambda: _readiness(client, 200), within=20, what="ready")
            assert up.json()["status"] == "ready"
            burst.resume()
            recovered_from = burst.successes
            await burst.wait_for(
                lambda: burst.successes >= recovered_from + 60, within=20, what="saves after"
            )
        finally:
            burst.finish()
            await running

        assert not burst.problems, burst.problems[:10]
        assert burst.failures >= 30, burst.codes()
        assert server.alive()  # recovered without a restart of its own
        stats = await check_no_partial_writes(f"{cluster.dsn}/{name}")
        assert stats["quotes"] >= 6
        await check_acknowledged(f"{cluster.dsn}/{name}", burst.acks)
