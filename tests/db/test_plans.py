"""No request-path statement reads a large table by a sequential scan, on a seeded database.

A database of its own is seeded with a history (``bench/growth_load.py``: quotes over several
agencies with their items, revisions, operation records and idempotency keys) and analysed;
then every request path runs through the real app (create, read, full and partial edit,
send, accept, reject, delete, every list filter and a later page, an admin's list, history
pages and one version, clients, an idempotent create, the expiry sweep, the idempotency
purge, the operations summary), every statement it sent is captured with its arguments as
the service bound them (``bench/plans.py``), and PostgreSQL's plan for each, custom and
generic (a prepared statement switches to it after five executions), must read the large
tables by index only.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from bench import growth_load as gl
from bench import growth_sets as gs
from bench import plans
from tests.conftest import (
    PINNED_NOW,
    _run_admin,
    database_url,
    load_fixture,
    make_settings,
    outbox_beyond,
)
from tripquote.db import migrate
from tripquote.quotes import sql

pytestmark = pytest.mark.postgres

LARGE = {"quotes", "quote_items", "quote_revisions", "operation_records", "idempotency_keys"}
"""The tables that grow with every save (agents, agencies and clients grow with people)."""


@pytest.fixture(scope="module")
def seeded_url() -> Iterator[str]:
    """A migrated database with 6,000 quotes of history over 20 agencies, analysed."""
    name = f"tripquote_plans_{uuid.uuid4().hex[:8]}"
    asyncio.run(_run_admin(f'CREATE DATABASE "{name}"'))
    url = database_url(name)
    migrate.upgrade(make_settings(url))
    asyncio.run(outbox_beyond(url))  # the clock goes 400 days ahead below

    async def seed() -> None:
        conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
        try:
            await gl.load_history(
                conn, gl.Size(6000, at_least_agencies=20), now=PINNED_NOW, days=365
            )
            await conn.execute("VACUUM ANALYZE")
        finally:
            await conn.close()

    asyncio.run(seed())
    yield url
    asyncio.run(_run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _request() -> dict[str, Any]:
    fixture = next(f for f in load_fixture("quotes.json") if f["name"] == "kyoto-autumn-jpy")
    return dict(fixture["request"])


async def _every_request_path(world: Any) -> None:
    """Every route that reads or writes quotes, clients, revisions or keys, once or more."""
    admin = await world.actor(role="admin")
    agent = await world.actor(agency_id=admin.agency_id)
    c = world.client
    body = {**_request(), "clientId": agent.client_id}
    conn = await asyncpg.connect(world.dsn)
    try:  # the agent's own quotes, so that its lists have later pages
        owner = gl.Owner(agent.agency_id, agent.agent_id, (agent.client_id,))
        for rows, _ in gs.owner_quotes(
            owner, 120, now=PINNED_NOW, drafts=gl.templates(), spread=timedelta(days=30)
        ):
            await rows.copy(conn)
        await conn.execute("ANALYZE")
    finally:
        await conn.close()

    async def ok(response: Any, status: int = 200) -> dict[str, Any]:
        assert response.status_code == status, response.text
        return dict(response.json())

    headers = {**agent.headers, "Idempotency-Key": f"plans-{uuid.uuid4()}"}
    ids = []
    for _ in range(4):
        created = await ok(await c.post("/api/agents/quotes", json=body, headers=headers), 201)
        headers = {**agent.headers, "Idempotency-Key": f"plans-{uuid.uuid4()}"}
        ids.append(created["quoteId"])
    first, second, third, fourth = ids
    url = f"/api/agents/quotes/{first}"
    await ok(await c.get(url, headers=agent.headers))
    full = {k: v for k, v in body.items() if k != "clientId"}
    edited = await ok(
        await c.patch(url, json={**full, "version": 1, "notes": "full"}, headers=agent.headers)
    )
    await ok(
        await c.patch(
            url, json={"version": edited["version"], "travelers": 3}, headers=agent.headers
        )
    )
    for quote_id, then in ((second, "accept"), (third, "reject")):
        await ok(
            await c.post(
                f"/api/agents/quotes/{quote_id}/send", json={"version": 1}, headers=agent.headers
            )
        )
        await ok(
            await c.post(
                f"/api/agents/quotes/{quote_id}/{then}", json={"version": 2}, headers=agent.headers
            )
        )
    await ok(
        await c.request(
            "DELETE", f"/api/agents/quotes/{fourth}", json={"version": 1}, headers=agent.headers
        )
    )
    since = (PINNED_NOW - timedelta(days=10)).isoformat().replace("+00:00", "Z")
    for query in ("", "&status=DRAFT", f"&clientId={agent.client_id}", f"&updatedSince={since}"):
        for who in (agent, admin):
            page = await ok(await c.get(f"/api/agents/quotes?limit=20{query}", headers=who.headers))
            cursor = page["nextCursor"]
            assert cursor, query
            await ok(
                await c.get(
                    f"/api/agents/quotes?limit=20{query}&cursor={cursor}", headers=who.headers
                )
            )
    await ok(await c.get(f"{url}/revisions?limit=1", headers=agent.headers))
    await ok(await c.get(f"{url}/revisions?limit=1&cursor=1", headers=agent.headers))
    await ok(await c.get(f"{url}/revisions/2", headers=agent.headers))
    client_headers = {**agent.headers, "Idempotency-Key": f"plans-{uuid.uuid4()}"}
    made = await ok(
        await c.post("/api/agents/clients", json={"name": "P"}, headers=client_headers), 201
    )
    await ok(await c.get(f"/api/agents/clients/{made['client']['id']}", headers=agent.headers))
    await ok(await c.get("/api/agents/clients", headers=agent.headers))
    await ok(await c.get("/api/ops/summary", headers=admin.headers))
    world.clock.advance(timedelta(days=400))  # every SENT quote of the history is due
    await world.app.state.quotes.expire_due(batch_size=100, correlation_id="plans")
    await world.app.state.idempotency.purge(now=world.clock())


async def _plans(url: str, captured: list[plans.Captured]) -> dict[str, list[str]]:
    """Each distinct statement's sequential scans on large tables, custom and generic."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    found: dict[str, list[str]] = {}
    try:
        for statement in {s.text: s for s in captured}.values():
            for generic in (False, True):
                plan = await plans.plan(conn, statement, generic=generic)
                scans = sorted(set(plans.seq_scans(plan)) & LARGE)
                if scans:
                    found[f"{'generic' if generic else 'custom'}: {statement.text[:300]}"] = scans
    finally:
        await conn.close()
    return found


