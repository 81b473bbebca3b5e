"""rules: whole-quote validation (all errors at once, JSON paths, codes) and PATCH merging."""

from __future__ import annotations

import copy
import json
import unicodedata
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic_core import PydanticCustomError

from tripquote.errors import CurrencyInvalid, QuotaExceeded, QuoteValidationFailed, TripquoteError
from tripquote.json import loads
from tripquote.quotes.pricing import check_client_pricing, price_quote
from tripquote.quotes.rules import (
    ItemDraft,
    Limits,
    QuoteDraft,
    changed_fields,
    draft_to_input,
    merge_patch,
    patch_version,
    validate_quote,
)
from tripquote.quotes.schemas import ItemType, QuoteIn
from tripquote.quotes.schemas import _single_line as single_line

LIMITS = Limits(
    currencies=frozenset({"USD", "EUR", "GBP", "CAD", "AUD", "CHF", "JPY"}), max_items=10
)

_BASE: dict[str, Any] = {
    "clientId": "client-1",
    "tripName": "Iceland ring road",
    "destination": "Reykjavik, Iceland",
    "startDate": "2027-06-12",
    "endDate": "2027-06-22",
    "travelers": 4,
    "currency": "EUR",
    "markupPercent": "15",
    "discount": "120.00",
    "expiresInDays": 30,
    "items": [
        {
            "type": "FLIGHT",
            "description": "FI 543 CDG-KEF",
            "quantity": 4,
            "unitPrice": "289.90",
            "details": {
                "carrier": "FI",
                "flightNumber": "FI543",
                "from": "CDG",
                "to": "KEF",
                "departAt": "2027-06-12T14:10:00+02:00",
                "arriveAt": "2027-06-12T15:40:00+00:00",
            },
        },
        {
            "type": "HOTEL",
            "description": "Hotel Ranga",
            "quantity": 4,
            "unitPrice": "345.00",
            "details": {
                "name": "Hotel Ranga",
                "checkIn": "2027-06-14",
                "checkOut": "2027-06-16",
                "rooms": 2,
            },
        },
        {
            "type": "ACTIVITY",
            "description": "Glacier hike",
            "quantity": 4,
            "unitPrice": "119.00",
            "details": {"name": "Glacier hike", "date": "2027-06-17"},
        },
        {
            "type": "TRANSFER",
            "description": "Airport bus",
            "quantity": 4,
            "unitPrice": "35",
            "details": {"date": "2027-06-12", "from": "KEF"},
        },
        {"type": "OTHER", "description": "4x4 rental", "quantity": 10, "unitPrice": "140.01"},
    ],
}


def body(**changes: Any) -> dict[str, Any]:
    """A fresh valid request with top-level ``changes`` applied."""
    data = copy.deepcopy(_BASE)
    data.update(changes)
    return data


def errors_of(data: Any, limits: Limits = LIMITS) -> tuple[type[TripquoteError], dict[str, str]]:
    """The raised error class and its ``{path: code}`` entries."""
    with pytest.raises(TripquoteError) as caught:
        validate_quote(data, limits=limits)
    entries = caught.value.details["errors"]
    assert all(set(entry) == {"path", "code", "message"} for entry in entries)
    return type(caught.value), {entry["path"]: entry["code"] for entry in entries}


def with_item(index: int, **details: Any) -> dict[str, Any]:
    data = body()
    data["items"][index]["details"].update(details)
    return data


# --- a valid quote ------------------------------------------------------------------------


