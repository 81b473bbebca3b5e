"""A quote is sent only before its trip starts, and its offer ends no later than the trip's
start: ``expiresAt`` is the earlier of the end of its last valid day and the start date's
midnight, both in the agency's time zone. Editing a DRAFT whose trip has started stays
possible; accepting once the trip has started finds the quote EXPIRED. The app's clock is
the tests' pinned one (``world.clock``, 2026-12-05 12:00 UTC when the test starts)."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, World

URL = "/api/agents/quotes"


def trip_body(
    client_id: str, start: date, *, days: int = 5, expires_in: int = 14
) -> dict[str, Any]:
    """A valid quote for a trip from ``start``: one undated item, so any dates validate."""
    return {
        "clientId": client_id,
        "tripName": "Somewhere",
        "destination": "Somewhere, Earth",
        "startDate": start.isoformat(),
        "endDate": (start + timedelta(days=days)).isoformat(),
        "travelers": 2,
        "currency": "EUR",
        "markupPercent": "10",
        "discount": "0",
        "expiresInDays": expires_in,
        "items": [{"type": "OTHER", "description": "Guide", "quantity": 1, "unitPrice": "100.00"}],
    }


async def zoned_actor(world: World, zone: str) -> Actor:
    return await world.actor(agency_id=await world.agency(timezone=zone))


async def create(world: World, actor: Actor, body: dict[str, Any]) -> str:
    response = await world.client.post(URL, json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["quoteId"])


async def post(world: World, actor: Actor, quote_id: str, action: str, version: int) -> Any:
    return await world.client.post(
        f"{URL}/{quote_id}/{action}", json={"version": version}, headers=actor.headers
    )


def today_in(world: World, zone: str) -> date:
    return world.clock().astimezone(ZoneInfo(zone)).date()


def midnight(day: date, zone: str) -> datetime:
    return datetime.combine(day, time(0), tzinfo=ZoneInfo(zone))


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("UTC", date(2026, 1, 10)),  # the trip: eleven months ago
        ("UTC", date(2001, 5, 1)),
        ("Europe/Paris", None),  # today: it has started
        # 2026-12-05 12:00 UTC is already 2026-12-06 at Kiritimati (UTC+14).
        ("Pacific/Kiritimati", date(2026, 12, 6)),
    ],
)
async def test_a_quote_whose_trip_has_started_is_not_sent(
    world: World, zone: str, start: date | None
) -> None:
    actor = await zoned_actor(world, zone)
    start = start or today_in(world, zone)
    assert start <= today_in(world, zone)
    quote_id = await create(world, actor, trip_body(actor.client_id, start))
    before = await world.snapshot(quote_id)
    body = assert_envelope(
        await post(world, actor, quote_id, "send", 1), "TRIP_ALREADY_STARTED", 422
    )
    assert body["details"]["quoteId"] == quote_id
    assert body["details"]["startDate"] == start.isoformat()
    assert [(e["path"], e["code"]) for e in body["details"]["errors"]] == [
        ("startDate", "trip_started")
    ]
    assert body["severity"] == "HIGH" and body["retryable"] is False
    assert await world.snapshot(quote_id) == before


async def test_the_same_start_date_is_sendable_where_it_is_still_the_day_before(
    world: World,
) -> None:
    # 2026-12-06 has started at Kiritimati (above) but not in UTC, where it is still 12-05.
    actor = await zoned_actor(world, "UTC")
    quote_id = await create(world, actor, trip_body(actor.client_id, date(2026, 12, 6)))
    sent = await post(world, actor, quote_id, "send", 1)
    assert sent.status_code == 200, sent.text
    # The offer (14 days) ends when the trip starts: the end of the send's day.
    assert sent.json()["quote"]["expiresAt"] == "2026-12-06T00:00:00.000Z"


async def test_a_draft_whose_trip_has_started_is_edited_then_sent_with_new_dates(
    world: World,
) -> None:
    actor = await zoned_actor(world, "UTC")
    quote_id = await create(world, actor, trip_body(actor.client_id, date(2026, 1, 10)))
    edited = await world.client.patch(
        f"{URL}/{quote_id}", json={"version": 1, "travelers": 3}, headers=actor.headers
    )
    assert edited.status_code == 200, edited.text
    assert_envelope(await post(world, actor, quote_id, "send", 2), "TRIP_ALREADY_STARTED", 422)
    moved = await world.client.patch(
        f"{URL}/{quote_id}",
        json={"version": 2, "startDate": "2027-01-10", "endDate": "2027-01-15"},
        headers=actor.headers,
    )
    assert moved.status_code == 200, moved.text
    sent = await post(world, actor, quote_id, "send", 3)
    assert sent.status_code == 200, sent.text
    assert sent.json()["quote"]["status"] == "SENT"


@pytest.mark.parametrize("zone", ["UTC", "Europe/Paris", "America/New_York", "Asia/Tokyo"])
@pytest.mark.parametrize(
    ("starts_in", "expires_in", "trip_first"),
    [(5, 30, True), (3, 2, True), (3, 1, False), (60, 3, False), (1, 7, True)],
)
async def test_the_offer_ends_at_the_earlier_of_its_last_day_and_the_trip_start(
    world: World, zone: str, starts_in: int, expires_in: int, trip_first: bool
) -> None:
    actor = await zoned_actor(world, zone)
    today = today_in(world, zone)
    start = today + timedelta(days=starts_in)
    quote_id = await create(world, actor, trip_body(actor.client_id, start, expires_in=expires_in))
    sent = await post(world, actor, quote_id, "send", 1)
    assert sent.status_code == 200, sent.text
    quote = sent.json()["quote"]
    sent_day = datetime.fromisoformat(quote["sentAt"]).astimezone(ZoneInfo(zone)).date()
    assert sent_day == today
    offer_end = midnight(today + timedelta(days=expires_in + 1), zone)
    trip_start = midnight(start, zone)
    expires_at = datetime.fromisoformat(quote["expiresAt"])
    assert expires_at == min(offer_end, trip_start)
    assert (expires_at == trip_start) is trip_first
    assert quote["expiresInDays"] == expires_in  # what the agent set is kept
    # The history's snapshot says the same.
    revision = await world.client.get(f"{URL}/{quote_id}/revisions/2", headers=actor.headers)
    assert revision.json()["revision"]["snapshot"]["expiresAt"] == quote["expiresAt"]


async def test_accepting_once_the_trip_has_started_finds_the_quote_expired(world: World) -> None:
    zone = "Europe/Paris"
    actor = await zoned_actor(world, zone)
    start = today_in(world, zone) + timedelta(days=2)
    body = trip_body(actor.client_id, start, expires_in=30)
    late, on_time = [await create(world, actor, body) for _ in range(2)]
    for quote_id in (late, on_time):
        assert (await post(world, actor, quote_id, "send", 1)).status_code == 200
    # One minute before the trip starts the client may still accept...
    world.clock.advance(midnight(start, zone) - world.clock() - timedelta(minutes=1))
    accepted = await post(world, actor, on_time, "accept", 2)
    assert accepted.status_code == 200, accepted.text
    # ...but not once it has started: the offer ended with it.
    world.clock.advance(timedelta(minutes=2))
    before = await world.snapshot(late)
    body = assert_envelope(await post(world, actor, late, "accept", 2), "QUOTE_STATE_INVALID", 409)
    assert body["details"]["currentStatus"] == "EXPIRED"
    assert await world.snapshot(late) == before
    read = await world.client.get(f"{URL}/{late}", headers=actor.headers)
    assert read.json()["quote"]["status"] == "EXPIRED"
