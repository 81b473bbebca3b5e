"""A create is one statement (``sql.CREATE``): it checks the agent, the client and the quota
bound itself, and when it writes nothing it returns the facts that say why in the same round
trip (the precise error, nothing written); at the quota bound the agent's open quotes are
counted exactly under its row lock and the create runs again.

The statements are read off asyncpg's query logger on every pooled connection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import World, make_settings, quote_body
from tests.db.statements import Statements, watching
from tripquote.quotes import sql

LIMIT = 2
_NAMES = {
    sql.CREATE.text: "CREATE",
    sql.LOAD.text: "LOAD",
    sql.LOCK_AGENT.text: "LOCK_AGENT",
    sql.RECOUNT.text: "RECOUNT",
}


@pytest_asyncio.fixture
async def world(pg_url: str, world_factory: Any) -> World:
    built: World = await world_factory(make_settings(pg_url, max_open_quotes_per_agent=LIMIT))
    return built


@pytest.fixture
def statements(world: World) -> Iterator[Statements]:
    with watching(world.engine, _NAMES) as watcher:
        yield watcher


async def _bound(world: World, agent_id: str) -> int:
    async with world.engine.connect() as conn:
        result = await conn.exec_driver_sql(
            "SELECT open_quote_bound FROM agents WHERE id = $1", (agent_id,)
        )
        return int(result.scalar_one())


async def _create(world: World, headers: dict[str, str], client_id: str) -> Any:
    return await world.client.post(
        "/api/agents/quotes", json=quote_body("kyoto-autumn-jpy", client_id), headers=headers
    )


async def test_a_create_for_an_own_client_is_one_statement(
    world: World, statements: Statements
) -> None:
    actor = await world.actor()
    response = await _create(world, actor.headers, actor.client_id)
    assert response.status_code == 201, response.text
    assert await statements.take() == ["CREATE"]
    quote_id = response.json()["quoteId"]
    assert await world.count(
        "quotes", "id = :id AND agency_id = :a", id=quote_id, a=actor.agency_id
    )
    assert await world.count("quote_revisions", "quote_id = :id", id=quote_id) == 1
    assert await _bound(world, actor.agent_id) == 1


async def test_an_admin_creates_for_its_agencys_client_in_one_statement(
    world: World, statements: Statements
) -> None:
    agent = await world.actor()
    admin = await world.actor(agency_id=agent.agency_id, role="admin")
    response = await _create(world, admin.headers, agent.client_id)
    assert response.status_code == 201, response.text
    assert await statements.take() == ["CREATE"]
    assert response.json()["quote"]["agentId"] == admin.agent_id


@pytest.mark.parametrize(
    ("whose", "code", "status"),
    [("colleague", "AUTHORIZATION_FAILED", 403), ("other agency", "CLIENT_NOT_FOUND", 404)],
)
async def test_another_agents_client_writes_nothing_and_says_why(
    world: World, statements: Statements, whose: str, code: str, status: int
) -> None:
    actor = await world.actor()
    other = await world.actor(agency_id=actor.agency_id if whose == "colleague" else None)
    before = await world.table_counts()
    response = await _create(world, actor.headers, other.client_id)
    assert response.status_code == status, response.text
    assert response.json()["errorCode"] == code
    assert await statements.take() == ["CREATE"]  # the refusal's facts came back with it
    assert await world.table_counts() == before
    assert await _bound(world, actor.agent_id) == 0


async def test_at_the_bound_the_create_is_counted_under_the_agents_lock(
    world: World, statements: Statements
) -> None:
    actor = await world.actor()
    for _ in range(LIMIT):
        assert (await _create(world, actor.headers, actor.client_id)).status_code == 201
    await statements.take()
    before = await world.table_counts()
    refused = await _create(world, actor.headers, actor.client_id)
    assert refused.status_code == 403, refused.text
    assert refused.json()["errorCode"] == "QUOTA_EXCEEDED"
    # The statement saw the bound; the exact count under the agent's lock confirms it.
    assert await statements.take() == ["CREATE", "LOCK_AGENT", "RECOUNT"]
    assert await world.table_counts() == before
    assert await _bound(world, actor.agent_id) == LIMIT


async def test_the_largest_allowed_limit_is_one_statement_too(
    pg_url: str, world_factory: Any
) -> None:
    world = await world_factory(make_settings(pg_url, max_open_quotes_per_agent=2**31 - 1))
    actor = await world.actor()
    response = await _create(world, actor.headers, actor.client_id)
    assert response.status_code == 201, response.text
