"""The one statement of a full-form PATCH runs without the runner's backstop timeout (it
commits by itself and must not be cancelled in flight). When it writes nothing (nothing
changes), the read that follows to answer with the stored quote is bounded by the backstop:
a stalled read ends in a retryable 503 DATABASE_TIMEOUT, never a request (and a pool
connection) held forever. Found by the breaker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import make_settings, quote_body
from tripquote.db.transaction import Tx
from tripquote.quotes.serialize import INPUT_FIELDS

URL = "/api/agents/quotes"
NEVER = 30.0  # far past the 1.5 s budget below: only reached if nothing bounds the request


async def _stall(*_: Any) -> Any:
    await asyncio.Event().wait()  # a read that never answers


async def test_reads_after_a_statement_that_wrote_nothing_are_bounded(
    pg_url: str, world_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await world_factory(make_settings(pg_url, tx_timeout_seconds=0.5))
    actor = await world.actor()
    created = await world.client.post(
        URL, json=quote_body("iceland-ring-road-eur", actor.client_id), headers=actor.headers
    )
    quote = created.json()["quote"]
    # The stored quote again: nothing changes, the read that answers with it stalls.
    monkeypatch.setattr(Tx, "fetchrow", _stall)
    same = {name: quote[name] for name in INPUT_FIELDS if name != "clientId"}
    same["items"] = [
        {k: item[k] for k in ("type", "description", "quantity", "unitPrice", "details")}
        for item in quote["items"]
    ]
    request = world.client.patch(
        f"{URL}/{quote['id']}", json={**same, "version": 1}, headers=actor.headers
    )
    before = await world.table_counts()
    response = await asyncio.wait_for(request, NEVER)
    assert response.status_code == 503, response.text
    assert response.json()["errorCode"] == "DATABASE_TIMEOUT"
    assert response.json()["retryable"] is True
    assert await world.table_counts() == before
