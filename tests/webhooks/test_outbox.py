"""The transactional outbox: every committed change writes its event in its own statement; a
refused or rolled-back save writes none (real PostgreSQL, through the real app)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from tests.api.test_errors_api import assert_envelope
from tests.api.test_lifecycle import URL, act, create, expire_in_db
from tests.conftest import World, quote_body
from tests.webhooks.conftest import Receiver, subscribe, worker_of
from tripquote.db.retention import partitions
from tripquote.quotes.lifecycle import Operation


async def events_of(world: World, quote_id: str) -> list[dict[str, Any]]:
    async with world.engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT e.id, e.type, e.agency_id, e.quote_id, e.version, e.actor,"
                " e.correlation_id, r.snapshot::text AS data"
                " FROM events e JOIN quote_revisions r"
                " ON r.quote_id = e.quote_id AND r.version = e.version"
                " WHERE e.quote_id = :q ORDER BY e.version"
            ),
            {"q": quote_id},
        )
        return [dict(row._mapping) for row in rows]


async def snapshots_of(world: World, quote_id: str) -> list[str]:
    async with world.engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT snapshot::text FROM quote_revisions WHERE quote_id = :q ORDER BY version"),
            {"q": quote_id},
        )
        return [row[0] for row in rows]


async def test_each_committed_change_writes_its_event_with_the_version_snapshot(
    world: World,
) -> None:
    actor = await world.actor()
    created = await create(world, actor, **{"X-Correlation-ID": "corr-create-1"})
    quote_id = created.json()["quoteId"]
    steps = [Operation.UPDATE, Operation.SEND, Operation.REJECT, Operation.UPDATE]
    version = 1
    for operation in steps:
        response = await act(world, actor, quote_id, operation, version)
        assert response.status_code == 200, response.text
        version = response.json()["version"]
    deleted = await act(world, actor, quote_id, Operation.DELETE, version)
    assert deleted.status_code == 200

    events = await events_of(world, quote_id)
    assert [e["type"] for e in events] == [
        "quote.created",
        "quote.updated",
        "quote.sent",
        "quote.rejected",
        "quote.updated",
        "quote.cancelled",
    ]
    assert [e["version"] for e in events] == [1, 2, 3, 4, 5, 6]
    assert {e["agency_id"] for e in events} == {actor.agency_id}
    assert {e["actor"] for e in events} == {actor.agent_id}
    assert events[0]["correlation_id"] == "corr-create-1"
    assert len({e["id"] for e in events}) == 6 and all(e["id"].startswith("evt_") for e in events)
    # One event per revision, the quote as it was at that version (the revision's snapshot).
    assert [e["data"] for e in events] == await snapshots_of(world, quote_id)
    assert json.loads(events[2]["data"])["status"] == "SENT"


async def test_accept_and_the_expiry_sweep_write_their_events(world: World) -> None:
    actor = await world.actor()
    accepted = (await create(world, actor)).json()["quoteId"]
    assert (await act(world, actor, accepted, Operation.SEND, 1)).status_code == 200
    assert (await act(world, actor, accepted, Operation.ACCEPT, 2)).status_code == 200
    expiring = (await create(world, actor)).json()["quoteId"]
    assert (await act(world, actor, expiring, Operation.SEND, 1)).status_code == 200
    await expire_in_db(world, expiring)
    assert await world.app.state.quotes.expire_due(batch_size=10, correlation_id="sweep-1") >= 1

    assert [e["type"] for e in await events_of(world, accepted)][-1] == "quote.accepted"
    expired = (await events_of(world, expiring))[-1]
    assert (expired["type"], expired["version"], expired["actor"]) == ("quote.expired", 3, "system")
    assert expired["correlation_id"] == "sweep-1"
    assert json.loads(expired["data"])["status"] == "EXPIRED"


async def test_refused_saves_write_no_event(world: World) -> None:
    actor = await world.actor()
    quote_id = (await create(world, actor)).json()["quoteId"]
    assert (await act(world, actor, quote_id, Operation.UPDATE, 1)).status_code == 200
    before = await world.count("events")

    stale = await world.client.patch(
        f"{URL}/{quote_id}", json={"version": 1, "travelers": 3}, headers=actor.headers
    )
    assert_envelope(stale, "QUOTE_CONFLICT_VERSION", 409)
    accepted_draft = await act(world, actor, quote_id, Operation.ACCEPT, 2)
    assert_envelope(accepted_draft, "QUOTE_STATE_INVALID", 409)
    invalid = quote_body("edinburgh-weekend-gbp", actor.client_id) | {"travelers": 0}
    assert_envelope(
        await world.client.post(URL, json=invalid, headers=actor.headers),
        "QUOTE_VALIDATION_FAILED",
        400,
    )
    assert await world.count("events") == before


async def test_a_save_rolled_back_after_its_items_were_written_leaves_no_event(
    world: World, poison_item: str
) -> None:
    actor = await world.actor()
    body = quote_body("iceland-ring-road-eur", actor.client_id)
    body["items"][-1]["description"] = poison_item
    before = await world.table_counts(), await world.count("events")
    refused = await world.client.post(URL, json=body, headers=actor.headers)
    assert_envelope(refused, "QUOTE_PERSISTENCE_FAILED", 503)
    assert (await world.table_counts(), await world.count("events")) == before


@pytest_asyncio.fixture
async def killed_after_its_event(pg_url: str) -> AsyncIterator[str]:
    """A trip name whose save's backend is terminated once its event row is written (the
    connection lost mid-statement, inside the save)."""
    marker = f"KILLED-{uuid.uuid4().hex[:8]}"
    name = f"kill_{marker[7:]}"
    admin = create_async_engine(pg_url)
    async with admin.begin() as conn:
        await conn.exec_driver_sql(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF (SELECT trip_name FROM quotes WHERE id = NEW.quote_id) = '{marker}' THEN "
            f"PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(5); END IF; "
            f"RETURN NEW; END $$"
        )
        await conn.exec_driver_sql(
            f"CREATE TRIGGER {name} AFTER INSERT ON events FOR EACH ROW EXECUTE FUNCTION {name}()"
        )
    try:
        yield marker
    finally:
        async with admin.begin() as conn:
            await conn.exec_driver_sql(f"DROP TRIGGER {name} ON events")
            await conn.exec_driver_sql(f"DROP FUNCTION {name}()")
        await admin.dispose()


async def test_a_connection_killed_mid_save_leaves_no_event(
    world: World, killed_after_its_event: str
) -> None:
    actor = await world.actor()
    body = quote_body("edinburgh-weekend-gbp", actor.client_id) | {
        "tripName": killed_after_its_event
    }
    before = await world.table_counts(), await world.count("events")
    refused = await world.client.post(URL, json=body, headers=actor.headers)
    assert_envelope(refused, "QUOTE_PERSISTENCE_FAILED", 503)
    assert (await world.table_counts(), await world.count("events")) == before


async def test_concurrent_saves_write_exactly_one_event_each(world: World) -> None:
    saves = 300
    actors = [await world.actor() for _ in range(6)]
    before = await world.count("events")
    responses = await asyncio.gather(
        *(create(world, actors[n % len(actors)]) for n in range(saves))
    )
    assert [r.status_code for r in responses] == [201] * saves
    assert await world.count("events") == before + saves
    ids = [r.json()["quoteId"] for r in responses]
    assert await world.count("events", "quote_id = ANY(:ids)", ids=ids) == saves


async def test_an_event_and_its_deliveries_go_into_the_partitions_of_its_day(
    world: World, receiver: Receiver
) -> None:
    """The save writes its event; the worker's fan-out its deliveries, each at its event's
    ``occurred_at`` (their shared partition key), whenever it runs."""
    admin = await world.actor(role="admin")
    for _ in range(2):
        await subscribe(world, admin, receiver.url, "quote.created")
    quote_id = (await create(world, admin)).json()["quoteId"]
    async with httpx.AsyncClient() as client:  # the worker's clock: now, not the event's
        assert await worker_of(world, client).fan_out() == 2
    async with world.engine.connect() as conn:
        event = (
            await conn.execute(
                text(
                    "SELECT id, occurred_at, tableoid::regclass::text AS part FROM events"
                    " WHERE quote_id = :q"
                ),
                {"q": quote_id},
            )
        ).one()
        deliveries = (
            await conn.execute(
                text(
                    "SELECT created_at, tableoid::regclass::text AS part FROM webhook_deliveries"
                    " WHERE event_id = :e"
                ),
                {"e": event.id},
            )
        ).all()
        ends = {**await partitions(conn, "events"), **await partitions(conn, "webhook_deliveries")}
    # The partition of its instant: the day's (ending at the next midnight, UTC), or the
    # first one (every instant before the migration's next day: the tests' quote clock is
    # pinned in the past).
    end = ends[event.part]
    day_end = datetime.combine(
        event.occurred_at.astimezone(UTC).date() + timedelta(days=1), time(), tzinfo=UTC
    )
    assert end == day_end or (event.part.startswith("events_before_") and end > day_end)
    assert len(deliveries) == 2
    for delivery in deliveries:
        assert delivery.created_at == event.occurred_at  # the event's key: (id, occurred_at)
        assert delivery.part.startswith("webhook_deliveries_")
        assert ends[delivery.part] == end