async def test_no_request_path_statement_scans_a_large_table(
    seeded_url: str, world_factory: Any
) -> None:
    with plans.capture() as captured:
        world = await world_factory(make_settings(seeded_url))
        captured.clear()  # start-up's warm-up: every parameter NULL, not a request's
        await _every_request_path(world)
    texts = " ".join(s.text for s in captured)
    for table in ("quote_revisions", "idempotency_keys", "quote_items", "clients"):
        assert table in texts  # the capture saw the statements that touch every large table
    assert await _plans(seeded_url, captured) == {}


async def test_list_pages_walk_their_index_in_order(seeded_url: str, world_factory: Any) -> None:
    """Every list page (each filter, first and later pages, an agent's and an admin's) is
    planned as the service runs it (``KEYSET_PLANS`` first in its transaction): its caller's
    index read backwards from the cursor, no bitmap of the caller's whole range, no sort."""
    with plans.capture() as captured:
        world = await world_factory(make_settings(seeded_url))
        captured.clear()
        await _every_request_path(world)
    texts = [s.text for s in captured]
    lists = {role: sql.LIST[role].text for role in sql.ROLES}
    pages = [s for s in captured if s.text in lists.values()]
    assert {s.text for s in pages} == set(lists.values())  # both roles' pages were read
    for index, text in enumerate(texts):
        if text in lists.values():  # the service pinned the plan just before
            assert sql.KEYSET_PLANS.text in texts[index - 2 : index], index
    walks = {
        "agent": "ix_quotes_agent_id_created_at_id",
        "admin": "ix_quotes_agency_id_created_at_id",
    }
    conn = await asyncpg.connect(seeded_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for page in {(s.text, s.args): s for s in pages}.values():
            role = next(r for r, t in lists.items() if t == page.text)
            for generic in (False, True):
                plan = await plans.plan(conn, page, generic=generic, before=sql.KEYSET_PLANS.text)
                kinds = [(n["Node Type"], n.get("Index Name")) for n in plans.nodes(plan)]
                assert ("Index Scan", walks[role]) in kinds, (role, generic, kinds)
                assert not [k for k in kinds if k[0] in ("Sort", "Bitmap Heap Scan")], kinds
    finally:
        await conn.close()
