"""Realistic save bodies built from the shared fixtures (``quotes.json``).

Looked up in this order: ``BENCH_FIXTURES``; ``shared/fixtures/quotes.json`` beside the
repository (where the team keeps it); ``bench/fixtures/quotes.json``, a copy shipped with the
bench so it also runs where ``shared/`` is absent. Six valid quotes (JPY/EUR/USD/CHF/GBP/CAD,
0 to 12 items) with their expected pricing.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

DEFAULT_FIXTURES = Path(__file__).with_name("fixtures") / "quotes.json"


@dataclass(frozen=True, slots=True)
class Fixture:
    """One fixture quote: the request (``clientId`` = ``$CLIENT_ID``) and its expected pricing."""

    name: str
    request: dict[str, Any]
    pricing: dict[str, Any]

    @property
    def item_count(self) -> int:
        """Number of items in the quote."""
        return len(self.request.get("items") or [])


def fixtures_path() -> Path:
    """Where the fixtures are read from (see the module docstring for the order)."""
    if env := os.environ.get("BENCH_FIXTURES"):
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "shared" / "fixtures" / "quotes.json"
        if candidate.is_file():
            return candidate
    return DEFAULT_FIXTURES


def load_fixtures(path: str | Path | None = None) -> list[Fixture]:
    """Load the valid (expected 2xx) fixtures with their expected pricing."""
    source = Path(path) if path else fixtures_path()
    raw = orjson.loads(source.read_bytes())
    fixtures = [
        Fixture(name=entry["name"], request=entry["request"], pricing=entry["expect"]["pricing"])
        for entry in raw
        if 200 <= int(entry.get("expect", {}).get("status", 0)) < 300
        and "pricing" in entry.get("expect", {})
    ]
    if not fixtures:
        raise ValueError(f"{source}: no valid fixture with expected pricing")
    return fixtures


def create_body(fixture: Fixture, *, client_id: str, seq: int) -> dict[str, Any]:
    """A create request: the fixture with its client and a per-request note."""
    body = copy.deepcopy(fixture.request)
    body["clientId"] = client_id
    body["notes"] = f"bench create {seq}"
    return body


def update_body(fixture: Fixture, *, version: int, seq: int) -> dict[str, Any]:
    """A full-form save (what an editor sends): every field but clientId, items replaced."""
    body = copy.deepcopy(fixture.request)
    body.pop("clientId", None)
    body["version"] = version
    body["tripName"] = f"{fixture.request['tripName']} r{seq}"
    body["notes"] = f"bench update {seq}"
    return body


def bare_body(fixture: Fixture, body: dict[str, Any]) -> dict[str, Any]:
    """The same body for the bare peer/limit, with the precomputed totals they store as-is."""
    bare = dict(body)
    bare["pricing"] = fixture.pricing
    line_totals = fixture.pricing.get("lineTotals") or []
    bare["items"] = [
        {**item, "lineTotal": line_totals[index]}
        for index, item in enumerate(body.get("items") or [])
    ]
    return bare
