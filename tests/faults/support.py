"""Small helpers shared by the fault tests."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from tests.conftest import Actor, quote_body
from tests.faults.burst import FIXTURE
from tests.servers import PG_ADMIN_DSN, Database, dsn_for

RETRIES = "tripquote_db_retries_total"
ROLLBACKS = "tripquote_db_rollbacks_total"


def create_body(actor: Actor, *, marker: str | None = None, trip_name: str = "Fault trip") -> Any:
    """The fixture quote for ``actor``; ``marker`` becomes its last item's description."""
    body = {**quote_body(FIXTURE, actor.client_id), "tripName": trip_name}
    if marker is not None:
        body["items"][-1]["description"] = marker
    return body


async def create(client: httpx.AsyncClient, actor: Actor, **kwargs: Any) -> httpx.Response:
    """POST the fixture quote (see ``create_body``)."""
    return await client.post(
        "/api/agents/quotes", json=create_body(actor, **kwargs), headers=actor.headers
    )


async def ready(client: httpx.AsyncClient) -> bool:
    """True when ``/health/ready`` answers 200."""
    return (await client.get("/health/ready")).status_code == 200


async def service_backends(database: Database, *, kill: bool) -> list[str]:
    """States of the service's backends on ``database`` (``application_name = 'tripquote'``),
    each terminated with ``pg_terminate_backend`` when ``kill``."""
    conn = await asyncpg.connect(dsn_for(PG_ADMIN_DSN, "postgres"))
    try:
        action = "pg_terminate_backend(pid)" if kill else "true"
        rows = await conn.fetch(
            f"SELECT state, {action} AS done FROM pg_stat_activity "
            "WHERE datname = $1 AND application_name = 'tripquote' AND pid <> pg_backend_pid()",
            database.name,
        )
    finally:
        await conn.close()
    return [str(row["state"]) for row in rows]
