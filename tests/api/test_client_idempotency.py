"""``Idempotency-Key`` on ``POST /api/agents/clients``, with the quote create's semantics (one
machinery, ``idempotency.idempotent``): the same key and body replay the first response
(``Idempotent-Replayed: true``) and create nothing more; another body, or another URL, under
the same key is 422 IDEMPOTENCY_KEY_REUSED; a duplicate while the first still runs is 409
IDEMPOTENCY_KEY_IN_USE; keys are per agent; a failed request releases its key."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, World, quote_body

URL = "/api/agents/clients"
BODY = {"name": "Grace Hopper", "email": "grace@example.com"}


async def _post(world: World, actor: Actor, key: str, body: Any = None, url: str = URL) -> Any:
    return await world.client.post(
        url, json=BODY if body is None else body, headers={**actor.headers, "Idempotency-Key": key}
    )


async def _clients(world: World, actor: Actor) -> int:
    return await world.count("clients", "agent_id = :a", a=actor.agent_id)


async def test_three_identical_keyed_posts_make_one_client(world: World) -> None:
    actor = await world.actor()
    before = await _clients(world, actor)
    first = await _post(world, actor, "client-1")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    for _ in range(2):
        again = await _post(world, actor, "client-1")
        assert (again.status_code, again.headers["idempotent-replayed"]) == (201, "true")
        assert again.content == first.content
    assert await _clients(world, actor) == before + 1
    # The stored answer is the client as it is stored.
    read = await world.client.get(f"{URL}/{first.json()['clientId']}", headers=actor.headers)
    assert read.json()["client"] == first.json()["client"]


async def test_a_key_with_another_body_is_refused_and_writes_nothing(world: World) -> None:
    actor = await world.actor()
    assert (await _post(world, actor, "client-2")).status_code == 201
    counts = await world.table_counts()
    other = await _post(world, actor, "client-2", {**BODY, "name": "Someone Else"})
    body = assert_envelope(other, "IDEMPOTENCY_KEY_REUSED", 422)
    assert body["details"] == {"idempotencyKey": "client-2"}
    assert "idempotent-replayed" not in other.headers
    assert await world.table_counts() == counts


async def test_a_key_names_one_url(world: World) -> None:
    """The key's scope includes the target: a client's key is not a quote's, nor the reverse."""
    actor = await world.actor()
    assert (await _post(world, actor, "client-then-quote")).status_code == 201
    counts = await world.table_counts()
    quote = quote_body("edinburgh-weekend-gbp", actor.client_id)
    on_quotes = await _post(world, actor, "client-then-quote", quote, "/api/agents/quotes")
    assert_envelope(on_quotes, "IDEMPOTENCY_KEY_REUSED", 422)
    assert await world.table_counts() == counts

    created = await _post(world, actor, "quote-then-client", quote, "/api/agents/quotes")
    assert created.status_code == 201, created.text
    counts = await world.table_counts()
    assert_envelope(await _post(world, actor, "quote-then-client"), "IDEMPOTENCY_KEY_REUSED", 422)
    assert await world.table_counts() == counts


async def test_keys_are_per_agent(world: World) -> None:
    actor, stranger = await world.actor(), await world.actor()
    mine = await _post(world, actor, "shared-key")
    theirs = await _post(world, stranger, "shared-key")
    assert (mine.status_code, theirs.status_code) == (201, 201)
    assert "idempotent-replayed" not in theirs.headers
    assert theirs.json()["client"]["agentId"] == stranger.agent_id
    assert mine.json()["clientId"] != theirs.json()["clientId"]


async def test_a_failed_request_releases_its_key(world: World) -> None:
    actor = await world.actor()
    counts = await world.table_counts()
    bad = await _post(world, actor, "fix-then-retry", {"name": ""})
    assert_envelope(bad, "QUOTE_VALIDATION_FAILED", 400)
    assert await world.table_counts() == counts
    assert await world.count("idempotency_keys", "key = :k", k="fix-then-retry") == 0
    fixed = await _post(world, actor, "fix-then-retry")
    assert fixed.status_code == 201, fixed.text


async def test_a_malformed_key_is_refused(world: World) -> None:
    actor = await world.actor()
    counts = await world.table_counts()
    response = await _post(world, actor, "x" * 256)
    body = assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
    assert [e["path"] for e in body["details"]["errors"]] == ["Idempotency-Key"]
    assert await world.table_counts() == counts


async def test_a_duplicate_while_the_first_runs_is_in_use(world: World) -> None:
    """The first request holds its claim while its insert waits for a lock a test connection
    holds; the duplicate meets the claim: 409, retryable, nothing written; once the lock goes,
    the first creates the one client and the key then replays it."""
    actor = await world.actor()
    before = await _clients(world, actor)
    blocker = await asyncpg.connect(world.dsn)
    try:
        locked = blocker.transaction()
        await locked.start()
        await blocker.execute("LOCK TABLE clients IN EXCLUSIVE MODE")
        first = asyncio.ensure_future(_post(world, actor, "slow-client"))
        for _ in range(500):  # bounded: until the first request waits for the lock
            waiting = await blocker.fetchval(
                "SELECT count(*) FROM pg_locks WHERE relation = 'clients'::regclass AND NOT granted"
            )
            if waiting or first.done():
                break
            await asyncio.sleep(0.01)
        assert waiting == 1, "the first request never waited for the lock"
        duplicate = await _post(world, actor, "slow-client")
        body = assert_envelope(duplicate, "IDEMPOTENCY_KEY_IN_USE", 409)
        assert body["retryable"] is True
        assert duplicate.headers["retry-after"] == "1"
        await locked.rollback()
        created = await first
    finally:
        await blocker.close()
    assert created.status_code == 201, created.text
    assert await _clients(world, actor) == before + 1
    replay = await _post(world, actor, "slow-client")
    assert (replay.status_code, replay.content) == (201, created.content)
