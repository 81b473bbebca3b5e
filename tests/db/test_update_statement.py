"""A PATCH carrying the whole quote (an editor's Save) is one statement (``sql.EDIT``): it
checks the caller, the version, the status, the client and that something changes itself,
and writes the revision, its snapshot the previous one with the changes laid over it. When it
writes nothing, its facts say why in the same round trip; any other PATCH is one read (the
merge needs the stored quote) and the same statement.

The statements are read off asyncpg's query logger on every pooled connection."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import Actor, World, quote_body
from tests.db.statements import Statements, watching
from tripquote.json import loads
from tripquote.quotes import sql
from tripquote.quotes.serialize import INPUT_FIELDS

_NAMES = {sql.EDIT.text: "EDIT", sql.LOAD.text: "LOAD"}
ONE_STATEMENT = ["EDIT"]


@pytest.fixture
def statements(world: World) -> Iterator[Statements]:
    with watching(world.engine, _NAMES) as watcher:
        yield watcher


async def _create(world: World, actor: Actor, fixture: str = "iceland-ring-road-eur") -> Any:
    response = await world.client.post(
        "/api/agents/quotes", json=quote_body(fixture, actor.client_id), headers=actor.headers
    )
    assert response.status_code == 201, response.text
    return response.json()["quote"]


def _full_form(quote: dict[str, Any], *, client: bool = False, **changes: Any) -> dict[str, Any]:
    """What an editor sends: every client-set field (clientId if ``client``) and the version."""
    body = {name: quote[name] for name in INPUT_FIELDS if client or name != "clientId"}
    body["items"] = [
        {k: item[k] for k in ("type", "description", "quantity", "unitPrice", "details")}
        for item in quote["items"]
    ]
    return {**body, **changes, "version": quote["version"]}


async def _patch(world: World, actor: Actor, quote_id: str, body: dict[str, Any]) -> Any:
    return await world.client.patch(
        f"/api/agents/quotes/{quote_id}", json=body, headers=actor.headers
    )


async def _stored_snapshot(world: World, quote_id: str, version: int) -> str:
    async with world.engine.connect() as conn:
        result = await conn.execute(
            text("SELECT snapshot::text FROM quote_revisions WHERE quote_id = :q AND version = :v"),
            {"q": quote_id, "v": version},
        )
        return str(result.scalar_one())


async def _assert_saved_as_read(world: World, actor: Actor, saved: dict[str, Any]) -> None:
    """The response's quote is what GET reads and the revision's snapshot, keys in order."""
    read = await world.client.get(f"/api/agents/quotes/{saved['id']}", headers=actor.headers)
    assert read.json()["quote"] == saved
    snapshot = loads((await _stored_snapshot(world, saved["id"], saved["version"])).encode())
    assert snapshot == saved
    assert list(snapshot) == list(saved)


async def test_a_full_form_save_of_an_own_draft_is_one_statement(
    world: World, statements: Statements
) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    await statements.take()
    response = await _patch(world, actor, quote["id"], _full_form(quote, tripName="Renamed"))
    assert response.status_code == 200, response.text
    assert await statements.take() == ONE_STATEMENT
    saved = response.json()["quote"]
    assert (saved["version"], saved["tripName"]) == (2, "Renamed")
    assert (saved["clientId"], saved["createdAt"]) == (quote["clientId"], quote["createdAt"])
    assert response.headers["ETag"] == '"2"'
    await _assert_saved_as_read(world, actor, saved)
    assert await world.count("quote_revisions", "quote_id = :q", q=quote["id"]) == 2


@pytest.mark.parametrize("client", [False, True], ids=["without clientId", "same clientId"])
async def test_items_alone_changing_is_a_change(
    world: World, statements: Statements, client: bool
) -> None:
    actor = await world.actor()
    quote = await _create(world, actor, "serengeti-safari-usd")
    items = [dict(item) for item in quote["items"]]
    items[1]["quantity"] += 1
    del items[-1]  # one item fewer: the last position goes
    body = _full_form(quote, client=client, items=items)
    body["items"] = [{k: v for k, v in item.items() if k != "lineTotal"} for item in items]
    await statements.take()
    response = await _patch(world, actor, quote["id"], body)
    assert response.status_code == 200, response.text
    assert await statements.take() == ONE_STATEMENT
    saved = response.json()["quote"]
    assert len(saved["items"]) == len(quote["items"]) - 1
    assert saved["items"][1]["quantity"] == quote["items"][1]["quantity"] + 1
    assert saved["pricing"] != quote["pricing"]
    await _assert_saved_as_read(world, actor, saved)
    assert await world.count("quote_items", "quote_id = :q", q=quote["id"]) == len(items)


async def test_the_same_quote_again_is_no_new_version(world: World, statements: Statements) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    before = await world.snapshot(quote["id"])
    await statements.take()
    response = await _patch(world, actor, quote["id"], _full_form(quote, client=True))
    assert response.status_code == 200, response.text
    assert response.json()["quote"] == quote
    # The statement found nothing to change; the quote is read to answer with it.
    assert await statements.take() == ["EDIT", "LOAD"]
    assert await world.snapshot(quote["id"]) == before


async def test_text_that_looks_like_the_spliced_keys_stays_text(
    world: World, statements: Statements
) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    lure = '"clientId":null "createdAt":null'
    items = [
        *_full_form(quote)["items"],
        {
            "type": "OTHER",
            "description": lure,
            "quantity": 1,
            "unitPrice": "1.00",
            "details": {'x"clientId': None, "createdAt": None, '"createdAt"': lure},
        },
    ]
    await statements.take()
    response = await _patch(world, actor, quote["id"], _full_form(quote, notes=lure, items=items))
    assert response.status_code == 200, response.text
    assert await statements.take() == ONE_STATEMENT
    saved = response.json()["quote"]
    assert (saved["notes"], saved["items"][-1]["description"]) == (lure, lure)
    assert saved["items"][-1]["details"] == items[-1]["details"]
    await _assert_saved_as_read(world, actor, saved)


async def _send(world: World, actor: Actor, quote: dict[str, Any]) -> dict[str, Any]:
    response = await world.client.post(
        f"/api/agents/quotes/{quote['id']}/send",
        json={"version": quote["version"]},
        headers=actor.headers,
    )
    assert response.status_code == 200, response.text
    return dict(response.json()["quote"])


@pytest.mark.parametrize(
    ("case", "status", "code"),
    [
        ("stale version", 409, "QUOTE_CONFLICT_VERSION"),
        ("colleague's quote", 403, "AUTHORIZATION_FAILED"),
        ("other agency's quote", 404, "QUOTE_NOT_FOUND"),
        ("disabled agent", 404, "AGENT_NOT_FOUND"),
        ("sent quote", 409, "QUOTE_ALREADY_SENT"),
        ("colleague's client", 403, "AUTHORIZATION_FAILED"),
    ],
)
async def test_what_the_statement_does_not_write_is_explained_and_nothing_is_written(
    world: World, statements: Statements, case: str, status: int, code: str
) -> None:
    owner = await world.actor()
    colleague = await world.actor(agency_id=owner.agency_id)
    quote = await _create(world, owner)
    caller, body = owner, _full_form(quote, tripName="Changed")
    if case == "stale version":
        assert (await _patch(world, owner, quote["id"], body)).status_code == 200
        body["tripName"] = "Changed again"
    elif case == "colleague's quote":
        caller = colleague
    elif case == "other agency's quote":
        caller = await world.actor()
    elif case == "disabled agent":
        async with world.engine.begin() as conn:
            await conn.execute(
                text("UPDATE agents SET active = false WHERE id = :a"), {"a": owner.agent_id}
            )
    elif case == "sent quote":
        sent = await _send(world, owner, quote)
        body = _full_form(sent, tripName="Changed")
    elif case == "colleague's client":
        body["clientId"] = colleague.client_id
    before = await world.table_counts(), await world.snapshot(quote["id"])
    await statements.take()
    response = await _patch(world, caller, quote["id"], body)
    assert response.status_code == status, response.text
    assert response.json()["errorCode"] == code
    assert await statements.take() == ["EDIT"]  # its facts said why: no second read
    assert (await world.table_counts(), await world.snapshot(quote["id"])) == before


async def test_an_admins_save_and_a_reopened_quote_are_one_statement_too(
    world: World, statements: Statements
) -> None:
    owner = await world.actor()
    admin = await world.actor(agency_id=owner.agency_id, role="admin")
    quote = await _create(world, owner)
    await statements.take()
    by_admin = await _patch(world, admin, quote["id"], _full_form(quote, tripName="By admin"))
    assert by_admin.status_code == 200, by_admin.text
    assert await statements.take() == ONE_STATEMENT
    saved = by_admin.json()["quote"]
    assert saved["lastModifiedBy"] == admin.agent_id
    await _assert_saved_as_read(world, owner, saved)
    # A rejected quote reopened as a DRAFT (the owner's quota bound is raised with it).
    sent = await _send(world, owner, saved)
    rejected = await world.client.post(
        f"/api/agents/quotes/{quote['id']}/reject",
        json={"version": sent["version"]},
        headers=owner.headers,
    )
    assert rejected.status_code == 200, rejected.text
    await statements.take()
    reopened = await _patch(
        world, owner, quote["id"], _full_form(rejected.json()["quote"], tripName="Again")
    )
    assert reopened.status_code == 200, reopened.text
    assert await statements.take() == ONE_STATEMENT
    assert (reopened.json()["quote"]["status"], reopened.json()["quote"]["sentAt"]) == (
        "DRAFT",
        None,
    )
    await _assert_saved_as_read(world, owner, reopened.json()["quote"])


async def test_a_failing_full_form_gets_the_step_by_step_error_order(
    world: World, statements: Statements
) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    assert (
        await _patch(world, actor, quote["id"], _full_form(quote, notes="x"))
    ).status_code == 200
    before = await world.snapshot(quote["id"])
    bad = _full_form(quote, travelers=0)  # invalid AND stale: the conflict is told first
    await statements.take()
    response = await _patch(world, actor, quote["id"], bad)
    assert response.status_code == 409, response.text
    assert response.json()["errorCode"] == "QUOTE_CONFLICT_VERSION"
    assert await statements.take() == ["LOAD"]
    assert await world.snapshot(quote["id"]) == before


async def test_the_statement_finds_the_quote_by_its_primary_key(world: World) -> None:
    """The agent and status are compared, never searched: with the generic plan every save
    uses, an index on (agent, status) would scan all of the agent's drafts."""
    actor = await world.actor()
    quote = await _create(world, actor)
    async with world.engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        await driver.execute("SET plan_cache_mode = force_generic_plan")
        values = dict.fromkeys(sql.EDIT.names)
        values.update(quote_id=quote["id"], expected=1, agent_id=actor.agent_id, items="[]")
        plan = await driver.fetchval(
            "EXPLAIN (FORMAT JSON) " + sql.EDIT.text, *sql.EDIT.args(values)
        )
        await driver.execute("RESET plan_cache_mode")
    scans = json.dumps(plan, default=str)
    assert '"Index Name": "pk_quotes"' in scans
    assert "ix_quotes_agent_id_status" not in scans


async def test_details_stored_with_nul_around_the_api_still_save(
    world: World, statements: Statements
) -> None:
    """json keeps ``\\u0000``, jsonb (the statement's comparison) cannot: stored details
    holding it count as changed, and the one statement saves. Only data written around the
    API can hold it (the API refuses NUL)."""
    actor = await world.actor()
    quote = await _create(world, actor)
    async with world.engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE quote_items SET details = CAST(:d AS json)"
                " WHERE quote_id = :q AND position = 0"
            ),
            {"d": '{"note": "a\\u0000b"}', "q": quote["id"]},
        )
    # The quote as it was before: only item 0 differs from what is stored, so the statement
    # must compare its details (whatever order it reads the items in) and cannot.
    body = _full_form(quote)
    await statements.take()
    response = await _patch(world, actor, quote["id"], body)
    assert response.status_code == 200, response.text
    assert response.json()["quote"]["items"][0]["details"] == quote["items"][0]["details"]
    assert await statements.take() == ONE_STATEMENT
