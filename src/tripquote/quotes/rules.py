"""Quote rules: validation of a whole quote and PATCH merging (the lifecycle: lifecycle.py).

Pure functions on plain data. ``validate_quote`` runs the shape model (schemas.py) and the
cross-field rules and reports every failing field at once as ``details.errors`` entries
``{path, code, message}`` with JSON paths such as ``items[0].details.arriveAt``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from tripquote.errors import CurrencyInvalid, QuotaExceeded, QuoteValidationFailed, field_error
from tripquote.json import canonical
from tripquote.money import plain_decimal
from tripquote.quotes.schemas import (
    ItemType,
    OtherItemIn,
    QuoteIn,
    QuoteItemIn,
    parse_aware_datetime,
    parse_iso_date,
    whole,
)
from tripquote.validation import json_path

if TYPE_CHECKING:
    from tripquote.config import Settings

MAX_TRIP_DAYS = 365
MAX_REPORTED_ERRORS = 100
MAX_VERSION = 2**31 - 1  # the version column is a 32-bit integer

FieldError = dict[str, str]
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Limits:
    """Per-deployment validation limits: the currency whitelist and the item quota."""

    currencies: frozenset[str]
    max_items: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """Limits from TRIPQUOTE_CURRENCIES and TRIPQUOTE_MAX_ITEMS_PER_QUOTE."""
        return cls(frozenset(settings.currencies), settings.max_items_per_quote)


@dataclass(frozen=True, slots=True)
class ItemDraft:
    """One validated item; ``details`` is JSON-ready (dates and date-times as ISO 8601 text);
    ``id`` as sent (None: not sent; ``model.with_item_ids`` gives every item one)."""

    id: str | None
    type: ItemType
    description: str
    quantity: int
    unit_price: Decimal
    details: dict[str, Any]
    client_line_total: Decimal | None

    def with_id(self, item_id: str) -> ItemDraft:
        """This item under ``item_id`` (``dataclasses.replace`` costs four times this, per
        item of every create)."""
        return ItemDraft(
            item_id, self.type, self.description, self.quantity, self.unit_price, self.details,
            self.client_line_total,
        )  # fmt: skip


@dataclass(frozen=True, slots=True)
class QuoteDraft:
    """A validated quote before pricing; ``client_pricing`` holds totals the client sent."""

    client_id: str
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
    items: tuple[ItemDraft, ...]
    client_pricing: dict[str, Any] | None


# --- validation ---------------------------------------------------------------------------


def validate_quote(data: Any, *, limits: Limits, whole: bool = True) -> QuoteDraft:
    """camelCase input dict → QuoteDraft; QuoteValidationFailed, CurrencyInvalid, QuotaExceeded.

    ``whole=False`` leaves out the rules between top-level fields (``endDate`` after
    ``startDate``, the trip's length, every item's dates inside the trip): a merged save's
    requested side, whose other fields may yet come from the current version, is checked for
    them as a whole once merged."""
    if not isinstance(data, dict):
        raise _invalid([field_error("", "invalid_type", "The body must be a JSON object.")])
    model: QuoteIn | None = None
    errors: list[FieldError] = []
    try:
        model = QuoteIn.model_validate(data)
    except ValidationError as exc:
        errors = _shape_errors(exc)
    # Cross-field rules run on whatever parses, so one response lists every fault.
    seen = {error["path"] for error in errors}
    for error in _cross_field_errors(data, limits, whole=whole):
        if error["path"] not in seen:
            seen.add(error["path"])
            errors.append(error)
    if errors:
        if seen == {"currency"}:
            raise CurrencyInvalid(details={"errors": errors})
        raise _invalid(errors)
    assert model is not None
    if len(model.items) > limits.max_items:
        raise QuotaExceeded(
            f"A quote may have at most {limits.max_items} items.",
            details={"limit": limits.max_items, "current": len(model.items), "resource": "items"},
        )
    return _to_draft(model)


def _invalid(errors: list[FieldError]) -> QuoteValidationFailed:
    details: dict[str, Any] = {"errors": errors[:MAX_REPORTED_ERRORS]}
    if len(errors) > MAX_REPORTED_ERRORS:
        details["omittedErrors"] = len(errors) - MAX_REPORTED_ERRORS
    return QuoteValidationFailed(details=details)


def _to_draft(model: QuoteIn) -> QuoteDraft:
    items = tuple(
        ItemDraft(
            id=item.id,
            type=ItemType(item.type),
            description=item.description,
            quantity=item.quantity,
            unit_price=item.unit_price,
            details=_details_json(item),
            client_line_total=item.line_total,
        )
        for item in model.items
    )
    client_pricing = (
        model.pricing.model_dump(by_alias=True, exclude_none=True) if model.pricing else None
    )
    return QuoteDraft(
        client_id=model.client_id,
        trip_name=model.trip_name,
        destination=model.destination,
        start_date=model.start_date,
        end_date=model.end_date,
        travelers=model.travelers,
        currency=model.currency,
        markup_percent=model.markup_percent,
        discount=model.discount,
        expires_in_days=model.expires_in_days,
        notes=model.notes,
        items=items,
        client_pricing=client_pricing or None,
    )


def _details_json(item: QuoteItemIn) -> dict[str, Any]:
    """The item's details as stored: JSON names, no nulls, dates and instants ISO 8601 (what
    ``model_dump(by_alias=True, exclude_none=True)`` gives, without its per-call cost)."""
    if isinstance(item, OtherItemIn):
        return dict(item.details)
    details = item.details
    stored: dict[str, Any] = {}
    for name, key in _json_names(type(details)):
        value = getattr(details, name)
        if value is not None:
            stored[key] = value.isoformat() if isinstance(value, date) else value
    return stored


@functools.cache
def _json_names(model: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    return tuple((name, field.alias or name) for name, field in model.model_fields.items())


_CURRENCY = re.compile(r"[A-Z]{3}", re.ASCII)
_AIRPORT = re.compile(r"[A-Z]{3}", re.ASCII)


def _maybe(parse: Callable[[object], _T], value: object) -> _T | None:
    try:
        return parse(value)
    except PydanticCustomError:
        return None


def _cross_field_errors(data: dict[str, Any], limits: Limits, *, whole: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    currency = data.get("currency")
    if isinstance(currency, str):
        if not _CURRENCY.fullmatch(currency):
            errors.append(
                field_error(
                    "currency",
                    "invalid_format",
                    "currency must be a 3-letter upper-case ISO 4217 code, e.g. EUR.",
                )
            )
        elif currency not in limits.currencies:
            accepted = ", ".join(sorted(limits.currencies))
            errors.append(
                field_error("currency", "not_allowed", f"currency must be one of {accepted}.")
            )
    start = _maybe(parse_iso_date, data.get("startDate"))
    end = _maybe(parse_iso_date, data.get("endDate"))
    trip: tuple[date, date] | None = None
    if whole and start is not None and end is not None:
        if end <= start:
            errors.append(field_error("endDate", "date_order", "endDate must be after startDate."))
        else:
            trip = (start, end)
            if (end - start).days > MAX_TRIP_DAYS:
                errors.append(
                    field_error(
                        "endDate",
                        "trip_too_long",
                        f"The trip must last at most {MAX_TRIP_DAYS} days after startDate.",
                    )
                )
    items = data.get("items")
    if isinstance(items, list):
        ids: set[str] = set()
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue
            item_id = item.get("id")
            if isinstance(item_id, str):
                if item_id in ids:
                    path = f"items[{index}].id"
                    errors.append(field_error(path, "duplicate_id", "id names another item too."))
                ids.add(item_id)
            if isinstance(item.get("details"), dict):
                errors += _item_errors(
                    f"items[{index}].details", item.get("type"), item["details"], trip
                )
    return errors


def _item_errors(
    prefix: str, kind: object, details: dict[str, Any], trip: tuple[date, date] | None
) -> list[FieldError]:
    errors: list[FieldError] = []

    def within(name: str, day: date | None, *, last_extra_days: int = 0) -> None:
        if trip is None or day is None:
            return
        first, last = trip[0], trip[1] + timedelta(days=last_extra_days)
        if not first <= day <= last:
            errors.append(
                field_error(
                    f"{prefix}.{name}",
                    "outside_trip",
                    f"{name} must fall within the trip, {first.isoformat()} to "
                    f"{last.isoformat()} (local date).",
                )
            )

    if kind == ItemType.FLIGHT:
        origin, destination = details.get("from"), details.get("to")
        if isinstance(origin, str) and _AIRPORT.fullmatch(origin) and origin == destination:
            errors.append(field_error(f"{prefix}.to", "same_airport", "to must differ from from."))
        depart = _maybe(parse_aware_datetime, details.get("departAt"))
        arrive = _maybe(parse_aware_datetime, details.get("arriveAt"))
        if depart is not None and arrive is not None and arrive <= depart:
            errors.append(
                field_error(
                    f"{prefix}.arriveAt",
                    "date_order",
                    "arriveAt must be after departAt (compared as instants).",
                )
            )
        within("departAt", depart.date() if depart else None)
        # An overnight flight home may land, local time, the day after the trip's end date.
        if trip is not None and arrive is not None and arrive.date() > trip[1]:
            within("arriveAt", arrive.date(), last_extra_days=1)
    elif kind == ItemType.HOTEL:
        check_in = _maybe(parse_iso_date, details.get("checkIn"))
        check_out = _maybe(parse_iso_date, details.get("checkOut"))
        if check_in is not None and check_out is not None and check_out <= check_in:
            errors.append(
                field_error(f"{prefix}.checkOut", "date_order", "checkOut must be after checkIn.")
            )
        within("checkIn", check_in)
        within("checkOut", check_out)
    elif kind in (ItemType.ACTIVITY, ItemType.TRANSFER):
        within("date", _maybe(parse_iso_date, details.get("date")))
    return errors


# --- pydantic errors → details.errors -----------------------------------------------------

_ITEM_TAGS = frozenset(ItemType)
_FORMAT_HINTS = {
    "carrier": "must be a 2-character IATA or 3-letter ICAO airline code, e.g. FI",
    "flightNumber": "must be a flight number such as FI543",
    "from": "must be a 3-letter upper-case IATA airport code, e.g. CDG",
    "to": "must be a 3-letter upper-case IATA airport code, e.g. KEF",
}


def loc_to_path(loc: Sequence[int | str]) -> str:
    """Pydantic ``loc`` → JSON path like ``items[1].details.to`` (item type tags removed)."""
    parts = list(loc)
    # The discriminated union puts the item's tag after its index: ("items", 1, "FLIGHT", ...).
    if (
        len(parts) >= 3
        and parts[0] == "items"
        and isinstance(parts[1], int)
        and parts[2] in _ITEM_TAGS
    ):
        del parts[2]
    return json_path(parts)


def _shape_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Every error of a failed QuoteIn validation as ``{path, code, message}`` entries."""
    result: list[dict[str, str]] = []
    for error in exc.errors(include_url=False):
        loc = list(error["loc"])
        kind = error["type"]
        if kind in ("union_tag_invalid", "union_tag_not_found"):
            loc.append("type")
        path = loc_to_path(loc)
        if error["input"] is None and kind not in ("missing", "union_tag_not_found"):
            # PATCH keeps a null sent for a required field so that it fails here, at its path.
            code, phrase = "required", "must not be null"
        else:
            code, phrase = _describe(kind, error["msg"], error.get("ctx") or {}, path)
        label = path.rsplit(".", 1)[-1] if path else "The body"
        result.append(field_error(path, code, f"{label} {phrase}."))
    return result


