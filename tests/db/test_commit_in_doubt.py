"""A save whose COMMIT was sent and never answered (issue 13): the answer is the truth.

Provoked deterministically on a cluster of this module's own: ``synchronous_standby_names``
names a standby that does not exist, so every synchronous COMMIT waits on SyncRep; the test
then terminates the waiting backend (PostgreSQL: "The transaction has already committed
locally, but might not have been replicated to the standby"; the client sees its connection
close), or stops the whole server (the lookup cannot decide). The not-committed case holds the
agent's row lock so the create's statement waits, and terminates it before it commits.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import pytest_asyncio
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, World, make_settings, quote_body
from tests.servers import (
    TempCluster,
    create_database,
    database_name,
    running_cluster,
    sqlalchemy_url,
    wait_until,
)
from tripquote.db import migrate
from tripquote.idempotency import Claim

pytestmark = pytest.mark.postgres

Q = "/api/agents/quotes"

# The backends of the app waiting for the (absent) synchronous standby with a change to
# quotes in their transaction (never the operation records' writer).
_WAITING = """
SELECT a.pid FROM pg_stat_activity a
 WHERE a.wait_event = 'SyncRep' AND a.datname = current_database()
   AND EXISTS (SELECT 1 FROM pg_locks l
                WHERE l.pid = a.pid AND l.relation = 'quotes'::regclass)
