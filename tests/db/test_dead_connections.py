"""PostgreSQL: pooled connections whose server went away (a restart, ``pg_terminate_backend``,
an idle-session timeout) are replaced at checkout, so no save fails on a connection already
known closed; the driver path and SQLAlchemy's alike."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from tests.conftest import World, make_settings, quote_body


async def test_saves_after_every_idle_connection_was_killed(
    pg_url: str, world_factory: Any
) -> None:
    world: World = await world_factory(make_settings(pg_url, db_pool_size=3))
    actor = await world.actor()
    body = quote_body("kyoto-autumn-jpy", actor.client_id)
    admin = await asyncpg.connect(pg_url.replace("+asyncpg", ""))
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        assert killed >= 3  # the warmed pool
        while await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ):
            await asyncio.sleep(0.01)
    finally:
        await admin.close()
    await asyncio.sleep(0.05)  # the app's event loop reads the servers' goodbyes
    statuses = [(await world.client.get("/api/agents/clients", headers=actor.headers)).status_code]
    for _ in range(6):
        response = await world.client.post("/api/agents/quotes", json=body, headers=actor.headers)
        statuses.append(response.status_code)
    quote_id = response.json()["quoteId"]
    statuses.append(
        (
            await world.client.get(f"/api/agents/quotes/{quote_id}", headers=actor.headers)
        ).status_code
    )
    assert statuses == [200] + [201] * 6 + [200], statuses
