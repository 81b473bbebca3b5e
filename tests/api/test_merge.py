"""Stale saves merged (``Prefer: merge``, issue 17) through HTTP on real PostgreSQL: disjoint
edits both land, a collision is a 409 with base/current/requested values, concurrent merged
saves on one quote lose no update, and a refused merge stores nothing."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from sqlalchemy import text

from tests.conftest import Actor, World, quote_body
from tripquote.quotes.serialize import INPUT_FIELDS

MERGE = {"Prefer": "merge"}


async def _create(world: World, actor: Actor, items: int | None = None) -> dict[str, Any]:
    body = quote_body("iceland-ring-road-eur", actor.client_id)
    if items is not None:
        body["discount"] = "0"
        body["items"] = [
            {"type": "OTHER", "description": f"item {n}", "quantity": 1, "unitPrice": "10.00"}
            for n in range(items)
        ]
    response = await world.client.post("/api/agents/quotes", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()["quote"]
    return created


async def _patch(
    world: World, actor: Actor, quote_id: str, body: dict[str, Any], *, merge: bool = True
) -> Any:
    headers = {**actor.headers, **(MERGE if merge else {})}
    return await world.client.patch(f"/api/agents/quotes/{quote_id}", json=body, headers=headers)


async def _read(world: World, actor: Actor, quote_id: str) -> dict[str, Any]:
    response = await world.client.get(f"/api/agents/quotes/{quote_id}", headers=actor.headers)
    quote: dict[str, Any] = response.json()["quote"]
    return quote


def _edited(item: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """An item of a read sent back (request form) with ``changes``."""
    sent = {k: v for k, v in item.items() if k != "lineTotal"}
    return {**sent, **changes}


async def test_items_have_ids_kept_across_edits(world: World) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    ids = [item["id"] for item in quote["items"]]
    assert len(set(ids)) == len(ids) == 6
    items = [_edited(i) for i in quote["items"]]
    items[2]["quantity"] = 3
    moved = [items[5], *items[:5]]
    response = await _patch(world, actor, quote["id"], {"version": 1, "items": moved})
    assert response.status_code == 200, response.text
    saved = response.json()["quote"]
    assert [i["id"] for i in saved["items"]] == [ids[5], *ids[:5]]
    assert saved == await _read(world, actor, quote["id"])
    revision = await world.client.get(
        f"/api/agents/quotes/{quote['id']}/revisions/2", headers=actor.headers
    )
    assert [i["id"] for i in revision.json()["revision"]["snapshot"]["items"]] == [
        ids[5],
        *ids[:5],
    ]
    # Sent without ids, items take the ids at their positions: nothing changes.
    same = [{k: v for k, v in i.items() if k != "id"} for i in moved]
    body = {"version": 2, "items": same}
    unchanged = await _patch(world, actor, quote["id"], body, merge=False)
    assert unchanged.status_code == 200 and unchanged.json()["version"] == 2
    # One sent with an id another item has at its position: that one gets a new id.
    same[1]["id"], same[1]["description"] = ids[5], "was first"
    changed = await _patch(world, actor, quote["id"], body, merge=False)
    saved = changed.json()["quote"]["items"]
    assert saved[1]["id"] == ids[5] and saved[0]["id"] not in ids
    assert uuid.UUID(saved[0]["id"]).version == 7  # made as every id is (tripquote.ids)
    assert [i["id"] for i in saved[2:]] == ids[1:5]
    # With Prefer: merge an item sent without an id is a new item.
    fresh = [{k: v for k, v in i.items() if k != "id"} for i in saved]
    response = await _patch(world, actor, quote["id"], {"version": 3, "items": fresh})
    assert not {i["id"] for i in response.json()["quote"]["items"]} & set(ids)


@pytest.mark.parametrize(
    ("sent_id", "code"),
    [("00000000-0000-4000-8000-000000000000", "unknown_id"), ("not-a-uuid", "invalid_format")],
)
async def test_an_unknown_or_malformed_item_id_is_refused_at_its_path(
    world: World, sent_id: str, code: str
) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    before = await world.snapshot(quote["id"])
    items = [_edited(i) for i in quote["items"]]
    items[1]["id"] = sent_id
    response = await _patch(world, actor, quote["id"], {"version": 1, "items": items})
    assert response.status_code == 400, response.text
    assert response.json()["errorCode"] == "QUOTE_VALIDATION_FAILED"
    errors = response.json()["details"]["errors"]
    assert [(e["path"], e["code"]) for e in errors] == [("items[1].id", code)]
    assert await world.snapshot(quote["id"]) == before


async def test_an_id_on_a_create_or_another_quotes_item_id_is_refused(world: World) -> None:
    actor = await world.actor()
    other = await _create(world, actor)
    before = await world.table_counts()
    body = quote_body("iceland-ring-road-eur", actor.client_id)
    body["items"][2]["id"] = other["items"][2]["id"]
    response = await world.client.post("/api/agents/quotes", json=body, headers=actor.headers)
    assert response.status_code == 400, response.text
    errors = response.json()["details"]["errors"]
    assert [(e["path"], e["code"]) for e in errors] == [("items[2].id", "unknown_id")]
    assert await world.table_counts() == before
    # A full-form save (one statement, the store checks the ids) naming another quote's item.
    quote = await _create(world, actor)
    before = await world.table_counts()
    full = {k: quote[k] for k in INPUT_FIELDS if k not in ("clientId", "items")}
    full["items"] = [_edited(i) for i in quote["items"]]
    full["items"][4]["id"] = other["items"][4]["id"]
    response = await _patch(world, actor, quote["id"], {**full, "version": 1}, merge=False)
    assert response.status_code == 400, response.text
    errors = response.json()["details"]["errors"]
    assert [(e["path"], e["code"]) for e in errors] == [("items[4].id", "unknown_id")]
    assert await world.table_counts() == before


async def test_merge_is_preferred_on_any_line_of_the_prefer_field(world: World) -> None:
    # RFC 7240 §2: preferences may come on several Prefer lines; merge on the second one counts.
    actor = await world.actor()
    quote = await _create(world, actor)
    first = await _patch(world, actor, quote["id"], {"version": 1, "travelers": 3}, merge=False)
    assert first.status_code == 200, first.text
    headers = [*actor.headers.items(), ("Prefer", "return=minimal"), ("Prefer", "merge")]
    second = await world.client.patch(
        f"/api/agents/quotes/{quote['id']}",
        json={"version": 1, "notes": "second line"},
        headers=headers,
    )
    assert second.status_code == 200, second.text
    assert second.headers["preference-applied"] == "merge"
    merged = second.json()["quote"]
    assert (merged["version"], merged["travelers"], merged["notes"]) == (3, 3, "second line")


@pytest.mark.parametrize("merge", [False, True])
async def test_a_repeated_item_id_is_reported_with_the_other_failing_fields(
    world: World, merge: bool
) -> None:
    # Every failing field at once (the brief): the repeated id beside travelers 0.
    actor = await world.actor()
    quote = await _create(world, actor)
    before = await world.snapshot(quote["id"])
    items = [_edited(i) for i in quote["items"]]
    items[1]["id"] = items[0]["id"]
    body = {"version": 1, "travelers": 0, "items": items}
    response = await _patch(world, actor, quote["id"], body, merge=merge)
    assert response.status_code == 400, response.text
    errors = response.json()["details"]["errors"]
    assert [(e["path"], e["code"]) for e in errors] == [
        ("travelers", "out_of_range"),
        ("items[1].id", "duplicate_id"),
    ]
    assert await world.snapshot(quote["id"]) == before


async def test_every_unknown_item_id_of_a_full_form_save_is_reported(world: World) -> None:
    # The store checks a full-form save's ids (one statement): it names each unknown one.
    actor = await world.actor()
    other = await _create(world, actor)
    quote = await _create(world, actor)
    before = await world.table_counts()
    full = {k: quote[k] for k in INPUT_FIELDS if k not in ("clientId", "items")}
    full["items"] = [_edited(i) for i in quote["items"]]
    full["items"][1]["id"] = other["items"][1]["id"]
    full["items"][4]["id"] = str(uuid.uuid4())
    response = await _patch(world, actor, quote["id"], {**full, "version": 1}, merge=False)
    assert response.status_code == 400, response.text
    errors = response.json()["details"]["errors"]
    assert [(e["path"], e["code"]) for e in errors] == [
        ("items[1].id", "unknown_id"),
        ("items[4].id", "unknown_id"),
    ]
    assert await world.table_counts() == before


async def test_a_repeated_item_id_is_refused(world: World) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    before = await world.snapshot(quote["id"])
    items = [_edited(i) for i in quote["items"]]
    items[3]["id"] = items[0]["id"]
    response = await _patch(world, actor, quote["id"], {"version": 1, "items": items})
    assert response.status_code == 400
    errors = response.json()["details"]["errors"]
    assert {"path": "items[3].id", "code": "duplicate_id"}.items() <= errors[0].items()
    assert await world.snapshot(quote["id"]) == before


async def test_two_stale_saves_of_different_parts_both_land(world: World) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    items = [_edited(i) for i in quote["items"]]
    items[1]["description"] = "Hotel changed by A"
    first = await _patch(world, actor, quote["id"], {"version": 1, "items": items})
    assert first.status_code == 200 and "preference-applied" not in first.headers
    second = await _patch(world, actor, quote["id"], {"version": 1, "notes": "from B"})
    assert second.status_code == 200, second.text
    assert second.headers["preference-applied"] == "merge"
    merged = second.json()["quote"]
    assert merged["version"] == 3
    assert merged["notes"] == "from B"
    assert merged["items"][1]["description"] == "Hotel changed by A"
    assert merged == await _read(world, actor, quote["id"])
    history = await world.client.get(
        f"/api/agents/quotes/{quote['id']}/revisions", headers=actor.headers
    )
    entries = history.json()["revisions"]
    assert [e["merge"] for e in entries[:2]] == [None, None]
    assert entries[2]["merge"] == {
        "baseVersion": 1,
        "appliedOntoVersion": 2,
        "fromRequest": ["notes"],
        "fromCurrent": [f"items[{items[1]['id']}]"],
    }


async def test_without_the_preference_a_stale_save_is_refused_as_before(world: World) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    assert (await _patch(world, actor, quote["id"], {"version": 1, "travelers": 3})).is_success
    before = await world.snapshot(quote["id"])
    stale = await _patch(world, actor, quote["id"], {"version": 1, "notes": "x"}, merge=False)
    assert stale.status_code == 409
    details = stale.json()["details"]
    assert "conflicts" not in details and details["changedFields"] == ["travelers"]
    assert await world.snapshot(quote["id"]) == before


async def test_a_collision_is_a_409_with_the_three_values_and_stores_nothing(
    world: World,
) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    items = [_edited(i) for i in quote["items"]]
    was = quote["items"][0]["quantity"]
    items[0]["quantity"] = was + 1
    assert (await _patch(world, actor, quote["id"], {"version": 1, "travelers": 3})).is_success
    assert (await _patch(world, actor, quote["id"], {"version": 2, "items": items})).is_success
    before = await world.snapshot(quote["id"])
    mine = [_edited(i) for i in quote["items"]]
    mine[0]["quantity"] = was + 2
    mine[3]["description"] = "no collision here"
    response = await _patch(
        world, actor, quote["id"], {"version": 1, "travelers": 5, "items": mine}
    )
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["errorCode"] == "QUOTE_CONFLICT_VERSION"
    details = body["details"]
    assert details["expectedVersion"] == 1 and details["actualVersion"] == 3
    assert details["changedFields"] == ["items", "travelers"]
    conflicts = details["conflicts"]
    assert conflicts[0] == {"path": "travelers", "base": 4, "current": 3, "requested": 5}
    assert conflicts[1]["path"] == "items" and conflicts[1]["itemId"] == quote["items"][0]["id"]
    quantities = [conflicts[1][k]["quantity"] for k in ("base", "current", "requested")]
    assert quantities == [was, was + 1, was + 2]
    assert len(conflicts) == 2
    assert await world.snapshot(quote["id"]) == before
    # With If-Match the conflict is a 412, as without the preference.
    response = await world.client.patch(
        f"/api/agents/quotes/{quote['id']}",
        json={"travelers": 5},
        headers={**actor.headers, **MERGE, "If-Match": '"1"'},
    )
    assert response.status_code == 412
    assert response.json()["details"]["conflicts"][0]["path"] == "travelers"


async def test_a_merge_that_makes_an_invalid_quote_is_refused_naming_the_fields(
    world: World,
) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    # A ends the trip two days earlier (without the flight home); B, from version 1, adds an
    # activity on the day before the old end: each valid alone, merged the activity is after
    # the trip.
    kept = [_edited(i) for i in quote["items"][:5]]
    shorter = {"version": 1, "endDate": "2027-06-20", "items": kept}
    assert (await _patch(world, actor, quote["id"], shorter)).is_success
    before = await world.snapshot(quote["id"])
    items = [_edited(i) for i in quote["items"]]
    items.append(
        {
            "type": "ACTIVITY",
            "description": "Late hike",
            "quantity": 1,
            "unitPrice": "50",
            "details": {"name": "Late hike", "date": "2027-06-21"},
        }
    )
    response = await _patch(world, actor, quote["id"], {"version": 1, "items": items})
    assert response.status_code == 400, response.text
    assert response.json()["errorCode"] == "QUOTE_VALIDATION_FAILED"
    paths = [e["path"] for e in response.json()["details"]["errors"]]
    assert paths == ["items[5].details.date"]
    assert await world.snapshot(quote["id"]) == before


async def test_a_save_valid_only_once_merged_lands(world: World) -> None:
    # The rules between fields are the merged quote's, not the stale version's: B's discount
    # exceeds version 1's total but not the merged one's; B's activity is after version 1's
    # trip but inside the merged one's.
    actor = await world.actor()
    quote = await _create(world, actor, items=2)  # 20.00 + markup
    items = [_edited(i) for i in quote["items"]]
    items[0]["quantity"] = 10  # A: 100.00 + 10.00
    longer = {"version": 1, "endDate": "2027-06-30", "items": items}
    assert (await _patch(world, actor, quote["id"], longer)).is_success
    stale_discount = await _patch(world, actor, quote["id"], {"version": 1, "discount": "60.00"})
    assert stale_discount.status_code == 200, stale_discount.text
    merged = stale_discount.json()["quote"]
    assert (merged["discount"], merged["items"][0]["quantity"]) == ("60.00", 10)
    activity = {
        "type": "ACTIVITY",
        "description": "Late hike",
        "quantity": 1,
        "unitPrice": "50",
        "details": {"name": "Late hike", "date": "2027-06-29"},
    }
    late = [*(_edited(i) for i in quote["items"]), activity]
    stale_item = await _patch(world, actor, quote["id"], {"version": 1, "items": late})
    assert stale_item.status_code == 200, stale_item.text
    saved = stale_item.json()["quote"]
    assert saved["version"] == 4 and saved["endDate"] == "2027-06-30"
    assert [i["description"] for i in saved["items"]][-1] == "Late hike"
    assert saved == await _read(world, actor, quote["id"])


async def test_client_pricing_is_checked_against_the_merged_totals(world: World) -> None:
    actor = await world.actor()
    quote = await _create(world, actor, items=2)
    items = [_edited(i) for i in quote["items"]]
    items[0]["quantity"] = 2  # A: 20.00 + 10.00
    assert (await _patch(world, actor, quote["id"], {"version": 1, "items": items})).is_success
    before = await world.snapshot(quote["id"])
    mine = [_edited(i) for i in quote["items"]]
    mine[1]["quantity"] = 3  # B, on version 1: 10.00 + 30.00; merged: 20.00 + 30.00
    response = await _patch(
        world, actor, quote["id"], {"version": 1, "items": mine, "pricing": {"subtotal": "40.00"}}
    )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["errorCode"] == "ITEMS_INCONSISTENT"
    assert "40.00" in response.text and "50.00" in response.text
    assert await world.snapshot(quote["id"]) == before
    ok = await _patch(
        world, actor, quote["id"], {"version": 1, "items": mine, "pricing": {"subtotal": "50.00"}}
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["quote"]["pricing"]["subtotal"] == "50.00"


async def test_50_agents_each_changing_their_item_all_land(world: World) -> None:
    actor = await world.actor()
    quote = await _create(world, actor, items=50)
    start = quote["version"]

    async def change(n: int) -> Any:
        items = [_edited(i) for i in quote["items"]]
        items[n]["description"] = f"changed by agent {n}"
        return await _patch(world, actor, quote["id"], {"version": start, "items": items})

    responses = await asyncio.gather(*(change(n) for n in range(50)))
    assert [r.status_code for r in responses] == [200] * 50, [r.text for r in responses][:3]
    final = await _read(world, actor, quote["id"])
    assert final["version"] == start + 50
    assert [i["description"] for i in final["items"]] == [
        f"changed by agent {n}" for n in range(50)
    ]
    assert [i["id"] for i in final["items"]] == [i["id"] for i in quote["items"]]
    assert await world.count("quote_revisions", "quote_id = :id", id=quote["id"]) == 51
    assert await world.count("quote_revisions", "quote_id = :id AND merge IS NOT NULL",
                             id=quote["id"]) == 49  # fmt: skip


async def test_50_agents_changing_one_field_one_wins_49_get_the_three_values(
    world: World,
) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)

    async def change(n: int) -> Any:
        return await _patch(world, actor, quote["id"], {"version": 1, "notes": f"agent {n}"})

    responses = await asyncio.gather(*(change(n) for n in range(50)))
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 1 and statuses.count(409) == 49
    winner = statuses.index(200)
    for n, response in enumerate(responses):
        if n != winner:
            assert response.json()["details"]["conflicts"] == [
                {
                    "path": "notes",
                    "base": quote["notes"],
                    "current": f"agent {winner}",
                    "requested": f"agent {n}",
                }
            ]
    final = await _read(world, actor, quote["id"])
    assert final["version"] == 2 and final["notes"] == f"agent {winner}"
    assert await world.count("quote_revisions", "quote_id = :id", id=quote["id"]) == 2


async def test_delete_and_transitions_never_merge(world: World) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    assert (await _patch(world, actor, quote["id"], {"version": 1, "travelers": 3})).is_success
    before = await world.snapshot(quote["id"])
    for method, path in (("DELETE", ""), ("POST", "/send")):
        response = await world.client.request(
            method,
            f"/api/agents/quotes/{quote['id']}{path}",
            json={"version": 1},
            headers={**actor.headers, **MERGE},
        )
        assert response.status_code == 409, response.text
        assert "conflicts" not in response.json()["details"]
    assert await world.snapshot(quote["id"]) == before


async def test_a_version_saved_before_item_ids_is_not_merged_on(world: World) -> None:
    actor = await world.actor()
    quote = await _create(world, actor)
    assert (await _patch(world, actor, quote["id"], {"version": 1, "travelers": 3})).is_success
    async with world.engine.begin() as conn:  # version 1 as written before migration 0008
        await conn.execute(
            text(
                "UPDATE quote_revisions SET snapshot = json_build_object('items', "
                "(SELECT json_agg(i::jsonb - 'id') FROM json_array_elements(snapshot->'items') i))"
                "::jsonb || (snapshot::jsonb - 'items') WHERE quote_id = :id AND version = 1"
            ),
            {"id": quote["id"]},
        )
    before = await world.snapshot(quote["id"])
    response = await _patch(world, actor, quote["id"], {"version": 1, "notes": "merge me"})
    assert response.status_code == 409, response.text
    details = response.json()["details"]
    # the old snapshot's items lack their ids: they differ from the current ones' too
    assert "conflicts" not in details and details["changedFields"] == ["items", "travelers"]
    assert await world.snapshot(quote["id"]) == before


@pytest.mark.parametrize(
    ("base", "reopened"),
    [(1, False), (2, False), (1, True)],
    ids=["edited as a draft", "edited once sent", "edited as a draft, a draft again since"],
)
async def test_an_edit_is_not_merged_onto_a_quote_answered_since(
    world: World, base: int, reopened: bool
) -> None:
    # Before: an edit made on the DRAFT (v1) or on the SENT version (v2, which no edit could
    # be made on) landed on the quote the client had rejected since (v3), reopening it.
    actor = await world.actor()
    quote = await _create(world, actor)
    for transition, version in (("send", 1), ("reject", 2)):
        answered = await world.client.post(
            f"/api/agents/quotes/{quote['id']}/{transition}",
            json={"version": version},
            headers=actor.headers,
        )
        assert answered.status_code == 200, answered.text
    if reopened:
        # Reopened, a DRAFT again as at its base: an agent prepares a new offer, and an edit
        # of the first draft that collides with nothing merges onto it (its status is N's).
        edited = await _patch(world, actor, quote["id"], {"version": 3, "travelers": 4})
        assert edited.json()["quote"]["status"] == "DRAFT", edited.text
        late = await _patch(world, actor, quote["id"], {"version": base, "notes": "late edit"})
        assert late.status_code == 200, late.text
        assert late.headers["preference-applied"] == "merge"
        return
    before = await world.snapshot(quote["id"])
    response = await _patch(world, actor, quote["id"], {"version": base, "notes": "late edit"})
    assert response.status_code == 409, response.text
    body = response.json()
    assert body["errorCode"] == "QUOTE_CONFLICT_VERSION"
    assert "conflicts" not in body["details"] and "status" in body["details"]["changedFields"]
    assert await world.snapshot(quote["id"]) == before
    # Edited on the version read now (REJECTED), the edit reopens it, as without merge.
    current = await _patch(world, actor, quote["id"], {"version": 3, "notes": "late edit"})
    assert current.status_code == 200, current.text
    assert current.json()["quote"]["status"] == "DRAFT"