# Pydantic error type → (our code, phrase); phrases may use the error's ctx, e.g. {ge}.
_PHRASES: dict[str, tuple[str, str]] = {
    "missing": ("required", "is required"),
    "extra_forbidden": ("unknown_field", "is not a known field (names are camelCase: tripName)"),
    "string_type": ("invalid_type", "must be a string"),
    "int_type": ("invalid_type", "must be a whole number (a JSON integer)"),
    "list_type": ("invalid_type", "must be a list"),
    "model_type": ("invalid_type", "must be an object"),
    "model_attributes_type": ("invalid_type", "must be an object"),
    "dict_type": ("invalid_type", "must be an object"),
    "union_tag_invalid": ("not_allowed", f"must be one of {', '.join(ItemType)}"),
    "union_tag_not_found": ("required", f"is required: one of {', '.join(ItemType)}"),
    "greater_than_equal": ("out_of_range", "must be at least {ge}"),
    "less_than_equal": ("out_of_range", "must be at most {le}"),
    "greater_than": ("out_of_range", "must be greater than {gt}"),
    "less_than": ("out_of_range", "must be less than {lt}"),
    "string_too_short": ("too_short", "must not be empty or blank"),
    "string_too_long": ("too_long", "must be at most {max_length} characters"),
    "too_long": ("too_long", "must have at most {max_length} entries"),
    "literal_error": ("not_allowed", "must be {expected}"),
}
# Codes raised as PydanticCustomError by the parsers in schemas.py: their message is ours.
_CUSTOM_CODES = frozenset(
    {"invalid_type", "invalid_date", "invalid_datetime", "missing_offset", "invalid_number"}
    | {"too_many_decimals", "invalid_character", "too_large", "out_of_range"}
)


