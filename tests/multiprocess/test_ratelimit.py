"""The per-agent write limit shared by every worker process through Redis, keyed by the
authenticated agent (never the client IP), and what happens when Redis is unreachable: fail
open by default (logged and counted), fail closed when configured."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx
import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, quote_body
from tests.multiprocess.conftest import REDIS_DB
from tests.servers import (
    REDIS_HOST,
    REDIS_PORT,
    Database,
    Server,
    closed_port,
    provision_actor,
    read_metric,
    server_env,
    serving,
)

pytestmark = pytest.mark.postgres

LIMIT = 5
STORAGE_ERRORS = "tripquote_ratelimit_storage_errors_total"


async def _write(server: Server, actor: Actor, tag: str, **headers: str) -> httpx.Response:
    """One create on a new connection (so any worker may accept it), tagged by correlation ID."""
    body = {**quote_body("zermatt-ski-chf", actor.client_id), "tripName": tag}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=20) as client:
        return await client.post(
            "/api/agents/quotes",
            json=body,
            headers={**actor.headers, "X-Correlation-ID": tag, "Connection": "close", **headers},
        )


def _served_by(server: Server, tags: list[str]) -> set[int]:
    """The worker pids whose request log lines carry these correlation IDs."""
    wanted = set(tags)
    return {
        int(event["pid"])
        for event in server.log_events()
        if event.get("event") in ("operation", "http_request")
        and event.get("method") is not None
        and event.get("correlation_id") in wanted
    }


def _assert_refused(response: httpx.Response) -> None:
    body = assert_envelope(response, "RATE_LIMIT_EXCEEDED", 429)
    assert body["retryable"] is True
    retry_after = int(response.headers["retry-after"])
    assert 1 <= retry_after <= 60
    assert response.headers["ratelimit-policy"] == f"{LIMIT};w=60"
    assert re.fullmatch(rf"limit={LIMIT}, remaining=0, reset=\d+", response.headers["ratelimit"])


async def test_limit_is_shared_by_every_worker_and_keyed_by_agent(
    database: Database, redis_cleanup: list[str], tmp_path: Path
) -> None:
    agency = (await provision_actor(database.url)).agency_id
    first, second, crowd = [await provision_actor(database.url, agency_id=agency) for _ in "abc"]
    redis_cleanup += [first.agent_id, second.agent_id, crowd.agent_id]
    env = server_env(
        database.url,
        rate_limit=f"{LIMIT}/minute",
        rate_limit_storage=f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_DB}",
        db_pool_size=3,
        db_max_overflow=2,
    )
    async with asyncio.timeout(60), serving(env, log_dir=tmp_path, workers=4) as [server]:
        # Six writes by one agent, each on a new connection: five pass, the sixth is refused.
        tags = [f"rl-{first.agent_id[:8]}-{n}" for n in range(LIMIT + 1)]
        responses = [await _write(server, first, tag) for tag in tags]
        assert [r.status_code for r in responses[:LIMIT]] == [201] * LIMIT
        _assert_refused(responses[LIMIT])

        # Another agent behind the same IP has a budget of its own.
        assert (await _write(server, second, "rl-second")).status_code == 201
        # A forwarded-for header does not make a refused agent someone else.
        spoofed = await _write(server, first, "rl-spoof", **{"X-Forwarded-For": "203.0.113.9"})
        _assert_refused(spoofed)

        # Twelve concurrent writes by a third agent: exactly five pass, whichever worker.
        crowd_tags = [f"rl-{crowd.agent_id[:8]}-{n}" for n in range(12)]
        burst = await asyncio.gather(*(_write(server, crowd, tag) for tag in crowd_tags))
        statuses = sorted(r.status_code for r in burst)
        assert statuses == [201] * LIMIT + [429] * (12 - LIMIT), statuses
        for refused in (r for r in burst if r.status_code == 429):
            _assert_refused(refused)

        # The writes were served by several workers, so the limit really was shared.
        assert len(_served_by(server, tags + crowd_tags)) >= 2


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
async def test_redis_unreachable(database: Database, fail_open: bool, tmp_path: Path) -> None:
    actor = await provision_actor(database.url)
    env = server_env(
        database.url,
        rate_limit=f"{LIMIT}/minute",
        rate_limit_storage=f"redis://127.0.0.1:{closed_port()}/0",
        rate_limit_fail_open=fail_open,
    )
    async with asyncio.timeout(60), serving(env, log_dir=tmp_path, workers=2) as [server]:
        before = await read_metric(server.base_url, STORAGE_ERRORS)
        writes = LIMIT + 2
        responses = [await _write(server, actor, f"down-{n}") for n in range(writes)]
        if fail_open:
            assert [r.status_code for r in responses] == [201] * writes
        else:
            for response in responses:
                body = assert_envelope(response, "RATE_LIMIT_EXCEEDED", 429)
                assert body["retryable"] is True
                assert int(response.headers["retry-after"]) >= 1
        assert await read_metric(server.base_url, STORAGE_ERRORS) == before + writes
        warnings = [
            event
            for event in server.log_events()
            if event.get("level") == "warning" and event.get("logger") == "tripquote.ratelimit"
        ]
        assert warnings, server.log_tail()
        assert ("open" if fail_open else "closed") in str(warnings[0]["event"])
