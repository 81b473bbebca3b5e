"""The three-way merge of a stale save (issue 17): pure functions on a quote's API form.

A save made on version N of a quote now at version M > N, asking for a merge (``Prefer:
merge``, RFC 7240), compares three forms of the quote: ``base`` (the snapshot of version N),
``current`` (version M, what others saved since) and ``requested`` (base with the save's PATCH
applied, validated and priced). Each of the client-set top-level fields (``MERGED_FIELDS``)
and each item, by its id, is changed by a side when its value differs from the base's; an
item is added, removed, changed (its content) or moved (its place among the base's items that
side kept, outside their longest common subsequence with the base's order). The merge
succeeds when nothing both sides changed (the same value set twice too): a field or item
comes from the side that changed it; the items' order from the side that moved items (both
moving items is a collision on the order, ``path`` ``items`` without ``itemId``), each side's
added items after the base item that precedes them on that side (the two sides' additions at
one place in the order of their first ids, so that merging A then B and B then A agree).
The merged form is validated and priced again as a whole by the caller (``merge_save``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tripquote.quotes.rules import same_json
from tripquote.quotes.serialize import INPUT_FIELDS

MERGED_FIELDS = tuple(name for name in INPUT_FIELDS if name != "items")
"""The top-level fields merged one by one; ``items`` is merged item by item."""

ORDER = "items order"
"""How a merge record names the items' order."""

_START = ""
"""The place before the first base item (no item id is empty)."""


@dataclass(frozen=True, slots=True)
class Collision:
    """A field (``path``), an item (``path`` ``items`` and ``item_id``) or the items' order
    (``path`` ``items``, no ``item_id``: lists of ids) changed by both sides: its value in the
    base, the current version and the request (None: absent, e.g. an item removed)."""

    path: str
    item_id: str | None
    base: Any
    current: Any
    requested: Any

    def to_api(self) -> dict[str, Any]:
        """``{path, itemId?, base, current, requested}`` (a 409's ``details.conflicts``)."""
        entry: dict[str, Any] = {"path": self.path}
        if self.path == "items":
            entry["itemId"] = self.item_id
        return {**entry, "base": self.base, "current": self.current, "requested": self.requested}


@dataclass(frozen=True, slots=True)
class Merged:
    """A merge that succeeded: the merged client-set fields (``MERGED_FIELDS`` and ``items``,
    API form) and what came from each side: field names, ``items[<id>]``, ``ORDER``."""

    content: dict[str, Any]
    from_request: tuple[str, ...]
    from_current: tuple[str, ...]

    def record(self, *, base_version: int, onto_version: int) -> dict[str, Any]:
        """What the merged save's revision keeps (``quote_revisions.merge``)."""
        return {
            "baseVersion": base_version,
            "appliedOntoVersion": onto_version,
            "fromRequest": list(self.from_request),
            "fromCurrent": list(self.from_current),
        }


@dataclass(frozen=True, slots=True)
class _Side:
    """What one side changed against the base: fields, and items by id with their kind."""

    fields: frozenset[str]
    items: Mapping[str, str]  # id -> added / removed / changed / moved
    moved: bool
    by_id: Mapping[str, Mapping[str, Any]]
    order: tuple[str, ...]


def has_item_ids(form: Mapping[str, Any]) -> bool:
    """Whether every item of ``form`` has an id (snapshots written before ids had none)."""
    return all(isinstance(item, Mapping) and "id" in item for item in form["items"])


def merge(
    base: Mapping[str, Any], current: Mapping[str, Any], requested: Mapping[str, Any]
) -> Merged | list[Collision]:
    """The merge of ``requested`` and ``current``, both made from ``base`` (API forms whose
    items have ids); the collisions, in field then item order, when any."""
    base_items = {item["id"]: item for item in base["items"]}
    base_order = tuple(base_items)
    mine = _side(base, base_items, base_order, requested)
    theirs = _side(base, base_items, base_order, current)
    collisions = [
        Collision(name, None, base[name], current[name], requested[name])
        for name in MERGED_FIELDS
        if name in mine.fields and name in theirs.fields
    ]
    collisions += [
        Collision(
            "items",
            item_id,
            base_items[item_id],
            theirs.by_id.get(item_id),
            mine.by_id.get(item_id),
        )
        for item_id in base_order
        if item_id in mine.items and item_id in theirs.items
    ]
    if mine.moved and theirs.moved:
        collisions.append(Collision("items", None, list(base_order), theirs.order, mine.order))
    if collisions:
        return collisions
    content = {
        name: (requested if name in mine.fields else current)[name] for name in MERGED_FIELDS
    }
    content["items"] = _merged_items(base_order, base_items, mine, theirs)
    from_request = [name for name in MERGED_FIELDS if name in mine.fields]
    from_current = [name for name in MERGED_FIELDS if name in theirs.fields]
    from_request += [f"items[{item_id}]" for item_id in mine.items]
    from_current += [f"items[{item_id}]" for item_id in theirs.items]
    from_request += [ORDER] if mine.moved else []
    from_current += [ORDER] if theirs.moved else []
    return Merged(content, tuple(from_request), tuple(from_current))


