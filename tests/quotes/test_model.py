"""model: a quote's API form (the snapshot's shape), PATCH merging, full forms, transitions."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tests.quotes.test_fixtures_domain import GOOD, _raw
from tripquote.errors import QuoteValidationFailed
from tripquote.json import loads
from tripquote.quotes.lifecycle import Operation, QuoteStatus, compute_expires_at
from tripquote.quotes.model import Draft, Quote, apply_patch, full_form, price, transition
from tripquote.quotes.rules import Limits, validate_quote
from tripquote.quotes.serialize import API_FIELDS, INPUT_FIELDS

LIMITS = Limits(frozenset({"USD", "EUR", "GBP", "CAD", "AUD", "CHF", "JPY"}), 100)
NOW = datetime(2027, 3, 1, 10, 0, tzinfo=UTC)


def _quote(request: dict[str, Any], status: QuoteStatus = QuoteStatus.DRAFT) -> Quote:
    content = validate_quote(loads(_raw(request)), limits=LIMITS)
    draft = price(content, content.client_id)
    return Quote(
        id="q-1", agent_id="a-1", client_id=content.client_id, draft=draft, status=status,
        version=3, created_at=NOW, last_modified_by="a-1", last_modified_at=NOW,
        sent_at=None, expires_at=None,
    )  # fmt: skip


@pytest.mark.parametrize("case", GOOD, ids=[case["name"] for case in GOOD])
def test_the_api_form_has_every_field_in_order(case: dict[str, Any]) -> None:
    quote = _quote(case["request"]).to_api()
    assert tuple(quote) == API_FIELDS
    assert quote["pricing"] == {
        k: v for k, v in case["expect"]["pricing"].items() if k in quote["pricing"]
    }


@pytest.mark.parametrize("case", GOOD, ids=[case["name"] for case in GOOD])
def test_a_patch_of_nothing_gives_back_the_same_content(case: dict[str, Any]) -> None:
    quote = _quote(case["request"])
    merged = apply_patch(quote, {"version": 3}, LIMITS)
    assert price(merged, merged.client_id) == quote.draft


def test_a_patch_replaces_top_level_fields_and_the_whole_item_list() -> None:
    quote = _quote(GOOD[0]["request"])
    merged = apply_patch(quote, {"notes": None, "items": quote.input()["items"][:1]}, LIMITS)
    assert (merged.notes, len(merged.items)) == (None, 1)
    with pytest.raises(QuoteValidationFailed):
        apply_patch(quote, {"tripName": None}, LIMITS)


def test_only_a_patch_setting_every_field_is_a_full_form() -> None:
    quote = _quote(GOOD[0]["request"])
    whole = {k: v for k, v in quote.input().items() if k != "clientId"}
    draft = full_form(whole, LIMITS)
    assert isinstance(draft, Draft)
    assert draft.client_id is None  # left out: the stored client stays
    assert full_form({k: v for k, v in whole.items() if k != "notes"}, LIMITS) is None
    assert isinstance(full_form({**whole, "travelers": 0}, LIMITS), QuoteValidationFailed)
    assert set(whole) == set(INPUT_FIELDS) - {"clientId"}


def test_sending_decides_when_it_was_sent_and_when_it_expires_by_its_days() -> None:
    change = transition(Operation.SEND, NOW, "Europe/Paris")
    assert (change.status, change.sent_at, change.items_needed) == (QuoteStatus.SENT, NOW, 1)
    assert change.expiries is not None
    # 0: an offer ending with the send's day (a trip starting tomorrow, sql.offer_days).
    assert sorted(change.expiries) == list(range(0, 91))
    assert change.expiries[14] == compute_expires_at(NOW, 14, "Europe/Paris")
    assert change.today == NOW.astimezone(ZoneInfo("Europe/Paris")).date()
    accept = transition(Operation.ACCEPT, NOW, None)
    assert (accept.status, accept.items_needed, accept.expiries) == (QuoteStatus.ACCEPTED, 0, None)
    assert accept.today is None
