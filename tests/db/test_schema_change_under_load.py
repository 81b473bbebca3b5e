"""PostgreSQL: a migration that changes a column's type while the service runs (0005 did)
leaves every pooled connection with statements prepared for the old type. PostgreSQL refuses
their cached plans once (SQLSTATE 0A000) and aborts the transaction; the unit is run again,
prepares afresh and succeeds: no request fails (found by the breaker: one CRITICAL 503 per
pooled connection)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.conftest import make_settings, quote_body
from tripquote.db import migrate

URL = "/api/agents/quotes"


async def _alter(url: str, numeric: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            for table, column in (("quotes", "total"), ("quote_items", "line_total")):
                await conn.execute(
                    text(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE {numeric}")
                )
    finally:
        await engine.dispose()


@pytest.mark.parametrize("empty_db", ["postgres"], indirect=True)
async def test_requests_after_a_column_type_change_succeed(
    empty_db: str, world_factory: Any
) -> None:
    await asyncio.to_thread(migrate.upgrade, make_settings(empty_db))
    world = await world_factory(make_settings(empty_db, db_pool_size=1))
    actor = await world.actor()

    async def every_kind_of_request(seq: int) -> None:
        body = quote_body("iceland-ring-road-eur", actor.client_id)
        created = await world.client.post(URL, json=body, headers=actor.headers)
        assert created.status_code == 201, created.text
        quote = created.json()["quote"]
        keyed = await world.client.post(  # in a transaction: the idempotent response with it
            URL, json=body, headers={**actor.headers, "Idempotency-Key": f"k{seq}"}
        )
        assert keyed.status_code == 201, keyed.text
        read = await world.client.get(f"{URL}/{quote['id']}", headers=actor.headers)
        assert read.status_code == 200, read.text
        listed = await world.client.get(URL, headers=actor.headers)
        assert listed.status_code == 200, listed.text
        patched = await world.client.patch(
            f"{URL}/{quote['id']}", json={"version": 1, "notes": "n"}, headers=actor.headers
        )
        assert patched.status_code == 200, patched.text

    await every_kind_of_request(1)  # the one pooled connection prepares every statement
    await _alter(empty_db, "numeric(19, 4)")
    await every_kind_of_request(2)
