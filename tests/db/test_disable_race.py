"""PostgreSQL: an agent disabled while its write waits for the agent's row lock is refused
with AGENT_NOT_FOUND and nothing is written: the lock re-reads ``active``. The request's
first read saw the agent active (reads do not wait for row locks), so without that re-read
the write would land for an agent disabled before it."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import httpx

from tests.conftest import World, make_settings, quote_body


async def _disable_while_waiting(pg_url: str, agent_id: str, request: Any) -> httpx.Response:
    """Hold the agent's row lock, start ``request``, disable the agent once the request waits
    for that lock, release it; the request's response."""
    holder = await asyncpg.connect(pg_url.replace("+asyncpg", ""))
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT 1 FROM agents WHERE id = $1 FOR UPDATE", agent_id)
        pending = asyncio.ensure_future(request())
        while not await holder.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        ):
            assert not pending.done(), pending.result().text  # it must wait for the lock
            await asyncio.sleep(0.01)
        await holder.execute("UPDATE agents SET active = false WHERE id = $1", agent_id)
        await transaction.commit()
        response: httpx.Response = await pending
        return response
    finally:
        await holder.close()


async def test_a_create_waiting_for_the_lock_of_a_disabled_agent(
    pg_url: str, world_factory: Any
) -> None:
    world: World = await world_factory(make_settings(pg_url))
    actor = await world.actor()
    before = await world.table_counts()

    async def create() -> httpx.Response:
        return await world.client.post(
            "/api/agents/quotes",
            json=quote_body("kyoto-autumn-jpy", actor.client_id),
            headers={**actor.headers, "Idempotency-Key": "disable-race"},  # locked path
        )

    response = await _disable_while_waiting(pg_url, actor.agent_id, create)
    assert response.status_code == 404, response.text
    assert response.json()["errorCode"] == "AGENT_NOT_FOUND"
    assert await world.table_counts() == before
    assert await world.count("agents", "id = :a AND open_quote_bound = 0", a=actor.agent_id)


async def test_a_reopen_waiting_for_the_lock_of_its_disabled_owner(
    pg_url: str, world_factory: Any
) -> None:
    world: World = await world_factory(make_settings(pg_url))
    actor = await world.actor()
    body = quote_body("kyoto-autumn-jpy", actor.client_id)
    created = await world.client.post("/api/agents/quotes", json=body, headers=actor.headers)
    quote_id = created.json()["quoteId"]
    for version, action in ((1, "send"), (2, "reject")):
        done = await world.client.post(
            f"/api/agents/quotes/{quote_id}/{action}",
            json={"version": version},
            headers=actor.headers,
        )
        assert done.status_code == 200, done.text
    before = await world.snapshot(quote_id)

    async def reopen() -> httpx.Response:
        return await world.client.patch(
            f"/api/agents/quotes/{quote_id}",
            json={"version": 3, "notes": "reopened"},
            headers=actor.headers,
        )

    response = await _disable_while_waiting(pg_url, actor.agent_id, reopen)
    assert response.status_code == 404, response.text
    assert response.json()["errorCode"] == "AGENT_NOT_FOUND"
    assert await world.snapshot(quote_id) == before