def test_valid_quote_becomes_a_draft_with_exact_decimals_and_json_ready_details() -> None:
    draft = validate_quote(loads(json.dumps(body(tripName="  Iceland  ")).encode()), limits=LIMITS)
    assert draft.trip_name == "Iceland"
    assert draft.start_date == date(2027, 6, 12)
    assert draft.markup_percent == Decimal("15")
    assert draft.discount == Decimal("120.00")
    assert [item.type for item in draft.items] == list(ItemType)
    flight, hotel, activity, transfer, other = draft.items
    assert flight.unit_price == Decimal("289.90") and isinstance(flight.unit_price, Decimal)
    assert flight.details == {
        "carrier": "FI",
        "flightNumber": "FI543",
        "from": "CDG",
        "to": "KEF",
        "departAt": "2027-06-12T14:10:00+02:00",
        "arriveAt": "2027-06-12T15:40:00+00:00",
    }
    assert hotel.details == {
        "name": "Hotel Ranga",
        "checkIn": "2027-06-14",
        "checkOut": "2027-06-16",
        "rooms": 2,
    }
    assert activity.details == {"name": "Glacier hike", "date": "2027-06-17"}
    assert transfer.details == {"date": "2027-06-12", "from": "KEF"}
    assert other.details == {}
    assert draft.notes is None and draft.client_pricing is None
    assert draft.expires_in_days == 30


def test_defaults_apply_when_optional_fields_are_omitted() -> None:
    data = body()
    for name in ("markupPercent", "discount", "expiresInDays", "items"):
        del data[name]
    draft = validate_quote(data, limits=LIMITS)
    assert (draft.markup_percent, draft.discount, draft.expires_in_days, draft.items) == (
        0,
        0,
        14,
        (),
    )


def test_utc_z_offset_is_accepted_and_normalised() -> None:
    draft = validate_quote(with_item(0, arriveAt="2027-06-12T15:40Z"), limits=LIMITS)
    assert draft.items[0].details["arriveAt"] == "2027-06-12T15:40:00+00:00"


# --- all errors at once, paths and codes --------------------------------------------------


def test_every_failing_field_is_reported_at_once() -> None:
    data = body(travelers=0, startDate="2027-02-30", markupPercent="101")
    data["items"][1]["quantity"] = 0
    kind, found = errors_of(data)
    assert kind is QuoteValidationFailed
    assert found == {
        "travelers": "out_of_range",
        "startDate": "invalid_date",
        "markupPercent": "out_of_range",
        "items[1].quantity": "out_of_range",
    }


def test_cross_field_rules_still_run_when_other_fields_fail() -> None:
    data = with_item(0, to="CDG")
    data["travelers"] = 51
    data["items"][1]["details"]["checkOut"] = "2027-06-13"
    data["items"][2]["details"]["date"] = "2027-07-17"
    data["items"][3]["description"] = ""
    _, found = errors_of(data)
    assert found == {
        "travelers": "out_of_range",
        "items[0].details.to": "same_airport",
        "items[1].details.checkOut": "date_order",
        "items[2].details.date": "outside_trip",
        "items[3].description": "too_short",
    }


@pytest.mark.parametrize("written", ["4.0", "4E0", "0.4E1"])
def test_an_integer_written_with_a_fraction_or_exponent_is_that_integer(written: str) -> None:
    # JSON Schema's integer (what the OpenAPI document says) is a number without a fraction,
    # however written; tripquote.json.loads gives such numbers as Decimal.
    data = body(travelers=Decimal(written), expiresInDays=Decimal(written))
    draft = validate_quote(data, limits=LIMITS)
    assert (draft.travelers, draft.expires_in_days) == (4, 4)


def test_a_shape_error_hides_cross_field_errors_at_the_same_path() -> None:
    _, found = errors_of(body(endDate="2027-13-01"))
    assert found == {"endDate": "invalid_date"}


