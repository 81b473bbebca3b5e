"""After a tripquote burst: is every save whole, and is every refused save absent?

Reads tripquote's tables (``quotes``, ``quote_items``, ``quote_revisions``, as in the
contract) right after the burst:

- every acknowledged save (201/200) is there with its version, its notes, all its items and
  one revision per version (no partial write);
- every refused update (definite 4xx/5xx) left the quote at its old version (no half write);
- no refused create left a quote behind (each create's notes are unique: ``bench create N``).

Each request carries ``X-Correlation-ID: bench-<create|update>-<seq>``, so every problem
listed can be looked up in the server's log (``bench/results/logs-*/``).

Requests that ended in an exception (status 0) have an unknown outcome and are only counted.
"""

from __future__ import annotations

from typing import Any

import asyncpg

from bench.loadgen import Burst
from bench.payloads import Fixture
from bench.world import PlanItem

_ROWS = """
SELECT q.id, q.version, q.notes,
    (SELECT count(*) FROM quote_items i WHERE i.quote_id = q.id) AS items,
    (SELECT count(*) FROM quote_revisions r WHERE r.quote_id = q.id) AS revisions,
    (SELECT max(r.version) FROM quote_revisions r WHERE r.quote_id = q.id) AS last_revision
FROM quotes q WHERE q.id = ANY($1::varchar[])
"""


async def verify_burst(
    dsn: str, plan: list[PlanItem], burst: Burst, fixtures: list[Fixture]
) -> dict[str, Any]:
    """Compare each save's outcome with the database; return counts and examples."""
    ids: list[str] = []
    refused_create_notes: dict[str, tuple[int, str]] = {}  # notes -> (status, errorCode)
    for item, result in zip(plan, burst.results, strict=True):
        if item.kind == "update" and item.quote is not None:
            ids.append(item.quote.id)
        elif result.status == 201 and isinstance(result.body, dict):
            ids.append(str(result.body["quoteId"]))
        elif result.status >= 400:
            refused_create_notes[f"bench create {item.seq}"] = (result.status, result.code)
    try:
        conn = await asyncpg.connect(dsn)
    except Exception as exc:
        return {"passed": None, "summary": f"skipped: cannot connect ({type(exc).__name__})"}
    try:
        rows = {r["id"]: r for r in await conn.fetch(_ROWS, ids)}
        leaked_rows = await conn.fetch(
            "SELECT id, notes, version FROM quotes WHERE notes = ANY($1::text[])",
            list(refused_create_notes),
        )
    except asyncpg.PostgresError as exc:
        return {"passed": None, "summary": f"skipped: schema differs ({exc.sqlstate})"}
    finally:
        await conn.close()

    problems: dict[str, list[str]] = {
        "missing": [],
        "wrong_version": [],
        "partial_items": [],
        "revisions": [],
        "refused_but_changed": [],
        "wrong_notes": [],
        "refused_creates_present": [],
    }
    checked = unknown = 0
    for item, result in zip(plan, burst.results, strict=True):
        if result.status == 0:
            unknown += 1
            continue
        if item.kind == "update" and item.quote is not None:
            quote_id = item.quote.id
            expected = item.version + 1 if result.status == 200 else item.version
            notes = f"bench update {item.seq}" if result.status == 200 else None
        elif result.status == 201 and isinstance(result.body, dict):
            quote_id, expected, notes = str(result.body["quoteId"]), 1, f"bench create {item.seq}"
        else:
            continue
        checked += 1
        found = rows.get(quote_id)
        if found is None:
            problems["missing"].append(quote_id)
            continue
        if found["version"] != expected:
            bucket = "wrong_version" if result.status < 300 else "refused_but_changed"
            problems[bucket].append(
                f"{quote_id} (X-Correlation-ID bench-update-{item.seq}) answered "
                f"{result.status} {result.code}: version {found['version']} != {expected}"
            )
        if notes is not None and found["notes"] != notes:
            problems["wrong_notes"].append(quote_id)
        if found["items"] != fixtures[item.fixture].item_count:
            problems["partial_items"].append(
                f"{quote_id}: {found['items']} items, expected {fixtures[item.fixture].item_count}"
            )
        if found["revisions"] != found["version"] or found["last_revision"] != found["version"]:
            problems["revisions"].append(
                f"{quote_id}: {found['revisions']} revisions, last "
                f"{found['last_revision']}, version {found['version']}"
            )
    for leaked in leaked_rows:
        status, code = refused_create_notes[leaked["notes"]]
        seq = leaked["notes"].rsplit(" ", 1)[1]
        problems["refused_creates_present"].append(
            f"quote {leaked['id']} (X-Correlation-ID bench-create-{seq}) answered {status} "
            f"{code} but committed"
        )
    counts = {name: len(values) for name, values in problems.items()}
    passed = not any(counts.values())
    summary = f"{'PASS' if passed else 'FAIL'} checked={checked} unknown={unknown} " + " ".join(
        f"{k}={v}" for k, v in counts.items()
    )
    return {
        "passed": passed,
        "checked": checked,
        "unknown_outcome": unknown,
        **counts,
        "summary": summary,
        "examples": {k: v[:3] for k, v in problems.items() if v},
    }