"""


@pytest_asyncio.fixture(scope="module")
async def cluster() -> AsyncIterator[TempCluster]:
    async with running_cluster() as cluster:
        yield cluster


@pytest_asyncio.fixture
async def database(cluster: TempCluster) -> AsyncIterator[str]:
    """A migrated database on the cluster, synchronous replication off to begin with."""
    name = database_name("indoubt")
    await create_database(name, dsn=cluster.dsn)
    url = sqlalchemy_url(cluster.dsn, name)
    await asyncio.to_thread(migrate.upgrade, make_settings(url))
    yield url
    await _sync_standby(url, "")


async def _admin(url: str) -> asyncpg.Connection:
    # The test's own commits never wait for the standby.
    return await asyncpg.connect(
        url.replace("+asyncpg", ""), server_settings={"synchronous_commit": "local"}
    )


async def _sync_standby(url: str, names: str, engine: AsyncEngine | None = None) -> None:
    """Set ``synchronous_standby_names`` and wait until it holds for every new backend; then
    drop ``engine``'s pooled connections: ``pg_reload_conf()`` only signals the postmaster,
    and an idle backend may run its next statement before the setting reaches it."""
    conn = await _admin(url)
    try:
        await conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{names}'")
        await conn.execute("SELECT pg_reload_conf()")
    finally:
        await conn.close()

    async def in_force() -> bool:
        fresh = await _admin(url)
        try:
            return bool(await fresh.fetchval("SHOW synchronous_standby_names") == names)
        finally:
            await fresh.close()

    await wait_until(in_force, within=20, what=f"synchronous_standby_names = {names!r}")
    if engine is not None:
        await engine.dispose()


async def _terminate_when_waiting(url: str) -> int:
    """Wait until a save waits on SyncRep, terminate its backend; its pid."""
    conn = await _admin(url)
    try:
        pid = await wait_until(lambda: conn.fetchval(_WAITING), within=20, what="SyncRep wait")
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
        return int(pid)
    finally:
        await conn.close()


async def _count(url: str, sql: str, *args: Any) -> int:
    conn = await _admin(url)
    try:
        return int(await conn.fetchval(sql, *args))
    finally:
        await conn.close()


async def _world(world_factory: Any, url: str, **settings: Any) -> tuple[World, Actor]:
    world: World = await world_factory(make_settings(url, **settings))
    return world, await world.actor()


@pytest.mark.parametrize("keyed", [False, True], ids=["one-statement", "idempotency-key"])
async def test_create_committed_locally_answers_201_and_a_retry_replays(
    database: str, world_factory: Any, keyed: bool
) -> None:
    world, actor = await _world(world_factory, database)
    body = quote_body("kyoto-autumn-jpy", actor.client_id)
    headers = {**actor.headers, **({"Idempotency-Key": "in-doubt-1"} if keyed else {})}
    await _sync_standby(database, "nobody", world.engine)
    saving = asyncio.create_task(world.client.post(Q, json=body, headers=headers))
    await _terminate_when_waiting(database)
    response = await asyncio.wait_for(saving, 20)
    await _sync_standby(database, "")

    assert response.status_code == 201, response.text
    saved = response.json()
    quote_id = saved["quoteId"]
    assert saved["version"] == 1 and saved["quote"]["status"] == "DRAFT"
    assert response.headers["location"] == f"{Q}/{quote_id}"
    assert await _count(database, "SELECT count(*) FROM quotes") == 1
    read = await world.client.get(f"{Q}/{quote_id}", headers=actor.headers)
    assert read.json()["quote"] == saved["quote"]
    if keyed:  # the same key replays at once: no IDEMPOTENCY_KEY_IN_USE window, no duplicate
        again = await world.client.post(Q, json=body, headers=headers)
        assert again.status_code == 201, again.text
        assert again.headers["idempotent-replayed"] == "true"
        assert again.json() == saved
        assert await _count(database, "SELECT count(*) FROM quotes") == 1


@pytest.mark.parametrize("keyed", [False, True], ids=["one-statement", "idempotency-key"])
async def test_transition_and_edit_committed_locally_answer_200(
    database: str, world_factory: Any, keyed: bool
) -> None:
    world, actor = await _world(world_factory, database)
    created = await world.client.post(
        Q, json=quote_body("kyoto-autumn-jpy", actor.client_id), headers=actor.headers
    )
    quote_id = created.json()["quoteId"]
    key = {"Idempotency-Key": "in-doubt-send"} if keyed else {}

    await _sync_standby(database, "nobody", world.engine)
    editing = asyncio.create_task(
        world.client.patch(
            f"{Q}/{quote_id}", json={"version": 1, "travelers": 3}, headers=actor.headers
        )
    )
    await _terminate_when_waiting(database)
    edited = await asyncio.wait_for(editing, 20)
    assert edited.status_code == 200, edited.text
    assert edited.json()["version"] == 2 and edited.json()["quote"]["travelers"] == 3

    sending = asyncio.create_task(
        world.client.post(
            f"{Q}/{quote_id}/send", json={"version": 2}, headers={**actor.headers, **key}
        )
    )
    await _terminate_when_waiting(database)
    sent = await asyncio.wait_for(sending, 20)
    await _sync_standby(database, "")
    assert sent.status_code == 200, sent.text
    assert sent.json()["version"] == 3 and sent.json()["quote"]["status"] == "SENT"
    read = await world.client.get(f"{Q}/{quote_id}", headers=actor.headers)
    assert read.json()["quote"] == sent.json()["quote"]
    revisions = await _count(
        database, "SELECT count(*) FROM quote_revisions WHERE quote_id = $1", quote_id
    )
    assert revisions == 3
    if keyed:
        again = await world.client.post(
            f"{Q}/{quote_id}/send", json={"version": 2}, headers={**actor.headers, **key}
        )
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert again.json() == sent.json()


@pytest.mark.parametrize("keyed", [False, True], ids=["one-statement", "idempotency-key"])
async def test_terminated_before_commit_is_the_retryable_error_and_nothing_written(
    database: str, world_factory: Any, keyed: bool
) -> None:
    world, actor = await _world(world_factory, database)
    body = quote_body("kyoto-autumn-jpy", actor.client_id)
    headers = {**actor.headers, **({"Idempotency-Key": "not-committed"} if keyed else {})}
    before = await world.table_counts()
    holder = await _admin(database)
    try:
        async with holder.transaction():
            # The create raises the agent's open-quote bound: it waits for this lock.
            await holder.execute("SELECT 1 FROM agents WHERE id = $1 FOR UPDATE", actor.agent_id)
            saving = asyncio.create_task(world.client.post(Q, json=body, headers=headers))
            pid = await wait_until(
                lambda: holder.fetchval(
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND datname = current_database()"
                ),
                within=20,
                what="the create waiting for the lock",
            )
            assert await holder.fetchval("SELECT pg_terminate_backend($1)", pid)
            response = await asyncio.wait_for(saving, 20)
    finally:
        await holder.close()

    error = assert_envelope(response, "QUOTE_PERSISTENCE_FAILED", 503)
    assert error["retryable"] is True
    if keyed:  # a transaction that never sent its COMMIT: certainly rolled back
        assert "outcome" not in error["details"]
    else:  # the one statement was sent: looked up, certainly not committed
        assert error["details"] == {"cause": "connection_lost", "outcome": "not_committed"}
    assert "Nothing was written" in error["message"]
    assert await world.table_counts() == before
    if keyed:  # the key was freed: the retry runs the save at once
        again = await world.client.post(Q, json=body, headers=headers)
        assert again.status_code == 201, again.text
        assert "idempotent-replayed" not in again.headers
        assert await _count(database, "SELECT count(*) FROM quotes") == 1


async def test_server_gone_for_the_whole_budget_is_save_outcome_unknown(
    cluster: TempCluster, database: str, world_factory: Any
) -> None:
    world, actor = await _world(world_factory, database, save_outcome_timeout_seconds=1.5)
    body = quote_body("kyoto-autumn-jpy", actor.client_id)
    headers = {**actor.headers, "Idempotency-Key": "unknown-1"}
    await _sync_standby(database, "nobody", world.engine)
    saving = asyncio.create_task(world.client.post(Q, json=body, headers=headers))
    conn = await _admin(database)
    try:
        await wait_until(lambda: conn.fetchval(_WAITING), within=20, what="SyncRep wait")
    finally:
        await conn.close()
    await asyncio.to_thread(cluster.stop, "immediate")  # the COMMIT never answers
    try:
        response = await asyncio.wait_for(saving, 30)
    finally:
        await asyncio.to_thread(cluster.start)
    await _sync_standby(database, "")

    error = assert_envelope(response, "SAVE_OUTCOME_UNKNOWN", 503)
    assert error["retryable"] is True and response.headers["retry-after"] == "5"
    assert error["details"] == {"cause": "commit_unanswered"}
    assert "Nothing was written" not in error["message"]
    assert "same Idempotency-Key" in error["message"]
    # It had committed locally (crash recovery keeps it): the answer was right not to say
    # "nothing was written", and the retry with the key replays it without a duplicate.
    assert await _count(database, "SELECT count(*) FROM quotes") == 1

    async def replayed() -> Any:
        again = await world.client.post(Q, json=body, headers=headers)
        return again if again.status_code == 201 else None

    again = await wait_until(replayed, within=20, what="the replay")
    assert again.headers["idempotent-replayed"] == "true"
    assert await _count(database, "SELECT count(*) FROM quotes") == 1


async def test_expiry_sweep_committed_locally_counts_its_batch(
    database: str, world_factory: Any
) -> None:
    world, actor = await _world(world_factory, database)
    created = await world.client.post(
        Q, json=quote_body("kyoto-autumn-jpy", actor.client_id), headers=actor.headers
    )
    quote_id = created.json()["quoteId"]
    sent = await world.client.post(
        f"{Q}/{quote_id}/send", json={"version": 1}, headers=actor.headers
    )
    assert sent.status_code == 200, sent.text
    conn = await _admin(database)
    try:
        # A day before the service's clock (tests.conftest.PinnedClock), not the database's:
        # the sweep finds it due by the clock it runs on, whatever the calendar says.
        await conn.execute(
            "UPDATE quotes SET expires_at = $2 WHERE id = $1",
            quote_id,
            world.clock() - timedelta(days=1),
        )
    finally:
        await conn.close()
    await _sync_standby(database, "nobody", world.engine)
    sweeping = asyncio.create_task(
        world.app.state.quotes.expire_due(batch_size=10, correlation_id="sweep")
    )
    await _terminate_when_waiting(database)
    # Its batch was found written; the next batch finds nothing more (read only: no wait).
    assert await asyncio.wait_for(sweeping, 20) == 1
    await _sync_standby(database, "")
    status = await _count(
        database, "SELECT count(*) FROM quotes WHERE id = $1 AND status = 'EXPIRED'", quote_id
    )
    assert status == 1


async def test_release_later_frees_only_the_claim_it_names(world: World) -> None:
    """After SAVE_OUTCOME_UNKNOWN the key is released in the background: the claim's own row
    (its ``created_at``) while still in flight, never a later claim of the key nor a key whose
    save committed (``done``)."""
    actor = await world.actor()
    keys = world.app.state.idempotency
    claimed_at = datetime.now(UTC)
    rows = {
        "mine": ("in_flight", claimed_at),
        "taken-over": ("in_flight", claimed_at + timedelta(seconds=1)),
        "committed": ("done", claimed_at),
    }
    conn = await asyncpg.connect(world.dsn)
    try:
        for key, (state, created_at) in rows.items():
            await conn.execute(
                "INSERT INTO idempotency_keys (agent_id, key, request_hash, state, created_at,"
                " expires_at) VALUES ($1, $2, 'h', $3, $4::timestamptz,"
                " $4::timestamptz + interval '1 day')",
                actor.agent_id, key, state, created_at,
            )  # fmt: skip
        for key in rows:
            keys.release_later(Claim(actor.agent_id, key, claimed_at))
        await asyncio.wait_for(asyncio.gather(*keys._releasing), 20)
        left = {
            row["key"]
            for row in await conn.fetch(
                "SELECT key FROM idempotency_keys WHERE agent_id = $1", actor.agent_id
            )
        }
    finally:
        await conn.close()
    assert left == {"taken-over", "committed"}


_CLIENT_WAITING = """
SELECT a.pid FROM pg_stat_activity a
 WHERE a.wait_event = 'SyncRep' AND a.datname = current_database()
   AND EXISTS (SELECT 1 FROM pg_locks l
                WHERE l.pid = a.pid AND l.relation = 'clients'::regclass)