@pytest.mark.parametrize(
    ("changes", "path", "code"),
    [
        ({"travelers": 2.5}, "travelers", "invalid_type"),
        ({"travelers": "4"}, "travelers", "invalid_type"),
        ({"travelers": True}, "travelers", "invalid_type"),
        ({"travelers": Decimal("4.5")}, "travelers", "invalid_type"),
        ({"expiresInDays": 91}, "expiresInDays", "out_of_range"),
        ({"clientId": ""}, "clientId", "too_short"),
        ({"clientId": "x" * 65}, "clientId", "too_long"),
        ({"tripName": "a\x00b"}, "tripName", "invalid_character"),
        ({"tripName": "x" * 201}, "tripName", "too_long"),
        ({"destination": 12}, "destination", "invalid_type"),
        ({"startDate": "12/06/2027"}, "startDate", "invalid_date"),
        ({"startDate": "2027-06-12T00:00:00"}, "startDate", "invalid_date"),
        ({"endDate": 20270622}, "endDate", "invalid_type"),
        ({"markupPercent": "12.345"}, "markupPercent", "too_many_decimals"),
        ({"markupPercent": True}, "markupPercent", "invalid_type"),
        ({"markupPercent": 12.5}, "markupPercent", "invalid_type"),
        ({"discount": "1e3"}, "discount", "invalid_number"),
        ({"discount": " 5"}, "discount", "invalid_number"),
        ({"discount": Decimal("NaN")}, "discount", "invalid_number"),
        ({"discount": Decimal("-Infinity")}, "discount", "invalid_number"),
        ({"notes": "x" * 2001}, "notes", "too_long"),
        ({"notes": 5}, "notes", "invalid_type"),
        ({"items": {"type": "HOTEL"}}, "items", "invalid_type"),
        ({"items": None}, "items", "required"),
        ({"tripName": None}, "tripName", "required"),
        ({"pricing": {"grandTotal": "1"}}, "pricing.grandTotal", "unknown_field"),
        ({"pricing": {"total": "abc"}}, "pricing.total", "invalid_number"),
        ({"tripname": "typo"}, "tripname", "unknown_field"),
        ({"version": 3}, "version", "unknown_field"),
    ],
)
def test_field_errors_have_path_and_code(changes: dict[str, Any], path: str, code: str) -> None:
    kind, found = errors_of(body(**changes))
    assert kind is QuoteValidationFailed
    assert found == {path: code}


@pytest.mark.parametrize(
    "number",
    ["1E+999999999", "1E-999999999", "1" + "0" * 30, "0." + "0" * 30 + "1", "9" * 4000],
    ids=["huge-exponent", "tiny-exponent", "31-digits", "31-decimals", "4000-digit-int"],
)
@pytest.mark.parametrize(
    "path",
    ["discount", "markupPercent", "items[0].unitPrice", "items[0].lineTotal", "pricing.total"],
)
def test_absurd_numbers_are_refused_before_any_arithmetic(number: str, path: str) -> None:
    data = body(pricing={})
    parent, _, name = path.rpartition(".")
    {"": data, "items[0]": data["items"][0], "pricing": data["pricing"]}[parent][name] = "__N__"
    # Spliced into the JSON text as a bare number, the way a client would send it.
    parsed = loads(json.dumps(data).replace('"__N__"', number).encode())
    assert errors_of(parsed) == (QuoteValidationFailed, {path: "invalid_number"})


def test_missing_required_fields_are_each_reported() -> None:
    data = body()
    for name in ("clientId", "tripName", "destination", "startDate", "endDate", "travelers"):
        del data[name]
    _, found = errors_of(data)
    assert found == dict.fromkeys(
        ("clientId", "tripName", "destination", "startDate", "endDate", "travelers"), "required"
    )


def test_blank_text_is_an_error_and_blank_notes_clear() -> None:
    _, found = errors_of(body(destination="  \t "))
    assert found == {"destination": "too_short"}
    assert validate_quote(body(notes="   "), limits=LIMITS).notes is None
    assert validate_quote(body(notes=" Window seat\n please "), limits=LIMITS).notes == (
        "Window seat\n please"
    )


def test_messages_are_short_and_never_echo_the_input() -> None:
    secret = "PASSPORT-X1234567-" * 20
    _, found = errors_of(body(tripName=secret, travelers=secret, currency=secret))
    assert set(found) == {"tripName", "travelers", "currency"}
    with pytest.raises(QuoteValidationFailed) as caught:
        validate_quote(body(tripName=secret, travelers=secret), limits=LIMITS)
    for entry in caught.value.details["errors"]:
        assert "PASSPORT" not in entry["message"]
        assert len(entry["message"]) < 200


def test_non_object_body_fails_at_the_root() -> None:
    for data in ([], "quote", None, Decimal(1)):
        assert errors_of(data) == (QuoteValidationFailed, {"": "invalid_type"})


