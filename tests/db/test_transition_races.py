"""The version check of the transitions on PostgreSQL: a stale version is a 409 naming what
changed, and two transitions from the same version, sent at once, never both land.

To make the two requests really overlap, a second connection holds the quote's row lock while
both are sent; once both wait on it (``pg_stat_activity``), it lets go and they race for the
row. Exactly one wins; the other gets the 409 that the winner's committed state calls for."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, World, make_settings, quote_body

URL = "/api/agents/quotes"


@pytest.fixture
async def pg_world(pg_url: str, world_factory: Any) -> World:
    world: World = await world_factory(make_settings(pg_url))
    return world


async def _quote(world: World, actor: Actor, *, sent: bool = False) -> str:
    created = await world.client.post(
        URL, json=quote_body("edinburgh-weekend-gbp", actor.client_id), headers=actor.headers
    )
    assert created.status_code == 201, created.text
    quote_id = str(created.json()["quoteId"])
    if sent:
        response = await _request(world, actor, quote_id, "send", 1)
        assert response.status_code == 200, response.text
    return quote_id


async def _request(world: World, actor: Actor, quote_id: str, operation: str, version: int) -> Any:
    if operation == "update":
        return await world.client.patch(
            f"{URL}/{quote_id}", json={"version": version, "travelers": 3}, headers=actor.headers
        )
    if operation == "delete":
        return await world.client.request(
            "DELETE", f"{URL}/{quote_id}", json={"version": version}, headers=actor.headers
        )
    return await world.client.post(
        f"{URL}/{quote_id}/{operation}", json={"version": version}, headers=actor.headers
    )


# --- a stale version, one request at a time -------------------------------------------------


@pytest.mark.parametrize("operation", ["send", "delete"])
async def test_a_transition_with_a_stale_version_names_what_changed(
    pg_world: World, operation: str
) -> None:
    world = pg_world
    actor = await world.actor()
    editor = await world.actor(agency_id=actor.agency_id, role="admin")
    quote_id = await _quote(world, actor)
    edited = await _request(world, editor, quote_id, "update", 1)
    assert edited.status_code == 200, edited.text
    before = await world.snapshot(quote_id)
    response = await _request(world, actor, quote_id, operation, 1)
    error = assert_envelope(response, "QUOTE_CONFLICT_VERSION", 409)
    assert error["retryable"] is True
    details = error["details"]
    assert details["quoteId"] == quote_id
    assert (details["expectedVersion"], details["actualVersion"]) == (1, 2)
    assert details["lastModifiedBy"] == editor.agent_id
    assert details["lastModifiedAt"] == edited.json()["quote"]["lastModifiedAt"]
    assert details["changedFields"] == ["travelers"]
    assert await world.snapshot(quote_id) == before


@pytest.mark.parametrize("operation", ["accept", "reject"])
async def test_an_answer_with_a_stale_version_is_a_conflict(
    pg_world: World, operation: str
) -> None:
    world = pg_world
    actor = await world.actor()
    quote_id = await _quote(world, actor, sent=True)  # version 2, SENT
    before = await world.snapshot(quote_id)
    response = await _request(world, actor, quote_id, operation, 1)
    error = assert_envelope(response, "QUOTE_CONFLICT_VERSION", 409)
    assert (error["details"]["expectedVersion"], error["details"]["actualVersion"]) == (1, 2)
    assert "status" in error["details"]["changedFields"]
    assert await world.snapshot(quote_id) == before


# --- two transitions from one version, at once ----------------------------------------------


async def _waiting_on_locks(holder: asyncpg.Connection) -> int:
    return int(
        await holder.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tripquote' "
            "AND wait_event_type = 'Lock' AND datname = current_database()"
        )
    )


async def _race(
    world: World, quote_id: str, first: tuple[Actor, str], second: tuple[Actor, str], version: int
) -> tuple[Any, Any]:
    """Both requests sent while the row is locked, released once both wait on it."""
    holder = await asyncpg.connect(world.dsn)
    try:
        transaction = holder.transaction()
        await transaction.start()
        await holder.execute("SELECT id FROM quotes WHERE id = $1 FOR UPDATE", quote_id)
        tasks = [
            asyncio.create_task(_request(world, actor, quote_id, operation, version))
            for actor, operation in (first, second)
        ]
        for _ in range(500):  # up to ~5 s for both to reach the lock; not a timing assertion
            if await _waiting_on_locks(holder) >= 2 or any(t.done() for t in tasks):
                break
            await asyncio.sleep(0.01)
        assert not any(t.done() for t in tasks), [t.result().text for t in tasks if t.done()]
        assert await _waiting_on_locks(holder) == 2
        await transaction.rollback()
        one, two = await asyncio.gather(*tasks)
    finally:
        await holder.close()
    return one, two


# (first operation, second operation, version both start from, starting status)
# -> {winner's operation: (winner's status, loser's code)}
RACES: dict[tuple[str, str], tuple[bool, dict[str, tuple[str, str]]]] = {
    ("send", "delete"): (
        False,
        {"send": ("SENT", "QUOTE_ALREADY_SENT"), "delete": ("CANCELLED", "QUOTE_STATE_INVALID")},
    ),
    ("send", "send"): (False, {"send": ("SENT", "QUOTE_ALREADY_SENT")}),
    ("accept", "reject"): (
        True,
        {
            "accept": ("ACCEPTED", "QUOTE_STATE_INVALID"),
            "reject": ("REJECTED", "QUOTE_STATE_INVALID"),
        },
    ),
    ("send", "update"): (
        False,
        {"send": ("SENT", "QUOTE_ALREADY_SENT"), "update": ("DRAFT", "QUOTE_CONFLICT_VERSION")},
    ),
}


@pytest.mark.parametrize("pair", list(RACES), ids=["-".join(p) for p in RACES])
async def test_two_transitions_from_one_version_exactly_one_wins(
    pg_world: World, pair: tuple[str, str]
) -> None:
    world = pg_world
    sent, outcomes = RACES[pair]
    owner = await world.actor()
    admin = await world.actor(agency_id=owner.agency_id, role="admin")
    quote_id = await _quote(world, owner, sent=sent)
    version = 2 if sent else 1
    revisions = await world.count("quote_revisions", "quote_id = :id", id=quote_id)
    contenders = [(owner, pair[0]), (admin, pair[1])]
    responses = await _race(world, quote_id, contenders[0], contenders[1], version)

    won = [n for n, r in enumerate(responses) if r.status_code == 200]
    assert len(won) == 1, [r.text for r in responses]
    winner_actor, winner_operation = contenders[won[0]]
    loser_operation = contenders[1 - won[0]][1]
    winner = responses[won[0]].json()["quote"]
    status, loser_code = outcomes[winner_operation]
    assert (winner["status"], winner["version"]) == (status, version + 1)
    assert winner["lastModifiedBy"] == winner_actor.agent_id

    error = assert_envelope(responses[1 - won[0]], loser_code, 409)
    details = error["details"]
    if loser_code == "QUOTE_CONFLICT_VERSION":
        assert (details["expectedVersion"], details["actualVersion"]) == (version, version + 1)
        assert details["lastModifiedBy"] == winner_actor.agent_id
    else:
        assert details["currentStatus"] == status
        assert details["operation"] == loser_operation.upper()

    # The database holds the winner's change once, and nothing of the loser's.
    read = await world.client.get(f"{URL}/{quote_id}", headers=owner.headers)
    assert read.json()["quote"] == winner
    assert await world.count("quote_revisions", "quote_id = :id", id=quote_id) == revisions + 1
    stored = await world.snapshot(quote_id)
    assert stored["quote"] is not None
    assert (stored["quote"]["version"], stored["quote"]["status"]) == (version + 1, status)
    new_revisions = stored["revisions"][revisions:]
    assert [(r["actor_id"], r["version"]) for r in new_revisions] == [
        (winner_actor.agent_id, version + 1)
    ]
