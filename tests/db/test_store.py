"""The quote store: the status as of now is one SQL expression (``sql.status_now``); every
transition is one statement (a send reads first: its expiry needs the stored quote); a stale
save's 409 comes from the statement's own facts and ``changedFields`` is computed once per
(quote, expected, actual) pair; the expiry sweep is one statement per batch."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from tests.conftest import Actor, World, quote_body
from tests.db.statements import Statements, watching
from tripquote.quotes import sql
from tripquote.quotes.lifecycle import QuoteStatus

S = QuoteStatus
URL = "/api/agents/quotes"
_NAMES = {
    sql.LOAD.text: "LOAD",
    sql.TRANSITION.text: "TRANSITION",
    sql.EDIT.text: "EDIT",
    sql.SNAPSHOTS.text: "SNAPSHOTS",
    sql.EXPIRE.text: "EXPIRE",
    sql.REVISION_PAGE.text: "REVISION_PAGE",
}


@pytest.fixture
def statements(world: World) -> Iterator[Statements]:
    with watching(world.engine, _NAMES) as watcher:
        yield watcher


EXPIRES = datetime(2027, 3, 16, 4, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "expires_at", "now", "expected"),
    [
        (S.SENT, EXPIRES, EXPIRES - timedelta(microseconds=1), S.SENT),
        (S.SENT, EXPIRES, EXPIRES, S.EXPIRED),  # now >= expiresAt
        (S.SENT, EXPIRES, EXPIRES + timedelta(days=3), S.EXPIRED),
        (
            S.SENT,
            EXPIRES,
            datetime(2027, 3, 16, 0, 0, tzinfo=timezone(timedelta(hours=-4))),
            S.EXPIRED,
        ),
        (S.SENT, None, EXPIRES, S.SENT),
        *((s, EXPIRES, EXPIRES + timedelta(days=1), s) for s in S if s is not S.SENT),
    ],
)
async def test_a_sent_quote_past_its_expiry_is_expired_as_of_now(
    world: World, status: QuoteStatus, expires_at: datetime | None, now: datetime,
    expected: QuoteStatus,
) -> None:  # fmt: skip
    expression = sql.status_now("q").replace(":now", "$3")
    async with world.engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        got = await driver.fetchval(
            f"SELECT {expression} FROM (SELECT $1::text AS status, $2::timestamptz AS expires_at) q",  # noqa: E501
            status.value,
            expires_at,
            now,
        )
    assert got == expected.value


async def _create(world: World, actor: Actor) -> dict[str, Any]:
    response = await world.client.post(
        URL, json=quote_body("iceland-ring-road-eur", actor.client_id), headers=actor.headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json()["quote"])


async def _act(world: World, actor: Actor, quote_id: str, action: str, version: int) -> Any:
    if action == "delete":
        return await world.client.request(
            "DELETE", f"{URL}/{quote_id}", json={"version": version}, headers=actor.headers
        )
    return await world.client.post(
        f"{URL}/{quote_id}/{action}", json={"version": version}, headers=actor.headers
    )


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (("delete",), [["TRANSITION"]]),
        (("send", "accept"), [["TRANSITION"], ["TRANSITION"]]),
        (("send", "reject"), [["TRANSITION"], ["TRANSITION"]]),
    ],
)
async def test_every_transition_is_one_statement(
    world: World, statements: Statements, path: tuple[str, ...], expected: list[list[str]]
) -> None:
    actor = await world.actor()
    # The agency's time zone (a send's expiry) is read with an agent's first send only.
    first = await _create(world, actor)
    await statements.take()
    assert (await _act(world, actor, first["id"], "send", 1)).status_code == 200
    assert await statements.take() == ["LOAD", "TRANSITION"]
    quote = await _create(world, actor)
    version = quote["version"]
    for action, names in zip(path, expected, strict=True):
        await statements.take()
        response = await _act(world, actor, quote["id"], action, version)
        assert response.status_code == 200, response.text
        assert await statements.take() == names
        saved = response.json()["quote"]
        assert saved["version"] == version + 1
        revision = await world.client.get(
            f"{URL}/{quote['id']}/revisions/{saved['version']}", headers=actor.headers
        )
        assert revision.json()["revision"]["snapshot"] == saved
        assert list(revision.json()["revision"]["snapshot"]) == list(saved)
        read = await world.client.get(f"{URL}/{quote['id']}", headers=actor.headers)
        assert read.json()["quote"] == saved
        version = saved["version"]


async def test_a_send_without_items_is_refused_by_the_statement(
    world: World, statements: Statements
) -> None:
    actor = await world.actor()
    warm = await _create(world, actor)
    assert (await _act(world, actor, warm["id"], "send", 1)).status_code == 200
    quote = await _create(world, actor)
    emptied = await world.client.patch(
        f"{URL}/{quote['id']}",
        json={"version": 1, "items": [], "discount": "0"},
        headers=actor.headers,
    )
    assert emptied.status_code == 200, emptied.text
    before = await world.snapshot(quote["id"])
    await statements.take()
    response = await _act(world, actor, quote["id"], "send", 2)
    assert response.status_code == 400, response.text
    assert response.json()["details"]["errors"][0]["path"] == "items"
    assert await statements.take() == ["TRANSITION"]
    assert await world.snapshot(quote["id"]) == before


async def test_stale_saves_are_answered_from_the_statement_and_one_comparison(
    world: World, statements: Statements
) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    won = await world.client.patch(
        f"{URL}/{quote['id']}", json={"version": 1, "notes": "won"}, headers=actor.headers
    )
    assert won.status_code == 200, won.text
    await statements.take()
    before = await world.snapshot(quote["id"])
    stale = await asyncio.gather(
        *(
            world.client.patch(
                f"{URL}/{quote['id']}",
                json={"version": 1, "notes": f"lost {i}"},
                headers=actor.headers,
            )
            for i in range(20)
        )
    )
    for response in stale:
        assert response.status_code == 409, response.text
        details = response.json()["details"]
        assert (details["expectedVersion"], details["actualVersion"]) == (1, 2)
        assert details["changedFields"] == ["notes"]
        assert details["lastModifiedBy"] == actor.agent_id
    seen = await statements.take()
    # Each stale PATCH is one read (a partial PATCH merges into the stored quote); the
    # snapshots are compared once for all twenty, not once each.
    assert seen.count("LOAD") == 20
    assert seen.count("EDIT") == 0
    assert 1 <= seen.count("SNAPSHOTS") < 20
    assert await world.snapshot(quote["id"]) == before


async def test_a_history_page_compares_its_versions_from_one_read_then_from_the_cache(
    world: World, statements: Statements
) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    for version in range(1, 6):
        response = await world.client.patch(
            f"{URL}/{quote['id']}", json={"version": version, "notes": f"v{version + 1}"},
            headers=actor.headers,
        )  # fmt: skip
        assert response.status_code == 200, response.text
    await statements.take()
    first = await world.client.get(f"{URL}/{quote['id']}/revisions", headers=actor.headers)
    assert [e["changedFields"] for e in first.json()["revisions"]] == [[]] + [["notes"]] * 5
    assert await statements.take() == ["LOAD", "REVISION_PAGE", "SNAPSHOTS"]
    again = await world.client.get(f"{URL}/{quote['id']}/revisions", headers=actor.headers)
    assert again.json() == first.json()
    assert await statements.take() == ["LOAD", "REVISION_PAGE"]  # revisions never change


async def test_the_sweep_is_one_statement_per_batch(world: World, statements: Statements) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    sent = await _act(world, actor, quote["id"], "send", 1)
    assert sent.status_code == 200, sent.text
    async with world.engine.begin() as conn:
        await conn.exec_driver_sql(
            "UPDATE quotes SET expires_at = $1 WHERE id = $2",
            (world.clock() - timedelta(days=1), quote["id"]),
        )
    await statements.take()
    assert await world.app.state.quotes.expire_due(batch_size=10, correlation_id="sweep") == 1
    assert await statements.take() == ["EXPIRE"]
    history = await world.client.get(f"{URL}/{quote['id']}/revisions", headers=actor.headers)
    last = history.json()["revisions"][-1]
    assert (last["operation"], last["status"], last["actorId"]) == ("EXPIRE", "EXPIRED", "system")
    assert last["changedFields"] == ["status"]
    revision = await world.client.get(f"{URL}/{quote['id']}/revisions/3", headers=actor.headers)
    snapshot = revision.json()["revision"]["snapshot"]
    assert (snapshot["status"], snapshot["version"]) == ("EXPIRED", 3)