# --- currency -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "code"),
    [("BTC", "not_allowed"), ("EURO", "invalid_format"), ("eur", "invalid_format")],
)
def test_currency_as_the_only_failure_is_currency_invalid(currency: str, code: str) -> None:
    assert errors_of(body(currency=currency)) == (CurrencyInvalid, {"currency": code})


def test_currency_missing_or_not_a_string_is_still_currency_invalid() -> None:
    data = body()
    del data["currency"]
    assert errors_of(data) == (CurrencyInvalid, {"currency": "required"})
    assert errors_of(body(currency=978)) == (CurrencyInvalid, {"currency": "invalid_type"})


def test_currency_with_another_failure_is_quote_validation_failed() -> None:
    kind, found = errors_of(body(currency="BTC", travelers=0))
    assert kind is QuoteValidationFailed
    assert found == {"currency": "not_allowed", "travelers": "out_of_range"}


def test_currency_whitelist_comes_from_limits() -> None:
    limits = Limits(currencies=frozenset({"NOK"}), max_items=10)
    assert validate_quote(body(currency="NOK"), limits=limits).currency == "NOK"
    assert errors_of(body(), limits) == (CurrencyInvalid, {"currency": "not_allowed"})


# --- dates --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("end", "code"),
    [("2027-06-12", "date_order"), ("2027-06-01", "date_order"), ("2028-06-12", "trip_too_long")],
)
def test_trip_dates(end: str, code: str) -> None:
    _, found = errors_of(body(endDate=end, items=[]))
    assert found == {"endDate": code}


def test_trip_of_exactly_365_days_is_allowed() -> None:
    draft = validate_quote(
        body(startDate="2027-01-01", endDate="2028-01-01", items=[]), limits=LIMITS
    )
    assert (draft.end_date - draft.start_date).days == 365


def test_flight_times_need_an_offset_and_are_compared_as_instants() -> None:
    _, found = errors_of(with_item(0, departAt="2027-06-12T14:10:00"))
    assert found == {"items[0].details.departAt": "missing_offset"}
    _, found = errors_of(with_item(0, arriveAt="2027-06-12T12:10:00+00:00"))
    assert found == {"items[0].details.arriveAt": "date_order"}  # same instant as departure
    # Earlier on the local clock, later as an instant: accepted.
    draft = validate_quote(
        with_item(0, departAt="2027-06-12T23:30:00+09:00", arriveAt="2027-06-12T10:30:00-05:00"),
        limits=LIMITS,
    )
    assert draft.items[0].details["arriveAt"] == "2027-06-12T10:30:00-05:00"


def test_flight_may_land_the_day_after_the_trip_but_not_later() -> None:
    late = {"departAt": "2027-06-22T21:20:00+03:00"}
    validate_quote(with_item(0, **late, arriveAt="2027-06-23T05:50:00+02:00"), limits=LIMITS)
    _, found = errors_of(with_item(0, **late, arriveAt="2027-06-24T05:50:00+02:00"))
    assert found == {"items[0].details.arriveAt": "outside_trip"}
    _, found = errors_of(with_item(0, departAt="2027-06-11T23:00:00+02:00"))
    assert found == {"items[0].details.departAt": "outside_trip"}


def test_flight_departure_date_is_local_not_utc() -> None:
    # 00:30 local on the start date is the previous day in UTC: still inside the trip.
    validate_quote(with_item(0, departAt="2027-06-12T00:30:00+02:00"), limits=LIMITS)


