"""The quote domain model: frozen values and pure decisions, no I/O.

``Draft`` is what a client sets, validated and priced; ``Quote`` is a stored quote as the
store read it (its status already as of the read: a SENT quote past ``expiresAt`` is EXPIRED);
``apply_patch`` merges a PATCH into a quote; ``transition`` asks the lifecycle table
(``lifecycle.py``) what an operation decides.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from tripquote.errors import QuoteValidationFailed, TripquoteError, field_error
from tripquote.ids import new_id
from tripquote.money import fmt_money, plain_decimal
from tripquote.quotes.lifecycle import (
    Operation,
    QuoteStatus,
    compute_expires_at,
    items_needed,
    local_today,
    target_of,
)
from tripquote.quotes.pricing import check_client_pricing, price_quote
from tripquote.quotes.rules import (
    Limits,
    QuoteDraft,
    changed_fields,
    merge_patch,
    validate_quote,
)
from tripquote.quotes.schemas import MAX_EXPIRES_IN_DAYS
from tripquote.quotes.serialize import INPUT_FIELDS, fmt_instant


@dataclass(frozen=True, slots=True)
class Item:
    """One priced item: ``line_total`` = quantity * unit price, in the currency's minor units;
    ``id`` stays the item's from version to version (a UUID; None on an edit's item sent
    without one: the store gives it its id, ``sql.ITEMS_IN``)."""

    id: str | None
    type: str
    description: str
    quantity: int
    unit_price: Decimal
    line_total: Decimal
    details: dict[str, Any]

    def to_api(self, currency: str) -> dict[str, Any]:
        """The item in API form (amounts as strings in the currency's minor units)."""
        return {
            "id": self.id,
            "type": self.type,
            "description": self.description,
            "quantity": self.quantity,
            "unitPrice": fmt_money(self.unit_price, currency),
            "lineTotal": fmt_money(self.line_total, currency),
            "details": self.details,
        }


@dataclass(frozen=True, slots=True)
class Draft:
    """What a client sets on a quote, validated and priced; ``client_id`` None keeps the
    stored client (a full-form PATCH that leaves it out)."""

    client_id: str | None
    trip_name: str
    destination: str
    start_date: date
    end_date: date
    travelers: int
    currency: str
    markup_percent: Decimal
    discount: Decimal
    expires_in_days: int
    notes: str | None
    items: tuple[Item, ...]
    subtotal: Decimal
    markup_amount: Decimal
    total: Decimal

    def content_api(self) -> dict[str, Any]:
        """The client-set part of the API form, from ``tripName`` to ``pricing``."""
        currency = self.currency
        discount = fmt_money(self.discount, currency)
        return {
            "tripName": self.trip_name,
            "destination": self.destination,
            "startDate": self.start_date.isoformat(),
            "endDate": self.end_date.isoformat(),
            "travelers": self.travelers,
            "currency": currency,
            "markupPercent": format(self.markup_percent.quantize(Decimal("0.01")), "f"),
            "discount": discount,
            "expiresInDays": self.expires_in_days,
            "notes": self.notes,
            "items": [item.to_api(currency) for item in self.items],
            "pricing": {
                "subtotal": fmt_money(self.subtotal, currency),
                "markupAmount": fmt_money(self.markup_amount, currency),
                "discount": discount,
                "total": fmt_money(self.total, currency),
            },
        }


def with_item_ids(draft: QuoteDraft, known: Sequence[str] | None) -> QuoteDraft:
    """``draft`` (validated: no id names two items, ``rules.validate_quote``) with its item ids
    checked: with ``known`` (a create: none; a merged save: the ids of the version it was made
    on) each is one of them, and an item sent without one gets a new one (``ids.new_id``).
    ``known`` None (an edit): the ids sent are the store's to check and complete
    (``sql.ITEMS_IN``). QUOTE_VALIDATION_FAILED at each ``items[i].id`` (``unknown_id``)."""
    if known is None:
        return draft
    allowed = set(known)
    errors = [
        unknown_item_id(index)
        for index, item in enumerate(draft.items)
        if item.id is not None and item.id not in allowed
    ]
    if errors:
        raise QuoteValidationFailed(details={"errors": errors})
    items = tuple(item if item.id is not None else item.with_id(new_id()) for item in draft.items)
    return replace(draft, items=items)


def unknown_item_id(index: int) -> dict[str, str]:
    """The error entry of item ``index`` sent with an id the version edited has no item of."""
    return field_error(
        f"items[{index}].id", "unknown_id", "id is not an item of the version edited."
    )


def price(draft: QuoteDraft, client_id: str | None, *, whole: bool = True) -> Draft:
    """The priced ``Draft`` of validated input (``with_item_ids``); PRICING_VALIDATION_FAILED,
    ITEMS_INCONSISTENT. ``whole=False``: without the rules between fields, and no client-sent
    pricing compared (``pricing.price_quote``)."""
    pricing = price_quote(draft, whole=whole)
    if whole:
        check_client_pricing(draft, pricing)
    return Draft(
        client_id=client_id,
        trip_name=draft.trip_name,
        destination=draft.destination,
        start_date=draft.start_date,
        end_date=draft.end_date,
        travelers=draft.travelers,
        currency=draft.currency,
        markup_percent=draft.markup_percent,
        discount=pricing.discount,
        expires_in_days=draft.expires_in_days,
        notes=draft.notes,
        items=tuple(
            Item(
                id=item.id,
                type=item.type.value,
                description=item.description,
                quantity=item.quantity,
                unit_price=item.unit_price,
                line_total=line_total,
                details=item.details,
            )
            for item, line_total in zip(draft.items, pricing.line_totals, strict=True)
        ),
        subtotal=pricing.subtotal,
        markup_amount=pricing.markup_amount,
        total=pricing.total,
    )


def priced_or_error(draft: QuoteDraft, client_id: str | None) -> Draft | TripquoteError:
    """``price`` with its error returned: the note's order reports it after the client check."""
    try:
        return price(draft, client_id)
    except TripquoteError as error:
        return error


_KEPT_CLIENT = "-"
"""Stands in for the stored client while a full-form PATCH without ``clientId`` is validated
(a valid id; the store keeps the stored client)."""

_FULL_FORM = tuple(name for name in INPUT_FIELDS if name != "clientId")


def full_form(patch: dict[str, Any], limits: Limits) -> Draft | TripquoteError | None:
    """A PATCH that sets every client-settable field (``clientId`` optional) does not depend
    on the stored quote: its Draft (or its validation or pricing error); None for any other."""
    if any(name not in patch for name in _FULL_FORM):
        return None
    client_id = patch.get("clientId")
    try:
        draft = validate_quote(merge_patch({"clientId": _KEPT_CLIENT}, patch), limits=limits)
        draft = with_item_ids(draft, None)
    except TripquoteError as error:
        return error
    return priced_or_error(draft, draft.client_id if client_id is not None else None)


@dataclass(frozen=True, slots=True)
class Change:
    """What a transition decides: the new status, the items the quote needs, and on SEND
    when it was sent, the agency's local date then (``today``) and the instant that ends an
    offer valid ``days`` days after it, for every ``days`` an offer can be valid (0: it ends
    with ``today``), in the agency's zone."""

    operation: Operation
    status: QuoteStatus
    items_needed: int = 0
    sent_at: datetime | None = None
    today: date | None = None
    expiries: Mapping[int, datetime] | None = None


def transition(operation: Operation, now: datetime, timezone: str | None) -> Change:
    """The lifecycle's decision for ``operation`` at ``now`` (``timezone``: the agency's,
    needed to send); whether the quote's status allows it is the store's guard, and so are
    the send's rules on the stored trip (``sql.trip_started``, ``sql.offer_days``)."""
    change = Change(operation, target_of(operation), items_needed(operation))
    if operation is not Operation.SEND:
        return change
    assert timezone is not None
    expiries = {
        days: compute_expires_at(now, days, timezone) for days in range(MAX_EXPIRES_IN_DAYS + 1)
    }
    return replace(change, sent_at=now, today=local_today(now, timezone), expiries=expiries)


@dataclass(frozen=True, slots=True)
class Quote:
    """A stored quote; ``status`` is as of the read (SENT past ``expires_at``: EXPIRED)."""

    id: str
    agent_id: str
    client_id: str
    draft: Draft
    status: QuoteStatus
    version: int
    created_at: datetime
    last_modified_by: str
    last_modified_at: datetime
    sent_at: datetime | None
    expires_at: datetime | None

    def to_api(self) -> dict[str, Any]:
        """The quote in API form (the revision snapshot has exactly this shape)."""
        return {
            "id": self.id,
            "agentId": self.agent_id,
            "clientId": self.client_id,
            **self.draft.content_api(),
            "status": self.status.value,
            "version": self.version,
            "createdAt": fmt_instant(self.created_at),
            "lastModifiedBy": self.last_modified_by,
            "lastModifiedAt": fmt_instant(self.last_modified_at),
            "sentAt": fmt_instant(self.sent_at),
            "expiresAt": fmt_instant(self.expires_at),
        }

    def input(self) -> dict[str, Any]:
        """The client-settable fields in request form: what a PATCH is merged into."""
        d = self.draft
        return {
            "clientId": self.client_id,
            "tripName": d.trip_name,
            "destination": d.destination,
            "startDate": d.start_date.isoformat(),
            "endDate": d.end_date.isoformat(),
            "travelers": d.travelers,
            "currency": d.currency,
            "markupPercent": plain_decimal(d.markup_percent),
            "discount": plain_decimal(d.discount),
            "expiresInDays": d.expires_in_days,
            "notes": d.notes,
            "items": [
                {
                    "id": item.id,
                    "type": item.type,
                    "description": item.description,
                    "quantity": item.quantity,
                    "unitPrice": plain_decimal(item.unit_price),
                    "details": item.details,
                }
                for item in d.items
            ],
        }


COMPARED_FIELDS: tuple[str, ...] = (*INPUT_FIELDS, "status")
"""What ``changes_between`` compares: the fields a client sets, and the status."""


def changes_between(older: Mapping[str, Any] | None, newer: Mapping[str, Any]) -> list[str]:
    """The fields that changed from one version of a quote to another, given their snapshots
    (API form): the sorted names of ``COMPARED_FIELDS`` whose values differ as JSON
    (``rules.changed_fields``); [] when there is no older version. The one rule for a 409's
    ``changedFields`` and a history entry's."""
    if older is None:
        return []
    return changed_fields(
        {k: older.get(k) for k in COMPARED_FIELDS}, {k: newer[k] for k in COMPARED_FIELDS}
    )


def apply_patch(quote: Quote, patch: dict[str, Any], limits: Limits) -> QuoteDraft:
    """The quote with a PATCH applied (top-level replace, ``items`` whole), validated as a
    whole like a create (``with_item_ids``: the ids the store checks and completes);
    QUOTE_VALIDATION_FAILED, CURRENCY_INVALID, QUOTA_EXCEEDED."""
    draft = validate_quote(merge_patch(quote.input(), patch), limits=limits)
    return with_item_ids(draft, None)
