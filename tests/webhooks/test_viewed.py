"""``quote.viewed``: the client's first view of a proposal link is an event, written by the
view's own statement, delivered after the send's (real PostgreSQL, a real receiver on
loopback verifying with ``standardwebhooks``)."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from tests.conftest import World
from tests.proposals.support import send_quote
from tests.webhooks.conftest import Receiver, drain, subscribe, worker_of


async def _events(world: World, quote_id: str) -> list[tuple[str, int, str]]:
    async with world.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT type, version, actor FROM events WHERE quote_id = :q"
                " ORDER BY occurred_at, type"
            ),
            {"q": quote_id},
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_the_first_view_of_a_link_is_one_quote_viewed_event_delivered_after_the_send(
    world: World, receiver: Receiver
) -> None:
    admin = await world.actor(role="admin")
    _, receiver.secret = await subscribe(world, admin, receiver.url, "quote.sent", "quote.viewed")
    sent = await send_quote(world, admin)
    for _ in range(3):  # three views of one link: one event
        page = await world.client.get(sent.path, headers={"X-Correlation-ID": "corr-view-1"})
        assert page.status_code == 200, page.text
    pdf = await world.client.get(f"{sent.path}/pdf")  # the PDF counts no view
    assert pdf.status_code == 200

    events = await _events(world, sent.quote_id)
    assert [e for e in events if e[0] != "quote.created"] == [
        ("quote.sent", sent.version, admin.agent_id),
        ("quote.viewed", sent.version, "client"),
    ]
    read = await world.client.get(f"/api/agents/quotes/{sent.quote_id}", headers=admin.headers)
    assert read.json()["version"] == sent.version  # a view never changes the quote

    async with httpx.AsyncClient() as client:
        assert await drain(worker_of(world, client)) == 2
    payloads = [r.payload for r in receiver.received]
    assert [p["type"] for p in payloads] == ["quote.sent", "quote.viewed"]
    viewed = payloads[1]["data"]
    assert (viewed["version"], viewed["actor"], viewed["correlationId"]) == (
        sent.version,
        "client",
        "corr-view-1",
    )
    assert viewed["quote"] == payloads[0]["data"]["quote"]  # the quote as sent
    assert receiver.refused == []


async def test_a_view_of_an_unknown_link_writes_no_event(world: World) -> None:
    admin = await world.actor(role="admin")
    sent = await send_quote(world, admin)
    before = await _events(world, sent.quote_id)
    missing = await world.client.get(sent.path[:-4] + "AAAA")
    assert missing.status_code == 404
    assert await _events(world, sent.quote_id) == before