@pytest.mark.parametrize(
    ("index", "details", "path", "code"),
    [
        (0, {"from": "cdg"}, "items[0].details.from", "invalid_format"),
        (0, {"carrier": "F"}, "items[0].details.carrier", "invalid_format"),
        (0, {"flightNumber": "FI 543"}, "items[0].details.flightNumber", "invalid_format"),
        (0, {"gate": "B12"}, "items[0].details.gate", "unknown_field"),
        (1, {"checkIn": "2027-06-11"}, "items[1].details.checkIn", "outside_trip"),
        (1, {"checkOut": "2027-06-23"}, "items[1].details.checkOut", "outside_trip"),
        (1, {"checkOut": "2027-06-14"}, "items[1].details.checkOut", "date_order"),
        (1, {"rooms": 0}, "items[1].details.rooms", "out_of_range"),
        (2, {"date": "2027-06-11"}, "items[2].details.date", "outside_trip"),
        (3, {"date": "2027-06-23"}, "items[3].details.date", "outside_trip"),
        (3, {"to": ""}, "items[3].details.to", "too_short"),
    ],
)
def test_item_detail_rules(index: int, details: dict[str, Any], path: str, code: str) -> None:
    data = body()
    data["items"][index]["details"].update(details)
    assert errors_of(data) == (QuoteValidationFailed, {path: code})


# --- items --------------------------------------------------------------------------------


def other(**fields: Any) -> dict[str, Any]:
    """A valid OTHER item with ``fields`` changed (None removes a field)."""
    data = {"type": "OTHER", "description": "x", "quantity": 1, "unitPrice": 1, **fields}
    return {key: value for key, value in data.items() if value is not None}


@pytest.mark.parametrize(
    ("item", "path", "code"),
    [
        (other(type="CRUISE"), "items[0].type", "not_allowed"),
        (other(type="flight"), "items[0].type", "not_allowed"),
        (other(type=None), "items[0].type", "required"),
        (other(type="HOTEL"), "items[0].details", "required"),
        (other(quantity=True), "items[0].quantity", "invalid_type"),
        (other(quantity=10_001), "items[0].quantity", "out_of_range"),
        (other(unitPrice="-1"), "items[0].unitPrice", "out_of_range"),
        (other(unitPrice=None), "items[0].unitPrice", "required"),
        (other(lineTotal=False), "items[0].lineTotal", "invalid_type"),
        (other(details=[1]), "items[0].details", "invalid_type"),
        (other(details={"a": {"b": {"c": {"d": 1}}}}), "items[0].details", "too_large"),
        (other(details={str(i): i for i in range(100)}), "items[0].details", "too_large"),
        (other(details={"a": "\x00"}), "items[0].details", "invalid_character"),
        (other(details={"a": "x\u202ey"}), "items[0].details", "invalid_character"),
        (other(details={"\u2067k": 1}), "items[0].details", "invalid_character"),
        (other(details={"a": 0.5}), "items[0].details", "invalid_type"),
        (other(details={"a": [Decimal("3.5")]}), "items[0].details", "invalid_type"),
        (other(details={"a": 2**53}), "items[0].details", "out_of_range"),
        (5, "items[0]", "invalid_type"),
        (None, "items[0]", "required"),
    ],
)
def test_item_shape_errors(item: Any, path: str, code: str) -> None:
    assert errors_of(body(items=[item])) == (QuoteValidationFailed, {path: code})


def test_other_details_accept_small_free_form_objects() -> None:
    details = {"supplier": "Blue Car", "ref": ["A1", 2**53 - 1, "3.50", None, True], "n": {}}
    draft = validate_quote(body(items=[other(details=details)]), limits=LIMITS)
    assert draft.items[0].details == details
    assert json.loads(json.dumps(draft.items[0].details)) == details  # the stdlib encoder copes
    empty = {**other(), "details": None}
    assert validate_quote(body(items=[empty]), limits=LIMITS).items[0].details == {}


def test_other_details_take_a_number_without_a_fraction_as_the_integer() -> None:
    # JSON Schema's integer (the document's) is any number without a fraction: 2.0 is 2.
    details = {"n": Decimal("2.0"), "list": [Decimal("-0.0"), {"k": Decimal("1E+3")}]}
    draft = validate_quote(body(items=[other(details=details)]), limits=LIMITS)
    assert draft.items[0].details == {"n": 2, "list": [0, {"k": 1000}]}
    assert type(draft.items[0].details["n"]) is int
    assert json.dumps(draft.items[0].details) == '{"n": 2, "list": [0, {"k": 1000}]}'
    for huge in (Decimal("1E+999999999"), Decimal("9007199254740992.0")):
        assert errors_of(body(items=[other(details={"a": huge})])) == (
            QuoteValidationFailed,
            {"items[0].details": "out_of_range"},
        )


_JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**54), 2**54)
    | st.decimals(-(10**6), 10**6, places=1)  # where a float (a schema validator's) is exact
    | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=2), _JSON_VALUES, max_size=4))
def test_other_details_schema_in_the_document_says_what_the_validator_accepts(
    details: dict[str, Any],
) -> None:
    # The one rule no JSON Schema keyword states, the count of values, is left out (too_large
    # is a cross-field code of the schemathesis run); every other refusal the schema states.
    import jsonschema_rs

    from tripquote.quotes.schemas import OtherItemIn

    schema = OtherItemIn.model_json_schema()["properties"]["details"]
    as_json = json.loads(json.dumps(details, default=float))  # a Decimal as the number sent
    described = jsonschema_rs.Draft202012Validator(schema).is_valid(as_json)
    try:
        validate_quote(body(items=[other(details=details)]), limits=LIMITS)
        codes = set()
    except QuoteValidationFailed as refused:
        codes = {entry["code"] for entry in refused.details["errors"]}
    if "too_large" not in codes:
        assert described == (not codes), (details, codes)


def test_client_totals_are_kept_for_the_consistency_check() -> None:
    data = body(pricing={"subtotal": "6739.50", "total": Decimal("7630.42"), "lineTotals": ["1"]})
    data["items"][0]["lineTotal"] = "1159.60"
    draft = validate_quote(data, limits=LIMITS)
    assert draft.client_pricing == {
        "subtotal": Decimal("6739.50"),
        "total": Decimal("7630.42"),
        "lineTotals": [Decimal("1")],
    }
    assert draft.items[0].client_line_total == Decimal("1159.60")
    assert validate_quote(body(pricing={}), limits=LIMITS).client_pricing is None


def test_item_quota_is_reported_only_when_the_quote_is_otherwise_valid() -> None:
    limits = Limits(currencies=LIMITS.currencies, max_items=4)
    with pytest.raises(QuotaExceeded) as caught:
        validate_quote(body(), limits=limits)
    assert caught.value.details == {"limit": 4, "current": 5, "resource": "items"}
    assert errors_of(body(travelers=0), limits) == (
        QuoteValidationFailed,
        {"travelers": "out_of_range"},
    )
    assert len(validate_quote(body(), limits=Limits(LIMITS.currencies, 5)).items) == 5


def test_the_error_list_is_capped() -> None:
    item = {"type": "OTHER", "description": "", "quantity": 0, "unitPrice": "-1"}
    with pytest.raises(QuoteValidationFailed) as caught:
        validate_quote(body(items=[item] * 50), limits=LIMITS)
    assert len(caught.value.details["errors"]) == 100
    assert caught.value.details["omittedErrors"] == 50


# --- the OpenAPI side of the models -------------------------------------------------------


def test_json_schema_uses_camel_case_and_its_example_is_a_valid_quote() -> None:
    schema = QuoteIn.model_json_schema()
    assert {"clientId", "tripName", "startDate", "markupPercent", "items"} <= set(
        schema["properties"]
    )
    assert schema["additionalProperties"] is False
    assert '"ge"' not in json.dumps(schema)  # constraints render as JSON Schema keywords
    [example] = schema["examples"]
    example = {**example, "currency": "GBP"}
    assert validate_quote(example, limits=LIMITS).items[0].details["rooms"] == 1


# --- PATCH --------------------------------------------------------------------------------


def current() -> dict[str, Any]:
    return draft_to_input(validate_quote(body(notes="Window seat"), limits=LIMITS))


def test_merge_patch_changes_only_the_fields_sent() -> None:
    merged = merge_patch(current(), {"version": 3, "tripName": "Iceland, longer", "travelers": 5})
    assert "version" not in merged
    assert changed_fields(current(), merged) == ["travelers", "tripName"]
    draft = validate_quote(merged, limits=LIMITS)
    assert (draft.trip_name, draft.travelers, draft.notes) == ("Iceland, longer", 5, "Window seat")


