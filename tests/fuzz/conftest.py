"""The served process the fuzz tests attack: a database of the module's own on the shared
PostgreSQL, one agent with a client and a quote, ``tripquote serve`` on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
import pytest_asyncio

from tests.conftest import Actor, quote_body
from tests.servers import Database, Server, migrated_database, provision_actor, server_env, serving


@dataclass
class Target:
    """The served process under test, its database, and ids that exist."""

    server: Server
    database: Database
    actor: Actor
    quote_id: str


@pytest_asyncio.fixture(scope="module")
async def target(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Target]:
    async with migrated_database("fuzz") as database:
        actor = await provision_actor(database.url)
        env = server_env(database.url, tx_timeout_seconds=5)
        log_dir = tmp_path_factory.mktemp("fuzz")
        async with serving(env, log_dir=log_dir) as [server]:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=20) as client:
                created = await client.post(
                    "/api/agents/quotes",
                    json=quote_body("kyoto-autumn-jpy", actor.client_id),
                    headers=actor.headers,
                )
            assert created.status_code == 201, created.text
            yield Target(server, database, actor, created.json()["quoteId"])
