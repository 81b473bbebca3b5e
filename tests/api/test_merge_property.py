"""The merge property through HTTP on real PostgreSQL: two agents' disjoint edits of one
version, saved A then B (B merged) and B then A (A merged) on two copies of the quote, give
the same quote; overlapping ones refuse the second naming exactly the overlap, and store
nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import Actor, World, quote_body

_FIELDS = {"tripName": "Trip by {}", "notes": "Notes by {}", "travelers": None}
_ITEM_COUNT = 6  # iceland-ring-road-eur


@dataclass
class _Edit:
    tag: str
    fields: set[str] = field(default_factory=set)
    changed: set[int] = field(default_factory=set)
    removed: set[int] = field(default_factory=set)
    add_after: int | None = None  # a base item's index, -1 for first

    def body(self, quote: dict[str, Any]) -> dict[str, Any]:
        body: dict[str, Any] = {"version": quote["version"]}
        for name in self.fields:
            template = _FIELDS[name]
            body[name] = 2 if template is None and self.tag == "A" else 3
            if template is not None:
                body[name] = template.format(self.tag)
        items = []
        if self.add_after == -1:
            items.append(_new(self.tag))
        for index, item in enumerate(quote["items"]):
            sent = {k: v for k, v in item.items() if k != "lineTotal"}
            if index in self.changed:
                sent["description"] = f"changed by {self.tag}"
            if index not in self.removed:
                items.append(sent)
            if self.add_after == index:
                items.append(_new(self.tag))
        if self.changed or self.removed or self.add_after is not None:
            body["items"] = items
        return body

    def touched(self, ids: list[str]) -> set[str]:
        return self.fields | {f"items[{ids[i]}]" for i in self.changed | self.removed}


def _new(tag: str) -> dict[str, Any]:
    return {"type": "OTHER", "description": f"added by {tag}", "quantity": 1, "unitPrice": "5"}


def _place(anchor: int, removed: set[int]) -> int:
    """Where an addition after base item ``anchor`` lands: after the nearest base item at or
    before it that the same edit keeps (-1: first), as the merge places it."""
    while anchor in removed:
        anchor -= 1
    return anchor


@st.composite
def _edits(draw: st.DrawFn, *, disjoint: bool) -> tuple[_Edit, _Edit]:
    edits = []
    free = list(range(_ITEM_COUNT))
    taken_fields: set[str] = set()
    anchors = [-1, *range(_ITEM_COUNT)]
    taken_places: set[int] = set()
    for tag in ("A", "B"):
        edit = _Edit(tag)
        names = sorted(set(_FIELDS) - taken_fields) if disjoint else sorted(_FIELDS)
        edit.fields = draw(st.sets(st.sampled_from(names), max_size=2)) if names else set()
        touched = draw(st.lists(st.sampled_from(free), unique=True, max_size=2))
        split = draw(st.integers(0, len(touched)))
        edit.changed, edit.removed = set(touched[:split]), set(touched[split:])
        places = [a for a in anchors if _place(a, edit.removed) not in taken_places]
        edit.add_after = draw(st.none() | st.sampled_from(places)) if places else None
        if disjoint:
            taken_fields |= edit.fields
            free = [i for i in free if i not in edit.changed | edit.removed]
            if edit.add_after is not None:  # additions at one place: ordered by their ids,
                taken_places.add(_place(edit.add_after, edit.removed))  # new on each copy
        edits.append(edit)
    return edits[0], edits[1]


async def _create(world: World, actor: Actor) -> dict[str, Any]:
    response = await world.client.post(
        "/api/agents/quotes",
        json=quote_body("iceland-ring-road-eur", actor.client_id),
        headers=actor.headers,
    )
    assert response.status_code == 201, response.text
    quote: dict[str, Any] = response.json()["quote"]
    return quote


async def _save(world: World, actor: Actor, quote_id: str, body: dict[str, Any]) -> Any:
    return await world.client.patch(
        f"/api/agents/quotes/{quote_id}",
        json=body,
        headers={**actor.headers, "Prefer": "merge"},
    )


def _content(quote: dict[str, Any]) -> dict[str, Any]:
    """The quote without what differs between two copies: ids, who and when."""
    drop = {"id", "version", "createdAt", "lastModifiedAt", "agentId", "lastModifiedBy"}
    kept = {k: v for k, v in quote.items() if k not in drop}
    kept["items"] = [{k: v for k, v in i.items() if k != "id"} for i in quote["items"]]
    return kept


_SETTINGS = settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@_SETTINGS
@given(edits=_edits(disjoint=True))
async def test_disjoint_edits_in_either_order_give_the_same_quote(
    world: World, edits: tuple[_Edit, _Edit]
) -> None:
    a, b = edits
    actor = await world.actor()
    finals = []
    for first, second in ((a, b), (b, a)):
        quote = await _create(world, actor)
        first_body, second_body = first.body(quote), second.body(quote)
        for body in (first_body, second_body):
            response = await _save(world, actor, quote["id"], body)
            assert response.status_code == 200, response.text
        final = response.json()["quote"]
        assert final["version"] == 3 or (len(first_body) == 1 or len(second_body) == 1)
        finals.append(final)
    assert _content(finals[0]) == _content(finals[1])
    for edit in (a, b):
        for name in edit.fields - {"travelers"}:
            assert finals[0][name] == _FIELDS[name].format(edit.tag)


@_SETTINGS
@given(edits=_edits(disjoint=False))
async def test_overlapping_edits_refuse_the_second_naming_exactly_the_overlap(
    world: World, edits: tuple[_Edit, _Edit]
) -> None:
    a, b = edits
    actor = await world.actor()
    quote = await _create(world, actor)
    ids = [item["id"] for item in quote["items"]]
    overlap = a.touched(ids) & b.touched(ids)
    first = await _save(world, actor, quote["id"], a.body(quote))
    assert first.status_code == 200, first.text
    before = await world.snapshot(quote["id"])
    second = await _save(world, actor, quote["id"], b.body(quote))
    if len(a.body(quote)) == 1 or not overlap:
        assert second.status_code == 200, second.text
        return
    assert second.status_code == 409, second.text
    conflicts = second.json()["details"]["conflicts"]
    named = {c["path"] if c["path"] != "items" else f"items[{c['itemId']}]" for c in conflicts}
    assert named == overlap
    assert await world.snapshot(quote["id"]) == before
