"""Fixtures of the multi-process tests: a migrated database per module on the shared
PostgreSQL, and Redis keys removed after each test (only those naming the test's agents)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import coredis
import pytest_asyncio

from tests.servers import REDIS_HOST, REDIS_PORT, Database, migrated_database

REDIS_DB = 11
"""The Redis logical database these tests use; they delete only keys naming their own agents."""


@pytest_asyncio.fixture(scope="module")
async def database() -> AsyncIterator[Database]:
    """A database of this module's own (``tripquote_multiprocess_<pid>_…``), dropped after."""
    async with migrated_database("multiprocess") as database:
        yield database


@pytest_asyncio.fixture
async def redis_cleanup() -> AsyncIterator[list[str]]:
    """Append agent ids; their rate-limit keys are deleted from Redis after the test."""
    agent_ids: list[str] = []
    yield agent_ids
    client = coredis.Redis(host=REDIS_HOST, port=REDIS_PORT, db=REDIS_DB)
    keys = [key for agent_id in agent_ids async for key in client.scan_iter(match=f"*{agent_id}*")]
    if keys:
        await client.delete(keys)