def test_merge_patch_replaces_items_as_a_whole() -> None:
    hotel = _BASE["items"][1]
    draft = validate_quote(merge_patch(current(), {"items": [hotel]}), limits=LIMITS)
    assert [item.type for item in draft.items] == [ItemType.HOTEL]
    assert validate_quote(merge_patch(current(), {"items": []}), limits=LIMITS).items == ()


def test_merge_patch_null_clears_notes_and_fails_for_a_required_field() -> None:
    assert validate_quote(merge_patch(current(), {"notes": None}), limits=LIMITS).notes is None
    assert errors_of(merge_patch(current(), {"tripName": None, "travelers": None})) == (
        QuoteValidationFailed,
        {"tripName": "required", "travelers": "required"},
    )


def test_merge_patch_keeps_unknown_fields_so_validation_rejects_them() -> None:
    assert errors_of(merge_patch(current(), {"status": "SENT"})) == (
        QuoteValidationFailed,
        {"status": "unknown_field"},
    )


def test_merge_patch_drops_client_totals_of_an_earlier_request() -> None:
    merged = merge_patch({**current(), "pricing": {"total": "1"}}, {"travelers": 2})
    assert "pricing" not in merged
    assert merge_patch(current(), {"pricing": {"total": "1"}})["pricing"] == {"total": "1"}


@pytest.mark.parametrize("patch", [[], "x", None, 3])
def test_merge_patch_rejects_a_non_object(patch: Any) -> None:
    with pytest.raises(QuoteValidationFailed) as caught:
        merge_patch(current(), patch)
    assert [error["path"] for error in caught.value.details["errors"]] == [""]


def test_merge_patch_does_not_mutate_its_inputs() -> None:
    before, patch = current(), {"travelers": 2, "version": 1}
    snapshot = copy.deepcopy((before, patch))
    merge_patch(before, patch)
    assert (before, patch) == snapshot


def test_patch_version() -> None:
    assert patch_version({"tripName": "x"}) is None
    assert patch_version({"version": 7}) == 7
    assert patch_version({"version": 2**31 - 1}) == 2**31 - 1
    # A JSON integer as JSON Schema counts them, as every integer field of the body takes it.
    assert patch_version({"version": Decimal("7.0")}) == 7
    assert patch_version({"version": Decimal("7E0")}) == 7


@pytest.mark.parametrize(
    ("version", "code"),
    [
        ("7", "invalid_type"),
        (Decimal("7.5"), "invalid_type"),
        (Decimal("Infinity"), "invalid_type"),
        (Decimal("1E+999999999"), "invalid_type"),
        (True, "invalid_type"),
        (None, "invalid_type"),
        (0, "out_of_range"),
        (-1, "out_of_range"),
        (2**31, "out_of_range"),
    ],
)
def test_patch_version_must_be_a_positive_integer(version: Any, code: str) -> None:
    with pytest.raises(QuoteValidationFailed) as caught:
        patch_version({"version": version})
    assert [(e["path"], e["code"]) for e in caught.value.details["errors"]] == [("version", code)]


def test_draft_to_input_round_trips_and_is_canonical() -> None:
    draft = validate_quote(body(markupPercent="15.00", discount="120.000"), limits=LIMITS)
    data = draft_to_input(draft)
    assert (data["markupPercent"], data["discount"]) == ("15", "120")
    assert data["items"][0]["unitPrice"] == "289.9"
    assert json.loads(json.dumps(data)) == data  # JSON-ready with the standard library
    assert validate_quote(data, limits=LIMITS) == draft


def test_draft_to_input_leaves_out_client_totals() -> None:
    data = body(pricing={"total": "1"})
    data["items"][0]["lineTotal"] = "2"
    again = draft_to_input(validate_quote(data, limits=LIMITS))
    assert "pricing" not in again and "lineTotal" not in again["items"][0]


