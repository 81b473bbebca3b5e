"""Serialization failures (SQLSTATE 40001) injected by a trigger a given number of times, through
a served process: the whole transaction is retried and ``tripquote_db_retries_total`` grows by
exactly the number of failures; past TX_MAX_ATTEMPTS the save is DATABASE_TRANSACTION_ABORTED,
a retryable 503 with Retry-After, counted as a rollback, with nothing written."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import httpx
import pytest
import pytest_asyncio

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor
from tests.faults.integrity import check_no_partial_writes
from tests.faults.support import RETRIES, ROLLBACKS, create
from tests.servers import Database, Server, read_metric, server_env, serving

pytestmark = pytest.mark.postgres


@pytest_asyncio.fixture(scope="module")
async def default_server(
    database: Database, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Server]:
    """A served process with TX_MAX_ATTEMPTS=3 for the retry tests (run one at a time)."""
    env = server_env(database.url, tx_max_attempts=3, tx_timeout_seconds=5)
    async with serving(env, log_dir=tmp_path_factory.mktemp("serve")) as [server]:
        yield server


@pytest.mark.parametrize("failures", [1, 2, 3], ids=["1-failure", "2-failures", "exhausted"])
async def test_serialization_failures_retried_then_aborted(
    database: Database, actor: Actor, trigger: Any, default_server: Server, failures: int
) -> None:
    marker = f"SERIALIZE-{uuid.uuid4().hex[:8]}"
    await trigger(
        f"BEGIN IF NEW.description = '{marker}' AND nextval(TG_NAME || '_n') <= {failures} "
        "THEN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END IF; RETURN NEW; END"
    )
    base_url = default_server.base_url
    aborted = {"reason": "DATABASE_TRANSACTION_ABORTED"}
    retries_before = await read_metric(base_url, RETRIES)
    aborted_before = await read_metric(base_url, ROLLBACKS, aborted)
    async with asyncio.timeout(30), httpx.AsyncClient(base_url=base_url, timeout=20) as client:
        response = await create(client, actor, marker=marker, trip_name=marker)
        retries = await read_metric(base_url, RETRIES) - retries_before
        if failures < 3:  # TX_MAX_ATTEMPTS
            assert response.status_code == 201, response.text
            assert retries == failures
            quote_id = response.json()["quoteId"]
            revisions = await client.get(
                f"/api/agents/quotes/{quote_id}/revisions", headers=actor.headers
            )
            assert [r["version"] for r in revisions.json()["revisions"]] == [1]
        else:
            body = assert_envelope(response, "DATABASE_TRANSACTION_ABORTED", 503)
            assert body["retryable"] is True
            assert body["details"]["attempts"] == 3
            assert int(response.headers["retry-after"]) >= 1
            assert retries == 2  # attempts 2 and 3
            assert await read_metric(base_url, ROLLBACKS, aborted) == aborted_before + 1
            conn = await asyncpg.connect(database.dsn)
            try:
                assert (
                    await conn.fetchval("SELECT count(*) FROM quotes WHERE trip_name = $1", marker)
                    == 0
                )
            finally:
                await conn.close()
    await check_no_partial_writes(database.dsn)
