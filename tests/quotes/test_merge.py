"""The three-way merge (``quotes/merge.py``), pure: disjoint edits commute and all land,
overlapping ones collide naming exactly the overlap, and each rule on its own."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tripquote.quotes.merge import (
    MERGED_FIELDS,
    ORDER,
    Collision,
    Merged,
    has_item_ids,
    input_form,
    merge,
)

FIELDS = [name for name in MERGED_FIELDS if name != "clientId"]


def _item(item_id: str, description: str = "as in base") -> dict[str, Any]:
    return {"id": item_id, "type": "OTHER", "description": description, "quantity": 1}


def _base(count: int) -> dict[str, Any]:
    form: dict[str, Any] = {name: f"base {name}" for name in MERGED_FIELDS}
    form["items"] = [_item(f"b{n}") for n in range(count)]
    return form


@dataclass
class Edit:
    """One agent's edit of the base: fields set, items changed, removed, added after a base
    item (or first: None), and at most one item moved by at least two places."""

    tag: str
    fields: set[str] = field(default_factory=set)
    changed: set[str] = field(default_factory=set)
    removed: set[str] = field(default_factory=set)
    added: list[tuple[str | None, str]] = field(default_factory=list)
    move: tuple[str, int] | None = None

    def touched(self) -> set[str]:
        items = self.changed | self.removed | ({self.move[0]} if self.move else set())
        return self.fields | {f"items[{i}]" for i in items}

    def apply(self, base: dict[str, Any]) -> dict[str, Any]:
        form = {**base, **{name: f"{self.tag} {name}" for name in self.fields}}
        items = [
            _item(i["id"], f"{self.tag} changed") if i["id"] in self.changed else i
            for i in base["items"]
            if i["id"] not in self.removed
        ]
        if self.move is not None:
            moved, to = self.move
            item = next(i for i in items if i["id"] == moved)
            items.remove(item)
            items.insert(to, item)
        for after, new_id in self.added:
            at = 0 if after is None else [i["id"] for i in items].index(after) + 1
            items.insert(at, _item(new_id, f"{self.tag} added"))
        form["items"] = items
        return form


@st.composite
def _edit(
    draw: st.DrawFn, tag: str, ids: list[str], touchable: list[str], *, may_move: bool
) -> Edit:
    """An edit of base items ``ids`` that touches only ``touchable`` ones."""
    edit = Edit(tag)
    edit.fields = draw(st.sets(st.sampled_from(FIELDS), max_size=3))
    if touchable:
        touched = draw(st.lists(st.sampled_from(touchable), unique=True))
        split = draw(st.integers(0, len(touched)))
        edit.changed, edit.removed = set(touched[:split]), set(touched[split:])
    kept = [i for i in ids if i not in edit.removed]
    movable = [n for n, i in enumerate(kept) if i in touchable and i not in edit.changed]
    if may_move and movable and draw(st.booleans()):
        index = draw(st.sampled_from(movable))
        places = [t for t in range(len(kept)) if abs(t - index) >= 2]
        if places:
            edit.move = (kept[index], draw(st.sampled_from(places)))
    anchors = [None, *kept]
    for n in range(draw(st.integers(0, 3))):
        edit.added.append((draw(st.sampled_from(anchors)), f"{tag}-new{n}"))
    return edit


@st.composite
def _disjoint(draw: st.DrawFn) -> tuple[dict[str, Any], Edit, Edit]:
    base = _base(draw(st.integers(0, 8)))
    ids = [i["id"] for i in base["items"]]
    a = draw(_edit("A", ids, ids, may_move=True))
    untouched = [i for i in ids if f"items[{i}]" not in a.touched()]
    b = draw(_edit("B", ids, untouched, may_move=a.move is None))
    b.fields -= a.fields
    return base, a, b


def _both_orders(base: dict[str, Any], a: Edit, b: Edit) -> tuple[Any, Any]:
    a_form, b_form = a.apply(base), b.apply(base)
    return merge(base, a_form, b_form), merge(base, b_form, a_form)


@settings(max_examples=400, deadline=None)
@given(_disjoint())
def test_disjoint_edits_commute_and_both_land(case: tuple[dict[str, Any], Edit, Edit]) -> None:
    base, a, b = case
    a_then_b, b_then_a = _both_orders(base, a, b)
    assert isinstance(a_then_b, Merged) and isinstance(b_then_a, Merged)
    assert a_then_b.content == b_then_a.content
    merged = a_then_b.content
    for edit in (a, b):
        for name in edit.fields:
            assert merged[name] == f"{edit.tag} {name}"
    by_id = {item["id"]: item for item in merged["items"]}
    assert len(by_id) == len(merged["items"])
    for edit in (a, b):
        assert not edit.removed & by_id.keys()
        for item_id in edit.changed:
            assert by_id[item_id]["description"] == f"{edit.tag} changed"
        for _, new_id in edit.added:
            assert by_id[new_id]["description"] == f"{edit.tag} added"
    kept = [i["id"] for i in base["items"] if i["id"] not in a.removed | b.removed]
    added = [new_id for edit in (a, b) for _, new_id in edit.added]
    assert sorted(by_id) == sorted(kept + added)
    for name in set(FIELDS) - a.fields - b.fields:
        assert merged[name] == base[name]
    # B stale on A (A then B): what came from each side is what each changed.
    assert set(a_then_b.from_request) - {ORDER} == b.touched() | {f"items[{i}]" for _, i in b.added}
    assert set(a_then_b.from_current) - {ORDER} == a.touched() | {f"items[{i}]" for _, i in a.added}


@st.composite
def _overlapping(draw: st.DrawFn) -> tuple[dict[str, Any], Edit, Edit]:
    base = _base(draw(st.integers(1, 8)))
    ids = [i["id"] for i in base["items"]]
    a = draw(_edit("A", ids, ids, may_move=False))
    b = draw(_edit("B", ids, ids, may_move=False))
    shared_field = draw(st.sampled_from(FIELDS))
    a.fields.add(shared_field)
    b.fields.add(shared_field)
    return base, a, b


@settings(max_examples=300, deadline=None)
@given(_overlapping())
def test_overlapping_edits_collide_naming_exactly_the_overlap(
    case: tuple[dict[str, Any], Edit, Edit],
) -> None:
    base, a, b = case
    a_form, b_form = a.apply(base), b.apply(base)
    collisions = merge(base, a_form, b_form)
    assert isinstance(collisions, list)
    named = {c.path if c.item_id is None else f"items[{c.item_id}]" for c in collisions}
    assert named == a.touched() & b.touched()
    for collision in collisions:
        if collision.item_id is None:
            name = collision.path
            assert (collision.base, collision.current, collision.requested) == (
                base[name],
                a_form[name],
                b_form[name],
            )


def test_a_collision_carries_the_three_values_of_an_item() -> None:
    base = _base(2)
    current = {**base, "items": [_item("b0", "theirs"), base["items"][1]]}
    requested = {**base, "items": [base["items"][1]]}  # b0 removed
    assert merge(base, current, requested) == [
        Collision("items", "b0", _item("b0"), _item("b0", "theirs"), None)
    ]
    assert Collision("items", "b0", 1, 2, None).to_api() == {
        "path": "items",
        "itemId": "b0",
        "base": 1,
        "current": 2,
        "requested": None,
    }
    assert Collision("notes", None, "a", "b", "c").to_api() == {
        "path": "notes",
        "base": "a",
        "current": "b",
        "requested": "c",
    }


def test_the_same_value_set_by_both_sides_still_collides() -> None:
    base = _base(0)
    both = {**base, "notes": "same"}
    assert merge(base, both, both) == [Collision("notes", None, base["notes"], "same", "same")]


def test_both_sides_moving_items_collide_on_the_order() -> None:
    base = _base(4)
    b0, b1, b2, b3 = base["items"]
    current = {**base, "items": [b2, b0, b1, b3]}
    requested = {**base, "items": [b0, b1, b3, b2]}
    collisions = merge(base, current, requested)
    assert isinstance(collisions, list)
    assert collisions[-1] == Collision(
        "items", None, ["b0", "b1", "b2", "b3"], ("b2", "b0", "b1", "b3"), ("b0", "b1", "b3", "b2")
    )


def test_one_side_moving_an_item_and_the_other_changing_another_both_land() -> None:
    base = _base(4)
    b0, b1, b2, b3 = base["items"]
    current = {**base, "items": [b1, b2, b0, b3]}  # b0 moved
    requested = {**base, "items": [b0, b1, b2, _item("b3", "mine")]}
    merged = merge(base, current, requested)
    assert isinstance(merged, Merged)
    assert merged.content["items"] == [b1, b2, b0, _item("b3", "mine")]
    assert merged.from_current == (ORDER,) or "items[b0]" in merged.from_current
    assert merged.from_request == ("items[b3]",)


def test_an_item_added_after_one_the_other_side_removed_stays_in_its_place() -> None:
    base = _base(3)
    b0, b1, b2 = base["items"]
    current = {**base, "items": [b0, b2]}  # b1 removed
    requested = {**base, "items": [b0, b1, _item("n"), b2]}
    merged = merge(base, current, requested)
    assert isinstance(merged, Merged)
    assert merged.content["items"] == [b0, _item("n"), b2]
    assert merged.record(base_version=3, onto_version=5) == {
        "baseVersion": 3,
        "appliedOntoVersion": 5,
        "fromRequest": ["items[n]"],
        "fromCurrent": ["items[b1]"],
    }


def test_a_merge_with_nothing_changed_since_is_the_request() -> None:
    base = _base(3)
    requested = {**base, "notes": "mine", "items": [base["items"][2], _item("n")]}
    merged = merge(base, base, requested)
    assert isinstance(merged, Merged)
    assert merged.content == {name: requested[name] for name in [*MERGED_FIELDS, "items"]}


def test_a_snapshot_written_before_item_ids_cannot_be_merged_on() -> None:
    assert has_item_ids(_base(2))
    assert has_item_ids(_base(0))
    old = {**_base(2), "items": [{"type": "OTHER", "description": "x", "quantity": 1}]}
    assert not has_item_ids(old)


def test_the_input_form_drops_line_totals_and_what_no_client_sets() -> None:
    form = {**_base(1), "pricing": {"total": "1.00"}, "version": 3}
    form["items"] = [{**_item("b0"), "lineTotal": "1.00"}]
    assert input_form(form) == {**_base(0), "items": [_item("b0")]}