def test_changed_fields_is_sorted_and_sees_one_sided_keys() -> None:
    old = {"a": 1, "b": [1, 2], "c": None, "z": "same"}
    new = {"a": 2, "b": [1, 2], "d": None, "z": "same"}
    assert changed_fields(old, new) == ["a", "c", "d"]
    assert changed_fields(new, new) == []


def test_drafts_are_immutable() -> None:
    draft = validate_quote(body(), limits=LIMITS)
    with pytest.raises(AttributeError):
        draft.travelers = 3  # type: ignore[misc]
    assert isinstance(draft, QuoteDraft) and isinstance(draft.items[0], ItemDraft)


# --- robustness ---------------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.sampled_from([Decimal("1E+999999999"), Decimal("-1E-999999999"), Decimal("1E+12")])
    | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
FIELDS = [*_BASE, "notes", "pricing", "version"]
ITEM_FIELDS = ["type", "description", "quantity", "unitPrice", "lineTotal", "details"]
DETAIL_FIELDS = ["from", "to", "departAt", "arriveAt", "checkIn", "checkOut", "date", "rooms"]


@settings(max_examples=300)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["top", "item", "details"]),
            st.integers(min_value=0, max_value=4),
            st.sampled_from(FIELDS + ITEM_FIELDS + DETAIL_FIELDS),
            JSON_VALUES,
        ),
        min_size=1,
        max_size=4,
    )
)
def test_any_json_value_anywhere_gives_a_draft_or_a_tripquote_error(
    changes: list[tuple[str, int, str, Any]],
) -> None:
    data = body()
    # Item-level changes first: a top-level change may replace the items list itself.
    for where, index, name, value in sorted(changes, key=lambda change: change[0] == "top"):
        target = data
        if where != "top":
            target = data["items"][index]
            if where == "details":
                target = target.setdefault("details", {})
        if isinstance(target, dict):
            target[name] = value
    try:
        draft = validate_quote(data, limits=LIMITS)
        check_client_pricing(draft, price_quote(draft))
    except TripquoteError as error:
        assert error.details  # every failure explains itself


ANY_MAGNITUDE = st.builds(
    lambda mantissa, exponent: Decimal(f"{mantissa}E{exponent}"),  # exact: no context involved
    st.integers(min_value=-(10**6), max_value=10**6),
    st.integers(min_value=-(10**9), max_value=10**9) | st.integers(min_value=-40, max_value=40),
)


@given(
    st.sampled_from(["discount", "markupPercent", "unitPrice", "lineTotal", "pricing"]),
    ANY_MAGNITUDE | st.integers(min_value=-(10**4000), max_value=10**4000),
)
def test_any_number_in_a_money_field_gives_a_draft_or_a_tripquote_error(
    field: str, number: Decimal | int
) -> None:
    data = body()
    if field in ("unitPrice", "lineTotal"):
        data["items"][0][field] = number
    elif field == "pricing":
        data["pricing"] = {"total": number, "lineTotals": [number] * 5}
    else:
        data[field] = number
    try:
        draft = validate_quote(data, limits=LIMITS)
        check_client_pricing(draft, price_quote(draft))
    except TripquoteError as error:
        assert error.details


_ASCII_AND_MORE = st.characters(max_codepoint=0x7F) | st.characters() | st.sampled_from(" \u200b")


@given(st.text(_ASCII_AND_MORE, max_size=8))
@settings(max_examples=400)
def test_single_line_text_refuses_control_characters_and_invisible_only_text(text: str) -> None:
    """Unicode's definition, whatever the path (ASCII has its own, faster one): any control
    character (category Cc) is refused; otherwise text made only of invisible characters
    (Cc, Cf, Zs, Zl, Zp) is blank."""
    categories = [unicodedata.category(char) for char in text]
    if "Cc" in categories:
        expected: str | None = "invalid_character"
    elif text and all(c in {"Cc", "Cf", "Zs", "Zl", "Zp"} for c in categories):
        expected = "blank"
    else:
        expected = None
    try:
        single_line(text)
        found = None
    except PydanticCustomError as error:
        found = error.type
    assert found == expected
