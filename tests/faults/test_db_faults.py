"""Database faults injected for real under a served ``tripquote serve`` process, on a database
of this module's own on the shared PostgreSQL: backends killed mid-transaction, a row lock held
past the timeout, an exhausted pool (serialization failures: ``test_retries.py``). Every answer
is a success or a retryable 503 envelope, nothing is half-written, ``/metrics`` counts what
happened, and the service keeps serving afterwards."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor
from tests.faults.burst import Burst, check_retryable_503
from tests.faults.integrity import check_acknowledged, check_no_partial_writes
from tests.faults.support import ROLLBACKS, create, ready, service_backends
from tests.servers import Database, provision_actor, read_metric, server_env, serving, wait_until

pytestmark = pytest.mark.postgres

# --- connections killed mid-transaction ----------------------------------------------------


async def test_backends_killed_mid_transaction(
    database: Database, actor: Actor, trigger: Any, tmp_path: Path
) -> None:
    # Every item insert takes a few ms, so the kills land inside transactions.
    await trigger("BEGIN PERFORM pg_sleep(0.005); RETURN NEW; END")
    actors = [actor, await provision_actor(database.url)]
    env = server_env(database.url, tx_timeout_seconds=5)
    async with (
        asyncio.timeout(60),
        serving(env, log_dir=tmp_path) as [server],
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as client,
    ):
        burst = Burst(client, actors, seed=11)
        await burst.seed_quotes(6)
        running = asyncio.create_task(burst.run(concurrency=10, max_requests=400))
        killed_mid_transaction = 0
        try:
            for _ in range(6):
                await burst.wait_for(
                    lambda n=burst.completed + 25: burst.completed >= n, within=20, what="saves"
                )
                # Every backend of the service (application_name 'tripquote'), busy or idle.
                states = await service_backends(database, kill=True)
                killed_mid_transaction += sum(1 for s in states if s != "idle")
            target = burst.completed + 40
            await burst.wait_for(lambda: burst.completed >= target, within=20, what="after")
        finally:
            burst.finish()
            await running
        assert not burst.problems, burst.problems[:10]
        assert killed_mid_transaction >= 1
        assert burst.failures >= 1, burst.codes()
        assert {o.code for o in burst.outcomes if o.status == 503} <= {"QUOTE_PERSISTENCE_FAILED"}
        await check_no_partial_writes(database.dsn)
        await check_acknowledged(database.dsn, burst.acks)

        # The service keeps serving: every save after the kills succeeds.
        after = [(await create(client, actor)).status_code for _ in range(20)]
        assert after == [201] * 20, after
        assert server.alive()


# --- a lock held past the timeout ----------------------------------------------------------


async def test_row_lock_held_past_timeout(database: Database, actor: Actor, tmp_path: Path) -> None:
    env = server_env(database.url, tx_timeout_seconds=1)
    async with (
        asyncio.timeout(60),
        serving(env, log_dir=tmp_path) as [server],
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as client,
    ):
        created = await create(client, actor)
        assert created.status_code == 201, created.text
        quote_id = created.json()["quoteId"]
        labels = {"reason": "DATABASE_TIMEOUT"}
        before = await read_metric(server.base_url, ROLLBACKS, labels)

        holder = await asyncpg.connect(database.dsn)
        try:
            transaction = holder.transaction()
            await transaction.start()
            await holder.execute("SELECT id FROM quotes WHERE id = $1 FOR UPDATE", quote_id)
            started = time.monotonic()
            response = await client.patch(
                f"/api/agents/quotes/{quote_id}",
                json={"version": 1, "travelers": 2},
                headers=actor.headers,
            )
            elapsed = time.monotonic() - started
            await transaction.rollback()
        finally:
            await holder.close()

        body = assert_envelope(response, "DATABASE_TIMEOUT", 503)
        assert body["retryable"] is True
        assert int(response.headers["retry-after"]) >= 1
        assert elapsed < 1 + 1 + 3  # the timeout, the runner's backstop, slack for a slow box
        assert await read_metric(server.base_url, ROLLBACKS, labels) == before + 1

        unchanged = await client.get(f"/api/agents/quotes/{quote_id}", headers=actor.headers)
        assert unchanged.json()["version"] == 1
        retried = await client.patch(
            f"/api/agents/quotes/{quote_id}",
            json={"version": 1, "travelers": 2},
            headers=actor.headers,
        )
        assert retried.status_code == 200, retried.text
        await check_no_partial_writes(database.dsn)


# --- pool exhausted ------------------------------------------------------------------------


async def test_pool_exhausted_every_request_finishes(
    database: Database, actor: Actor, trigger: Any, tmp_path: Path
) -> None:
    slow = f"SLOW-{uuid.uuid4().hex[:8]}"
    await trigger(
        f"BEGIN IF NEW.description = '{slow}' THEN PERFORM pg_sleep(0.4); END IF; RETURN NEW; END"
    )
    pool_timeout, tx_timeout = 1, 2
    env = server_env(
        database.url,
        db_pool_size=2,
        db_max_overflow=0,
        db_pool_timeout_seconds=pool_timeout,
        tx_timeout_seconds=tx_timeout,
    )
    async with (
        asyncio.timeout(60),
        serving(env, log_dir=tmp_path) as [server],
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as client,
    ):

        async def save(n: int) -> tuple[httpx.Response, float]:
            started = time.monotonic()
            marker = slow if n % 2 else None
            response = await create(client, actor, marker=marker, trip_name=f"pool {n}")
            return response, time.monotonic() - started

        results = await asyncio.gather(*(save(n) for n in range(30)))
        statuses = [r.status_code for r, _ in results]
        codes = [check_retryable_503(r) for r, _ in results if r.status_code != 201]
        assert set(statuses) <= {201, 503}, statuses
        assert set(codes) <= {"DATABASE_TIMEOUT"}, codes
        assert 201 in statuses and 503 in statuses, statuses  # the pool really ran out
        slowest = max(seconds for _, seconds in results)
        # The pool wait plus the transaction, and 1 s of slack for a loaded 2-core box.
        assert slowest < pool_timeout + tx_timeout + 1, slowest

        # Nothing leaked: the pool is back to its size, and the service still saves.
        assert len(await service_backends(database, kill=False)) <= 2
        await wait_until(lambda: ready(client), within=10, what="ready after the pool ran out")
        assert (await create(client, actor)).status_code == 201
        await check_no_partial_writes(database.dsn)
