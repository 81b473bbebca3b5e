"""A PATCH honours Idempotency-Key as the creates and transitions do: a retry after a lost
answer replays the first 200 (with ``Idempotent-Replayed: true``) instead of a 409 for the
client's own change; another body under the key is 422 IDEMPOTENCY_KEY_REUSED; a refused PATCH
frees its key; a PATCH that changes nothing, and a merged one, replay too."""

from __future__ import annotations

from typing import Any

from tests.api.test_conditional import _quote
from tests.api.test_errors_api import assert_envelope
from tests.conftest import Actor, World

URL = "/api/agents/quotes"


async def _patch(
    world: World, actor: Actor, quote_id: str, body: dict[str, Any], key: str | None, **extra: str
) -> Any:
    headers = {**actor.headers, **extra}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await world.client.patch(f"{URL}/{quote_id}", json=body, headers=headers)


async def test_a_retried_patch_replays_its_first_answer_and_saves_once(world: World) -> None:
    actor = await world.actor()
    quote_id = await _quote(world, actor)
    body = {"version": 1, "notes": "Window seats"}
    first = await _patch(world, actor, quote_id, body, "patch-once")
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 2
    assert "idempotent-replayed" not in first.headers
    saved = await world.snapshot(quote_id)
    counts = await world.table_counts()

    again = await _patch(world, actor, quote_id, body, "patch-once")
    assert (again.status_code, again.headers["idempotent-replayed"]) == (200, "true")
    assert again.content == first.content
    assert again.headers["etag"] == first.headers["etag"] == '"2"'
    assert await world.snapshot(quote_id) == saved
    assert await world.table_counts() == counts
    # Without the key the same PATCH is stale: what the key spares the client.
    stale = await _patch(world, actor, quote_id, body, None)
    assert_envelope(stale, "QUOTE_CONFLICT_VERSION", 409)


async def test_another_body_under_the_key_is_refused_and_writes_nothing(world: World) -> None:
    actor = await world.actor()
    quote_id = await _quote(world, actor)
    second = await _quote(world, actor)
    first = await _patch(world, actor, quote_id, {"version": 1, "notes": "A"}, "patch-reused")
    assert first.status_code == 200, first.text
    saved, untouched = await world.snapshot(quote_id), await world.snapshot(second)
    counts = await world.table_counts()
    for target, body, headers in (
        (quote_id, {"version": 2, "notes": "B"}, {}),
        (quote_id, {"notes": "A"}, {"If-Match": '"1"'}),  # the version named another way
        (second, {"version": 1, "notes": "A"}, {}),  # another quote: another URL
    ):
        other = await _patch(world, actor, target, body, "patch-reused", **headers)
        assert_envelope(other, "IDEMPOTENCY_KEY_REUSED", 422)
        assert "idempotent-replayed" not in other.headers
    assert await world.snapshot(quote_id) == saved
    assert await world.snapshot(second) == untouched
    assert await world.table_counts() == counts


async def test_a_refused_patch_frees_its_key(world: World) -> None:
    actor = await world.actor()
    quote_id = await _quote(world, actor)
    before = await world.snapshot(quote_id)
    counts = await world.table_counts()
    stale = await _patch(world, actor, quote_id, {"version": 7, "notes": "A"}, "patch-freed")
    assert_envelope(stale, "QUOTE_CONFLICT_VERSION", 409)
    invalid = await _patch(world, actor, quote_id, {"version": 1, "markup": "-1"}, "patch-freed")
    assert invalid.status_code == 400, invalid.text
    assert await world.snapshot(quote_id) == before
    assert await world.table_counts() == counts
    # The key names no request now: a corrected PATCH runs under it.
    fixed = await _patch(world, actor, quote_id, {"version": 1, "notes": "A"}, "patch-freed")
    assert fixed.status_code == 200, fixed.text
    assert "idempotent-replayed" not in fixed.headers
    assert fixed.json()["quote"]["notes"] == "A"


async def test_a_patch_that_changes_nothing_replays_too(world: World) -> None:
    actor = await world.actor()
    quote_id = await _quote(world, actor)
    notes = (await world.client.get(f"{URL}/{quote_id}", headers=actor.headers)).json()
    body = {"version": 1, "notes": notes["quote"]["notes"]}
    before = await world.snapshot(quote_id)
    first = await _patch(world, actor, quote_id, body, "patch-unchanged")
    assert first.status_code == 200, first.text
    assert first.json()["version"] == 1
    assert await world.snapshot(quote_id) == before
    # Stored with its key (not left claimed: a retry would be 409 IDEMPOTENCY_KEY_IN_USE).
    again = await _patch(world, actor, quote_id, body, "patch-unchanged")
    assert (again.status_code, again.headers["idempotent-replayed"]) == (200, "true")
    assert again.content == first.content
    assert await world.snapshot(quote_id) == before


async def test_a_merged_patch_replays_with_its_preference_applied(world: World) -> None:
    actor = await world.actor()
    quote_id = await _quote(world, actor)
    other = await _patch(world, actor, quote_id, {"version": 1, "notes": "Theirs"}, None)
    assert other.status_code == 200, other.text
    body = {"version": 1, "tripName": "Edinburgh, merged"}
    merged = await _patch(world, actor, quote_id, body, "patch-merged", Prefer="merge")
    assert merged.status_code == 200, merged.text
    assert merged.headers["preference-applied"] == "merge"
    assert merged.json()["version"] == 3
    saved = await world.snapshot(quote_id)
    counts = await world.table_counts()
    again = await _patch(world, actor, quote_id, body, "patch-merged", Prefer="merge")
    assert (again.status_code, again.headers["idempotent-replayed"]) == (200, "true")
    assert again.headers["preference-applied"] == "merge"
    assert again.content == merged.content
    assert await world.snapshot(quote_id) == saved
    assert await world.table_counts() == counts
