"""tripquote.json: numbers become Decimal from their text; bad bodies fail with json_invalid."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tripquote.errors import QuoteValidationFailed
from tripquote.json import dumps, loads


def _json_invalid(raw: bytes) -> dict[str, str]:
    with pytest.raises(QuoteValidationFailed) as caught:
        loads(raw)
    [error] = caught.value.details["errors"]
    assert error["path"] == ""
    assert error["code"] == "json_invalid"
    return error


def _walk(value: Any) -> list[Any]:
    found = [value]
    if isinstance(value, dict):
        for item in value.values():
            found += _walk(item)
    elif isinstance(value, list):
        for item in value:
            found += _walk(item)
    return found


def test_fractions_and_exponents_become_decimal_from_their_text() -> None:
    body = loads(b'{"unitPrice": 289.90, "markup": 1010.925, "big": 1e3, "tiny": 2.5E-3}')
    assert body == {
        "unitPrice": Decimal("289.90"),
        "markup": Decimal("1010.925"),
        "big": Decimal("1E+3"),
        "tiny": Decimal("0.0025"),
    }
    # The exact text survives: a float would have turned 289.90 into 289.9 and 1010.925 into
    # 1010.92499999999995225152815692126750946044921875.
    assert str(body["unitPrice"]) == "289.90"
    assert str(body["markup"]) == "1010.925"


def test_integers_stay_int_and_nothing_is_float() -> None:
    body = loads(b'{"travelers": 4, "neg": -7, "items": [{"q": 0.1}, [1.5, 2]], "ok": true}')
    assert body["travelers"] == 4
    assert type(body["travelers"]) is int
    assert type(body["neg"]) is int
    assert not any(isinstance(node, float) for node in _walk(body))


@pytest.mark.parametrize("constant", [b"NaN", b"Infinity", b"-Infinity"])
def test_nan_and_infinity_are_rejected(constant: bytes) -> None:
    error = _json_invalid(b'{"discount": ' + constant + b"}")
    assert "not a valid JSON number" in error["message"]


def test_invalid_utf8_is_rejected() -> None:
    error = _json_invalid(b'{"tripName": "caf\xe9"}')
    assert "UTF-8" in error["message"]


def test_malformed_json_reports_line_and_column_without_echoing_input() -> None:
    error = _json_invalid(b'{\n  "tripName": "SECRET-PASSPORT-123",\n  "travelers": 4,,\n}')
    assert "line 3" in error["message"]
    assert "column" in error["message"]
    assert "SECRET-PASSPORT-123" not in error["message"]


@pytest.mark.parametrize(
    "raw",
    [b"", b"   ", b"{", b'{"a": 1} trailing', b"{'a': 1}", b'{"a": 01}', b"\xef\xbb\xbf{}"],
    ids=["empty", "blank", "unclosed", "trailing", "single-quotes", "leading-zero", "bom"],
)
def test_malformed_bodies_are_rejected(raw: bytes) -> None:
    _json_invalid(raw)


def test_duplicate_keys_are_rejected() -> None:
    error = _json_invalid(b'{"tripName": "a", "tripName": "b"}')
    assert "same key" in error["message"]


def test_lone_surrogate_escapes_are_rejected() -> None:
    _json_invalid(b'{"notes": "\\ud800"}')
    _json_invalid(b'{"\\udfff": 1}')
    # A proper surrogate pair is a real character and is accepted.
    assert loads(b'{"notes": "\\ud83d\\ude00"}') == {"notes": "\U0001f600"}


def test_deep_nesting_and_huge_integers_are_rejected_cleanly() -> None:
    _json_invalid(b"[" * 100_000 + b"]" * 100_000)
    _json_invalid(b'{"travelers": ' + b"9" * 5000 + b"}")


def test_top_level_scalars_are_json_and_left_to_the_validator() -> None:
    assert loads(b"12.50") == Decimal("12.50")
    assert loads(b'"text"') == "text"
    assert loads(b"null") is None


def test_dumps_renders_decimal_as_plain_string() -> None:
    rendered = dumps(
        {"a": Decimal("1010.93"), "b": Decimal("1E+3"), "c": Decimal("0.00"), "d": Decimal("1E-7")}
    )
    assert rendered == b'{"a":"1010.93","b":"1000","c":"0.00","d":"0.0000001"}'


def test_dumps_dates_and_datetimes_iso_8601_with_z_for_utc() -> None:
    paris = timezone(timedelta(hours=2))
    rendered = dumps(
        {
            "day": date(2027, 6, 12),
            "utc": datetime(2027, 6, 12, 14, 10, tzinfo=UTC),
            "local": datetime(2027, 6, 12, 14, 10, tzinfo=paris),
        }
    )
    assert rendered == (
        b'{"day":"2027-06-12","utc":"2027-06-12T14:10:00Z","local":"2027-06-12T14:10:00+02:00"}'
    )


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), object()])
def test_dumps_refuses_values_without_json_form(bad: object) -> None:
    with pytest.raises(TypeError):
        dumps({"x": bad})


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=-(10**15), max_value=10**15))
def test_decimal_round_trips_exactly_through_dumps(value: Decimal) -> None:
    [text] = loads(dumps([value]))
    assert isinstance(text, str)
    assert Decimal(text) == value
    assert "E" not in text and "e" not in text


@given(st.integers(min_value=-(10**12), max_value=10**12), st.integers(min_value=0, max_value=6))
def test_json_number_text_is_parsed_exactly(units: int, places: int) -> None:
    text = str(Decimal(units).scaleb(-places)) if places else f"{units}.0"
    parsed = loads(text.encode())
    assert isinstance(parsed, Decimal)
    assert parsed == Decimal(text)
    assert str(parsed) == text
