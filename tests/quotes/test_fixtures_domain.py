"""The shared fixtures through the pure domain: validate → price → client-pricing check.

Client ownership (a database step between validation and pricing) is out of scope here.
Fixtures: $TRIPQUOTE_FIXTURES_DIR, else the first ``shared/fixtures`` found beside the repository
or any of its parents.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tripquote.errors import TripquoteError
from tripquote.json import dumps, loads
from tripquote.money import minor_units
from tripquote.quotes.pricing import Pricing, check_client_pricing, price_quote
from tripquote.quotes.rules import Limits, draft_to_input, validate_quote

LIMITS = Limits(
    currencies=frozenset({"USD", "EUR", "GBP", "CAD", "AUD", "CHF", "JPY"}), max_items=100
)


def _fixtures_dir() -> Path:
    configured = os.environ.get("TRIPQUOTE_FIXTURES_DIR")
    if configured:
        return Path(configured)
    for ancestor in Path(__file__).resolve().parents:
        candidate = ancestor / "shared" / "fixtures"
        if (candidate / "quotes.json").is_file():
            return candidate
    raise FileNotFoundError(
        "shared/fixtures not found beside the repository; set TRIPQUOTE_FIXTURES_DIR"
    )


def _load(name: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = json.loads((_fixtures_dir() / name).read_text("utf-8"))
    assert cases, f"{name} is empty"
    return cases


GOOD = _load("quotes.json")
BAD = _load("bad-requests.json")


def _raw(request: dict[str, Any]) -> bytes:
    """The request as a client sends it: JSON text, parsed by our own Decimal-exact loads."""
    return json.dumps(request).replace("$CLIENT_ID", "client-fixture").encode()


def _save(raw: bytes) -> Pricing:
    """The domain stages of a save, in the service's order."""
    draft = validate_quote(loads(raw), limits=LIMITS)
    pricing = price_quote(draft)
    check_client_pricing(draft, pricing)
    return pricing


@pytest.mark.parametrize("case", GOOD, ids=[case["name"] for case in GOOD])
def test_good_quote_prices_exactly(case: dict[str, Any]) -> None:
    pricing = _save(_raw(case["request"]))
    expected = case["expect"]["pricing"]
    assert pricing.as_json() == {key: expected[key] for key in pricing.as_json()}
    assert pricing.line_totals_json() == expected["lineTotals"]
    # The rendered body carries the same strings: no float crept in on the way out.
    assert loads(dumps(pricing.as_json())) == pricing.as_json()


@pytest.mark.parametrize("case", GOOD, ids=[case["name"] for case in GOOD])
def test_good_quote_round_trips_through_its_input_form(case: dict[str, Any]) -> None:
    draft = validate_quote(loads(_raw(case["request"])), limits=LIMITS)
    assert validate_quote(loads(dumps(draft_to_input(draft))), limits=LIMITS) == draft


@pytest.mark.parametrize("case", GOOD, ids=[case["name"] for case in GOOD])
def test_good_quote_accepts_its_own_totals_and_rejects_one_minor_unit_off(
    case: dict[str, Any],
) -> None:
    expected = case["expect"]["pricing"]
    request = {**case["request"], "pricing": dict(expected)}
    _save(_raw(request))
    one_minor_unit = Decimal(1).scaleb(-minor_units(case["request"]["currency"]))
    off = format(Decimal(expected["total"]) + one_minor_unit, "f")
    with pytest.raises(TripquoteError) as caught:
        _save(_raw({**request, "pricing": {**expected, "total": off}}))
    assert caught.value.code == "ITEMS_INCONSISTENT"
    assert [error["path"] for error in caught.value.details["errors"]] == ["pricing.total"]


@pytest.mark.parametrize("case", BAD, ids=[case["name"] for case in BAD])
def test_bad_request_fails_at_the_first_failing_stage(case: dict[str, Any]) -> None:
    with pytest.raises(TripquoteError) as caught:
        _save(_raw(case["request"]))
    error = caught.value
    assert error.code == case["expect"]["errorCode"]
    paths = [entry["path"] for entry in error.details["errors"]]
    assert case["expect"]["path"] in paths, paths
