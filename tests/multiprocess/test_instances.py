"""Three ``tripquote serve`` processes on different ports against one PostgreSQL database and
one Redis: nothing correct depends on a single process. A hot quote patched from one version
through all three has exactly one winner; one Idempotency-Key sent to all three at once creates
exactly one quote."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
import pytest_asyncio

from tests.api.test_errors_api import assert_envelope
from tests.conftest import quote_body
from tests.multiprocess.conftest import REDIS_DB
from tests.servers import (
    REDIS_HOST,
    REDIS_PORT,
    Database,
    Server,
    provision_actor,
    server_env,
    serving,
)

pytestmark = pytest.mark.postgres


@pytest_asyncio.fixture(scope="module")
async def instances(
    database: Database, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[list[Server]]:
    """Three ready servers sharing the module's database and Redis (generous limits)."""
    env = server_env(
        database.url,
        rate_limit_storage=f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
        db_pool_size=5,
        db_max_overflow=5,
        db_pool_timeout_seconds=10,
    )
    async with serving(env, log_dir=tmp_path_factory.mktemp("instances"), count=3) as servers:
        assert len({s.base_url for s in servers}) == 3
        yield servers


@pytest_asyncio.fixture
async def clients(instances: list[Server]) -> AsyncIterator[list[httpx.AsyncClient]]:
    """One HTTP client per instance."""
    limits = httpx.Limits(max_connections=60, max_keepalive_connections=60)
    opened = [httpx.AsyncClient(base_url=s.base_url, timeout=30, limits=limits) for s in instances]
    try:
        yield opened
    finally:
        for client in opened:
            await client.aclose()


async def test_hot_quote_has_exactly_one_winner(
    database: Database,
    clients: list[httpx.AsyncClient],
    redis_cleanup: list[str],
) -> None:
    actor = await provision_actor(database.url)
    redis_cleanup.append(actor.agent_id)
    created = await clients[0].post(
        "/api/agents/quotes",
        json=quote_body("serengeti-safari-usd", actor.client_id),
        headers=actor.headers,
    )
    assert created.status_code == 201, created.text
    quote_id, start = created.json()["quoteId"], created.json()["version"]

    async def patch(n: int) -> httpx.Response:
        return await clients[n % 3].patch(
            f"/api/agents/quotes/{quote_id}",
            json={"version": start, "tripName": f"hot {n}"},
            headers=actor.headers,
        )

    async with asyncio.timeout(60):
        responses = await asyncio.gather(*(patch(n) for n in range(150)))
    winners = [r for r in responses if r.status_code == 200]
    losers = [r for r in responses if r.status_code != 200]
    assert len(winners) == 1, sorted(r.status_code for r in responses)
    winner = winners[0].json()
    assert winner["version"] == start + 1
    for response in losers:
        body = assert_envelope(response, "QUOTE_CONFLICT_VERSION", 409)
        assert body["retryable"] is True
        details = body["details"]
        assert (details["expectedVersion"], details["actualVersion"]) == (start, start + 1)
        assert details["lastModifiedBy"] == actor.agent_id
        assert "tripName" in details["changedFields"]

    final = await clients[1].get(f"/api/agents/quotes/{quote_id}", headers=actor.headers)
    assert final.json()["version"] == start + 1
    assert final.json()["quote"]["tripName"] == winner["quote"]["tripName"]
    revisions = await clients[2].get(
        f"/api/agents/quotes/{quote_id}/revisions", headers=actor.headers
    )
    assert [r["version"] for r in revisions.json()["revisions"]] == [start, start + 1]


async def test_one_idempotency_key_creates_one_quote(
    database: Database,
    clients: list[httpx.AsyncClient],
    redis_cleanup: list[str],
) -> None:
    actor = await provision_actor(database.url)
    redis_cleanup.append(actor.agent_id)
    body = quote_body("edinburgh-weekend-gbp", actor.client_id)
    headers = {**actor.headers, "Idempotency-Key": f"key-{uuid.uuid4()}"}

    async def post(n: int) -> httpx.Response:
        return await clients[n % 3].post("/api/agents/quotes", json=body, headers=headers)

    async with asyncio.timeout(60):
        responses = await asyncio.gather(*(post(n) for n in range(30)))

    created = [r for r in responses if r.status_code == 201]
    assert created, sorted(r.status_code for r in responses)
    assert len({r.json()["quoteId"] for r in created}) == 1
    for response in (r for r in responses if r.status_code != 201):
        payload = assert_envelope(response, "IDEMPOTENCY_KEY_IN_USE", 409)
        assert payload["retryable"] is True
        assert int(response.headers["retry-after"]) >= 1
    originals = [r for r in created if "idempotent-replayed" not in r.headers]
    assert len(originals) == 1, [dict(r.headers) for r in created]
    original = originals[0]
    for replayed in (r for r in created if r is not original):
        assert replayed.headers["idempotent-replayed"] == "true"
        assert replayed.content == original.content

    conn = await asyncpg.connect(database.dsn)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM quotes WHERE agent_id = $1", actor.agent_id
        )
    finally:
        await conn.close()
    assert stored == 1

    replay = await clients[2].post("/api/agents/quotes", json=body, headers=headers)
    assert replay.status_code == 201
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == original.content
    assert replay.headers["etag"] == original.headers["etag"]
    assert replay.headers["location"] == original.headers["location"]