"""


async def test_a_change_without_a_save_id_says_its_outcome_is_unknown(
    database: str, world_factory: Any
) -> None:
    # A client create (SQLAlchemy's transaction, no save id to look up) whose COMMIT is never
    # answered: SAVE_OUTCOME_UNKNOWN, never QUOTE_PERSISTENCE_FAILED's "nothing was written"
    # -- the client was in fact kept.
    world, actor = await _world(world_factory, database)
    before = await _count(database, "SELECT count(*) FROM clients")
    await _sync_standby(database, "nobody", world.engine)
    saving = asyncio.create_task(
        world.client.post(
            "/api/agents/clients",
            json={"name": "In Doubt", "email": "in.doubt@example.com"},
            headers=actor.headers,
        )
    )
    conn = await _admin(database)
    try:
        pid = await wait_until(
            lambda: conn.fetchval(_CLIENT_WAITING), within=20, what="SyncRep wait"
        )
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    response = await asyncio.wait_for(saving, 20)
    await _sync_standby(database, "")

    body = assert_envelope(response, "SAVE_OUTCOME_UNKNOWN", 503)
    assert body["retryable"] is True and body["details"]["cause"] == "commit_unanswered"
    assert "nothing was written" not in body["message"].lower()
    assert await _count(database, "SELECT count(*) FROM clients") == before + 1
