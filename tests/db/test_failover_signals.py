"""Failover-aware (issue 13): a server that refuses writes (25006, a demoted primary) or shuts
down drops the connection, so the pool reconnects to the primary there is now; the client gets
the retryable envelope with the SQLSTATE as cause; readiness fails on a standby; connecting is
tried again for a few seconds when no statement was sent, so a restart costs a delay, not an
error. On a cluster of this module's own (made a standby with ``standby.signal``)."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from tests.api.test_errors_api import assert_envelope
from tests.conftest import World, make_settings, quote_body
from tests.servers import (
    TempCluster,
    _cluster_user,
    create_database,
    database_name,
    running_cluster,
    sqlalchemy_url,
    wait_until,
)
from tripquote.db import migrate
from tripquote.db.engine import create_engine, pooled_driver

pytestmark = pytest.mark.postgres

Q = "/api/agents/quotes"


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[TempCluster]:
    async with running_cluster() as cluster:
        yield cluster


async def _migrated(cluster: TempCluster) -> str:
    name = database_name("failover")
    await create_database(name, dsn=cluster.dsn)
    url = sqlalchemy_url(cluster.dsn, name)
    await asyncio.to_thread(migrate.upgrade, make_settings(url))
    return url


def _as_standby(cluster: TempCluster) -> None:
    """Restart the cluster as a standby (no primary to follow: it stays in recovery)."""
    cluster.stop()
    signal = cluster.data_dir / "standby.signal"
    signal.touch()
    user = _cluster_user()
    shutil.chown(signal, user, user)
    cluster.start()


async def test_pooled_driver_drops_a_connection_refused_as_read_only(pg_url: str) -> None:
    engine = create_engine(make_settings(pg_url, db_pool_size=2))
    try:
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            async with pooled_driver(engine) as driver:
                await driver.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
                await driver.execute("CREATE TEMP TABLE refused (x int)")  # 25006
        assert driver.is_closed()  # never handed out again
        async with pooled_driver(engine) as fresh:
            assert fresh is not driver
            assert await fresh.fetchval("SHOW transaction_read_only") == "off"
    finally:
        await engine.dispose()


async def test_standby_is_not_ready_and_a_write_is_the_retryable_25006(
    cluster: TempCluster, world_factory: Any
) -> None:
    url = await _migrated(cluster)
    world: World = await world_factory(make_settings(url, db_pool_size=2))
    actor = await world.actor()
    body = quote_body("kyoto-autumn-jpy", actor.client_id)
    await asyncio.to_thread(_as_standby, cluster)

    async def standby_answer() -> Any:
        response = await world.client.get("/health/ready")
        return response if response.status_code == 503 else None

    ready = await wait_until(standby_answer, within=20, what="readiness 503")
    assert assert_envelope(ready, "SERVICE_NOT_READY", 503)["details"] == {"database": "standby"}

    response = await world.client.post(Q, json=body, headers=actor.headers)
    error = assert_envelope(response, "QUOTE_PERSISTENCE_FAILED", 503)
    assert error["retryable"] is True and response.headers["retry-after"] == "1"
    assert error["details"] == {"cause": "25006"}
    assert await world.count("quotes") == 0

    await asyncio.to_thread(cluster._run, "pg_ctl", "-D", str(cluster.data_dir), "-w", "promote")

    async def saved() -> Any:
        again = await world.client.post(Q, json=body, headers=actor.headers)
        return again if again.status_code == 201 else None

    await wait_until(saved, within=20, what="a save after the promotion")
    assert (await world.client.get("/health/ready")).status_code == 200


async def test_a_restart_costs_a_delay_not_an_error(
    cluster: TempCluster, world_factory: Any
) -> None:
    url = await _migrated(cluster)
    world: World = await world_factory(
        make_settings(url, db_pool_size=2, db_connect_retry_seconds=30)
    )
    actor = await world.actor()
    body = quote_body("kyoto-autumn-jpy", actor.client_id)
    await asyncio.to_thread(cluster.stop)
    # Every pooled connection is dead and the server refuses new ones: the save waits.
    saving = asyncio.create_task(world.client.post(Q, json=body, headers=actor.headers))
    await asyncio.sleep(0.5)  # not a timing assertion: only lets the save meet the refusal
    assert not saving.done()
    await asyncio.to_thread(cluster.start)
    response = await asyncio.wait_for(saving, 30)
    assert response.status_code == 201, response.text
    assert await world.count("quotes") == 1