def _side(
    base: Mapping[str, Any],
    base_items: Mapping[str, Mapping[str, Any]],
    base_order: tuple[str, ...],
    form: Mapping[str, Any],
) -> _Side:
    fields = frozenset(name for name in MERGED_FIELDS if not same_json(base[name], form[name]))
    by_id = {item["id"]: item for item in form["items"]}
    order = tuple(by_id)
    items: dict[str, str] = {}
    for item_id in base_order:
        if item_id not in by_id:
            items[item_id] = "removed"
        elif not same_json(base_items[item_id], by_id[item_id]):
            items[item_id] = "changed"
    kept = [item_id for item_id in order if item_id in base_items]
    in_place = set(_common_subsequence([i for i in base_order if i in by_id], kept))
    for item_id in kept:
        if item_id not in in_place:
            items.setdefault(item_id, "moved")
    for item_id in order:
        if item_id not in base_items:
            items[item_id] = "added"
    return _Side(fields, items, len(in_place) < len(kept), by_id, order)


def _common_subsequence(a: Sequence[str], b: Sequence[str]) -> list[str]:
    """A longest common subsequence of ``a`` and ``b`` (dynamic programming; the first one
    in ``b``'s order on ties, so the same inputs always give the same answer)."""
    n, m = len(a), len(b)
    table = [[0] * (m + 1) for _ in range(n + 1)]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            table[i][j] = (
                table[i + 1][j + 1] + 1 if a[i] == b[j] else max(table[i + 1][j], table[i][j + 1])
            )
    found: list[str] = []
    i = j = 0
    while i < n and j < m:
        if a[i] == b[j]:
            found.append(a[i])
            i, j = i + 1, j + 1
        elif table[i][j + 1] >= table[i + 1][j]:
            j += 1
        else:
            i += 1
    return found


def _merged_items(
    base_order: tuple[str, ...],
    base_items: Mapping[str, Mapping[str, Any]],
    mine: _Side,
    theirs: _Side,
) -> list[Mapping[str, Any]]:
    """The merged items: the base items neither side removed, in the order of the side that
    moved items (else the base's), each as the side that changed it has it; then each side's
    added items at their place (``merge``)."""
    mover = mine if mine.moved else theirs if theirs.moved else None
    skeleton = [i for i in mover.order if i in base_items] if mover is not None else base_order
    places = {_START, *skeleton}
    runs: dict[str, list[list[Mapping[str, Any]]]] = {}
    for side in (mine, theirs):
        added: dict[str, list[Mapping[str, Any]]] = {}
        place = _START
        for item_id in side.order:
            if item_id not in base_items:
                added.setdefault(place, []).append(side.by_id[item_id])
            elif item_id in places:
                place = item_id
        for at, items in added.items():
            runs.setdefault(at, []).append(items)
    merged: list[Mapping[str, Any]] = []
    for place in [_START, *skeleton]:
        if place != _START and place not in mine.items.keys() | theirs.items.keys():
            merged.append(base_items[place])
        elif place != _START:
            kind_mine, kind_theirs = mine.items.get(place), theirs.items.get(place)
            if "removed" not in (kind_mine, kind_theirs):
                merged.append((mine if kind_mine else theirs).by_id[place])
        for items in sorted(runs.get(place, []), key=lambda run: str(run[0]["id"])):
            merged.extend(items)
    return merged


def input_form(form: Mapping[str, Any]) -> dict[str, Any]:
    """The client-set fields of an API form (a snapshot or a merge's ``content``) in request
    form, what ``rules.validate_quote`` takes: items without their ``lineTotal``."""
    return {
        **{name: form[name] for name in MERGED_FIELDS},
        "items": [
            {key: value for key, value in item.items() if key != "lineTotal"}
            for item in form["items"]
        ],
    }
