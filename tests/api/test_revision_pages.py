"""A quote's history comes in cursor pages (default 50, at most 200, the quotes list's
conventions), oldest first; an entry carries no snapshot (that stays at
``…/revisions/{version}``) and names the fields that changed from the version before, by the
same rule as a 409's ``changedFields``."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, World, quote_body
from tripquote.pagination import encode_cursor

URL = "/api/agents/quotes"
ENTRY_KEYS = {"version", "operation", "status", "actorId", "correlationId", "createdAt", "merge"}


async def new_quote(world: World, actor: Actor, items: int | None = None) -> str:
    body = quote_body("edinburgh-weekend-gbp", actor.client_id)
    if items is not None:
        body["items"] = [
            {"type": "OTHER", "description": f"Item {n}", "quantity": 1, "unitPrice": "10.00"}
            for n in range(items)
        ]
        body["discount"] = "0"
        body.pop("pricing", None)
    response = await world.client.post(URL, json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["quoteId"])


async def edit(world: World, actor: Actor, quote_id: str, version: int, **fields: Any) -> int:
    response = await world.client.patch(
        f"{URL}/{quote_id}", json={"version": version, **fields}, headers=actor.headers
    )
    assert response.status_code == 200, response.text
    return int(response.json()["version"])


async def edited_n_times(world: World, actor: Actor, edits: int, items: int | None = None) -> str:
    quote_id = await new_quote(world, actor, items)
    version = 1
    for n in range(edits):
        version = await edit(world, actor, quote_id, version, notes=f"edit {n}")
    return quote_id


async def page(
    world: World, actor: Actor, quote_id: str, **params: Any
) -> tuple[list[dict[str, Any]], str | None]:
    response = await world.client.get(
        f"{URL}/{quote_id}/revisions", params=params, headers=actor.headers
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"success", "quoteId", "revisions", "nextCursor"}
    assert body["quoteId"] == quote_id
    for entry in body["revisions"]:
        assert set(entry) == ENTRY_KEYS | {"changedFields"}  # no snapshot
    return body["revisions"], body["nextCursor"]


async def walk(world: World, actor: Actor, quote_id: str, **params: Any) -> list[list[int]]:
    """The versions of every page, following nextCursor to the last page."""
    pages: list[list[int]] = []
    cursor: str | None = None
    while True:
        entries, cursor = await page(
            world, actor, quote_id, **params, **({"cursor": cursor} if cursor else {})
        )
        pages.append([entry["version"] for entry in entries])
        if cursor is None:
            return pages
        assert len(pages) < 100


async def test_a_long_history_comes_in_pages_oldest_first(world: World) -> None:
    actor = await world.actor()
    quote_id = await edited_n_times(world, actor, 60)  # versions 1..61
    versions = list(range(1, 62))
    assert await walk(world, actor, quote_id) == [versions[:50], versions[50:]]  # default 50
    assert await walk(world, actor, quote_id, limit=200) == [versions]
    assert await walk(world, actor, quote_id, limit=61) == [versions]  # exactly full: last
    assert await walk(world, actor, quote_id, limit=60) == [versions[:60], [61]]
    sevens = await walk(world, actor, quote_id, limit=7)
    assert sevens == [versions[i : i + 7] for i in range(0, 61, 7)]
    # A cursor names a place in the history: the same page every time, and the new versions
    # appear after the last one.
    first, cursor = await page(world, actor, quote_id, limit=50)
    assert cursor is not None
    again, _ = await page(world, actor, quote_id, limit=50)
    assert again == first
    rest, last = await page(world, actor, quote_id, cursor=cursor)
    assert ([e["version"] for e in rest], last) == (versions[50:], None)
    await edit(world, actor, quote_id, 61, notes="one more")
    rest, last = await page(world, actor, quote_id, cursor=cursor)
    assert ([e["version"] for e in rest], last) == ([*versions[50:], 62], None)
    assert (await page(world, actor, quote_id, cursor=cursor))[0] == rest


async def test_fifty_edits_of_a_hundred_item_quote_are_a_small_first_page(world: World) -> None:
    actor = await world.actor()
    quote_id = await edited_n_times(world, actor, 50, items=100)
    response = await world.client.get(f"{URL}/{quote_id}/revisions", headers=actor.headers)
    assert response.status_code == 200, response.text
    assert len(response.json()["revisions"]) == 50
    # 50 entries of a few hundred bytes each (it was every version's whole quote: 3.1 MB).
    assert len(response.content) < 32 * 1024
    one = await world.client.get(f"{URL}/{quote_id}/revisions/51", headers=actor.headers)
    assert len(one.json()["revision"]["snapshot"]["items"]) == 100  # the snapshot stays


async def test_each_entry_names_what_changed_since_the_version_before(world: World) -> None:
    actor = await world.actor()
    quote_id = await new_quote(world, actor)
    version = await edit(world, actor, quote_id, 1, notes="window seat")  # 2
    version = await edit(world, actor, quote_id, version, travelers=3, markupPercent="12.5")  # 3
    version = await edit(world, actor, quote_id, version, notes="window seat")  # 4: no change
    assert version == 3
    items = quote_body("edinburgh-weekend-gbp", actor.client_id)["items"]
    items[0]["quantity"] = 2
    version = await edit(world, actor, quote_id, version, items=items, discount="10")  # 4
    for action in ("send", "reject"):  # 5, 6
        response = await world.client.post(
            f"{URL}/{quote_id}/{action}", json={"version": version}, headers=actor.headers
        )
        assert response.status_code == 200, response.text
        version = response.json()["version"]
    version = await edit(world, actor, quote_id, version, tripName="Edinburgh, again")  # 7
    entries, cursor = await page(world, actor, quote_id)
    assert cursor is None
    assert [(e["version"], e["operation"], e["status"], e["changedFields"]) for e in entries] == [
        (1, "CREATE", "DRAFT", []),
        (2, "UPDATE", "DRAFT", ["notes"]),
        (3, "UPDATE", "DRAFT", ["markupPercent", "travelers"]),
        (4, "UPDATE", "DRAFT", ["discount", "items"]),
        (5, "SEND", "SENT", ["status"]),
        (6, "REJECT", "REJECTED", ["status"]),
        (7, "UPDATE", "DRAFT", ["status", "tripName"]),
    ]
    assert {e["actorId"] for e in entries} == {actor.agent_id}
    # The 409 of a save from version 2 names what changed from 2 to 7 by the same rule...
    stale = await world.client.patch(
        f"{URL}/{quote_id}", json={"version": 2, "notes": "late"}, headers=actor.headers
    )
    body = assert_envelope(stale, "QUOTE_CONFLICT_VERSION", 409)
    assert body["details"]["changedFields"] == sorted(
        {"markupPercent", "travelers", "discount", "items", "tripName"}
    )
    # ...and from 6 to 7 exactly what the history's entry 7 says.
    stale = await world.client.patch(
        f"{URL}/{quote_id}", json={"version": 6, "notes": "late"}, headers=actor.headers
    )
    body = assert_envelope(stale, "QUOTE_CONFLICT_VERSION", 409)
    assert body["details"]["changedFields"] == entries[-1]["changedFields"]


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"cursor": "%%%"}, "cursor"),
        ({"cursor": "bm90IGEgY3Vyc29y"}, "cursor"),  # "not a cursor"
        ({"cursor": "djA"}, "cursor"),  # "v0": no version 0 to resume after
        ({"cursor": "dzI"}, "cursor"),  # "w2": not a version cursor
        ({"cursor": "djIxNDc0ODM2NDg"}, "cursor"),  # "v2147483648": past the version column
        ({"cursor": "x" * 513}, "cursor"),
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "-8"}, "limit"),
        ({"limit": "ten"}, "limit"),
    ],
    ids=lambda value: str(value)[:40],
)
async def test_a_bad_cursor_or_limit_is_refused_and_changes_nothing(
    world: World, params: dict[str, str], path: str
) -> None:
    actor = await world.actor()
    quote_id = await edited_n_times(world, actor, 2)
    before, counts = await world.snapshot(quote_id), await world.table_counts()
    response = await world.client.get(
        f"{URL}/{quote_id}/revisions", params=params, headers=actor.headers
    )
    body = assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
    assert [error["path"] for error in body["details"]["errors"]] == [path]
    assert await world.snapshot(quote_id) == before
    assert await world.table_counts() == counts


async def test_a_list_cursor_is_no_history_cursor(world: World) -> None:
    from datetime import UTC, datetime

    actor = await world.actor()
    quote_id = await edited_n_times(world, actor, 1)
    cursor = encode_cursor(datetime.now(UTC), quote_id)
    response = await world.client.get(
        f"{URL}/{quote_id}/revisions", params={"cursor": cursor}, headers=actor.headers
    )
    assert_envelope(response, "QUOTE_VALIDATION_FAILED", 400)
