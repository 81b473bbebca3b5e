"""What "nothing half-written" means, checked on the stored rows after a fault.

For every quote: its items' line totals (each ``quantity * unitPrice``) sum to its subtotal and
``total = subtotal + markupAmount - discount``; its revisions are exactly versions 1..version;
the latest revision's snapshot equals the stored quote (key fields and items). And every save
the service acknowledged (2xx) is in the history with what the client sent.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Ack:
    """A save the service answered 2xx for: the quote, the version it reported, the trip name
    the request carried."""

    quote_id: str
    version: int
    trip_name: str


async def check_no_partial_writes(dsn: str) -> dict[str, int]:
    """Assert the invariants above on every quote of the database at ``dsn``; the counts seen."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        quotes = await conn.fetch("SELECT * FROM quotes ORDER BY id")
        items: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for item in await conn.fetch("SELECT * FROM quote_items ORDER BY quote_id, position"):
            items[item["quote_id"]].append(item)
        revision_rows = await conn.fetch(
            "SELECT quote_id, version, status, snapshot FROM quote_revisions "
            "ORDER BY quote_id, version"
        )
        revisions: dict[str, list[asyncpg.Record]] = defaultdict(list)
        for rev in revision_rows:
            revisions[rev["quote_id"]].append(rev)
    finally:
        await conn.close()

    problems: list[str] = []
    for row in quotes:
        quote_id = row["id"]
        own_items = items.pop(quote_id, [])
        own_revisions = revisions.pop(quote_id, [])
        problems += _check_quote(row, own_items, own_revisions)
    problems += [f"items of a missing quote {qid}" for qid in items]
    problems += [f"revisions of a missing quote {qid}" for qid in revisions]
    assert not problems, "partial writes:\n" + "\n".join(problems[:20])
    return {"quotes": len(quotes), "revisions": len(revision_rows)}


def _check_quote(
    row: asyncpg.Record, items: list[asyncpg.Record], revisions: list[asyncpg.Record]
) -> list[str]:
    quote_id, version = row["id"], int(row["version"])
    problems = []
    if [i["position"] for i in items] != list(range(len(items))):
        problems.append(f"{quote_id}: item positions {[i['position'] for i in items]}")
    for item in items:
        if item["line_total"] != item["quantity"] * item["unit_price"]:
            problems.append(f"{quote_id}: line total {item['line_total']} of item {item['id']}")
    line_sum = sum((i["line_total"] for i in items), Decimal(0))
    if line_sum != row["subtotal"]:
        problems.append(f"{quote_id}: items sum to {line_sum}, subtotal is {row['subtotal']}")
    if row["subtotal"] + row["markup_amount"] - row["discount"] != row["total"]:
        problems.append(f"{quote_id}: total {row['total']} does not add up")
    versions = [int(r["version"]) for r in revisions]
    if versions != list(range(1, version + 1)):
        problems.append(f"{quote_id}: version {version} but revisions {versions}")
        return problems
    snapshot = _json(revisions[-1]["snapshot"])
    problems += _compare_snapshot(row, items, snapshot)
    if revisions[-1]["status"] != row["status"]:
        problems.append(f"{quote_id}: latest revision status {revisions[-1]['status']}")
    return problems


def _json(value: Any) -> dict[str, Any]:
    loaded = json.loads(value) if isinstance(value, str) else value
    assert isinstance(loaded, dict)
    return loaded


def _compare_snapshot(
    row: asyncpg.Record, items: list[asyncpg.Record], snapshot: dict[str, Any]
) -> list[str]:
    quote_id = row["id"]
    stored = {
        "id": row["id"],
        "version": row["version"],
        "status": row["status"],
        "tripName": row["trip_name"],
        "destination": row["destination"],
        "travelers": row["travelers"],
        "currency": row["currency"],
        "clientId": row["client_id"],
        "startDate": row["start_date"].isoformat(),
        "endDate": row["end_date"].isoformat(),
        "lastModifiedBy": row["last_modified_by"],
        "subtotal": row["subtotal"],
        "markupAmount": row["markup_amount"],
        "discount": row["discount"],
        "total": row["total"],
        "items": [
            (i["type"], i["description"], i["quantity"], i["unit_price"], i["line_total"])
            for i in items
        ],
    }
    pricing = snapshot.get("pricing") or {}
    seen = {
        **{key: snapshot.get(key) for key in stored if key in snapshot},
        **{key: Decimal(str(pricing.get(key))) for key in ("subtotal", "markupAmount", "total")},
        "discount": Decimal(str(pricing.get("discount"))),
        "items": [
            (
                i["type"],
                i["description"],
                i["quantity"],
                Decimal(i["unitPrice"]),
                Decimal(i["lineTotal"]),
            )
            for i in snapshot.get("items", [])
        ],
    }
    return [
        f"{quote_id}: latest revision says {key}={seen.get(key)!r}, stored {value!r}"
        for key, value in stored.items()
        if seen.get(key) != value
    ]


async def check_acknowledged(dsn: str, acks: list[Ack]) -> None:
    """Assert every acknowledged save is in its quote's history with the trip name sent."""
    conn = await asyncpg.connect(dsn, timeout=10)
    try:
        rows = await conn.fetch("SELECT quote_id, version, snapshot FROM quote_revisions")
    finally:
        await conn.close()
    history = {(r["quote_id"], int(r["version"])): _json(r["snapshot"]) for r in rows}
    lost = [
        ack
        for ack in acks
        if history.get((ack.quote_id, ack.version), {}).get("tripName") != ack.trip_name
    ]
    assert not lost, f"{len(lost)} acknowledged saves are not stored: {lost[:5]}"