def _describe(kind: str, msg: str, ctx: dict[str, Any], path: str) -> tuple[str, str]:
    if kind in _PHRASES:
        code, phrase = _PHRASES[kind]
        return code, phrase.format(**ctx)
    if kind == "string_pattern_mismatch":
        return "invalid_format", _FORMAT_HINTS.get(path.rsplit(".", 1)[-1], "has a wrong format")
    if kind in _CUSTOM_CODES:
        return kind, msg
    return "invalid", "is invalid"


# --- PATCH --------------------------------------------------------------------------------


def merge_patch(current: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Apply a PATCH object to the camelCase input dict: top-level replace, ``items`` whole."""
    if not isinstance(patch, dict):
        raise _invalid([field_error("", "invalid_type", "The body must be a JSON object.")])
    # Client-sent totals describe one request; an earlier request's must not be re-checked.
    merged = {key: value for key, value in current.items() if key != "pricing"}
    # null is kept: notes accepts it (cleared); a required field then fails at its own path.
    merged.update((key, value) for key, value in patch.items() if key != "version")
    return merged


def patch_version(patch: Any) -> int | None:
    """The ``version`` a PATCH body names (None if absent); QuoteValidationFailed at ``version``."""
    if not isinstance(patch, dict) or "version" not in patch:
        return None
    version = whole(patch["version"])
    if isinstance(version, bool) or not isinstance(version, int):
        raise _invalid(
            [field_error("version", "invalid_type", "version must be a positive integer.")]
        )
    if not 1 <= version <= MAX_VERSION:
        raise _invalid(
            [field_error("version", "out_of_range", f"version must be 1 to {MAX_VERSION}.")]
        )
    return version


def expected_version(body_version: int | None, if_match: int | None) -> int:
    """The version the client edits: from the body or If-Match (RFC 9110 §13.1.1), which must
    agree; QUOTE_VALIDATION_FAILED at ``version`` when neither is given or they differ."""
    if body_version is None and if_match is None:
        raise QuoteValidationFailed(
            "A version is required: send the quote's version in the body or If-Match.",
            details={"errors": [field_error("version", "required", "version is required.")]},
        )
    if body_version is not None and if_match is not None and body_version != if_match:
        raise QuoteValidationFailed(
            "The body version and If-Match disagree.",
            details={
                "errors": [
                    field_error(
                        "version",
                        "mismatch",
                        f"body version {body_version} differs from If-Match {if_match}.",
                    )
                ]
            },
        )
    version = body_version if body_version is not None else if_match
    assert version is not None
    return version


def draft_to_input(draft: QuoteDraft) -> dict[str, Any]:
    """QuoteDraft → camelCase JSON-ready input dict (no client totals), what merge_patch takes."""
    return {
        "clientId": draft.client_id,
        "tripName": draft.trip_name,
        "destination": draft.destination,
        "startDate": draft.start_date.isoformat(),
        "endDate": draft.end_date.isoformat(),
        "travelers": draft.travelers,
        "currency": draft.currency,
        "markupPercent": plain_decimal(draft.markup_percent),
        "discount": plain_decimal(draft.discount),
        "expiresInDays": draft.expires_in_days,
        "notes": draft.notes,
        "items": [
            {
                "type": item.type.value,
                "description": item.description,
                "quantity": item.quantity,
                "unitPrice": plain_decimal(item.unit_price),
                "details": dict(item.details),
            }
            for item in draft.items
        ],
    }


def same_json(a: Any, b: Any) -> bool:
    """Whether two JSON-ready values are the same JSON (``tripquote.json.canonical``): ``true`` and
    ``1`` differ, key order does not count."""
    return canonical(a) == canonical(b)


def changed_fields(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Sorted top-level names whose values differ as JSON (or exist on one side only)."""
    return sorted(
        key
        for key in old.keys() | new.keys()
        if key not in old or key not in new or not same_json(old[key], new[key])
    )
