"""The shape of a quote request: Pydantic v2 input models, camelCase on the wire.

Shape only: types, lengths, ranges and formats. Rules that compare fields (dates in order,
items inside the trip, currency whitelist) live in ``rules.py``; money rules in
``pricing.py``. Bodies are parsed by ``tripquote.json.loads`` and validated in Python mode, so
numbers arrive as ``int`` or ``Decimal``, never ``float``. The models also document the API
(OpenAPI), hence the descriptions and examples.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    Strict,
    StringConstraints,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from tripquote.money import decimal_places
from tripquote.validation import canonical_id


class ItemType(StrEnum):
    """The kinds of quote item; the ``type`` tag of each item."""

    FLIGHT = "FLIGHT"
    HOTEL = "HOTEL"
    ACTIVITY = "ACTIVITY"
    TRANSFER = "TRANSFER"
    OTHER = "OTHER"


# --- field parsers (also used by rules.py on raw input) -----------------------------------

_DATE_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)
_DATETIME_TEXT = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?(?P<offset>Z|[+-]\d{2}:\d{2})?",
    re.ASCII,
)
_DECIMAL_DIGITS = 30
_DECIMAL_TEXT = re.compile(r"-?\d{1,30}(?:\.\d{1,30})?", re.ASCII)


def parse_iso_date(value: object) -> date:
    """ISO 8601 calendar date ``YYYY-MM-DD`` → ``date``; raises PydanticCustomError."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise PydanticCustomError("invalid_type", "must be an ISO 8601 date string (YYYY-MM-DD)")
    if not _DATE_TEXT.fullmatch(value):
        raise PydanticCustomError("invalid_date", "must be an ISO 8601 date (YYYY-MM-DD)")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("invalid_date", "is not a real calendar date") from None


def parse_aware_datetime(value: object) -> datetime:
    """ISO 8601 date-time with a UTC offset (``Z`` or ``±HH:MM``) → aware ``datetime``."""
    if isinstance(value, datetime) and value.utcoffset() is not None:
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "invalid_type", "must be an ISO 8601 date-time string with a UTC offset"
        )
    match = _DATETIME_TEXT.fullmatch(value)
    if match is None:
        raise PydanticCustomError(
            "invalid_datetime", "must be an ISO 8601 date-time such as 2027-06-12T14:10:00+02:00"
        )
    if match["offset"] is None:
        raise PydanticCustomError(
            "missing_offset", "must include a UTC offset, e.g. 2027-06-12T14:10:00+02:00"
        )
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("invalid_datetime", "is not a real date and time") from None


def _to_decimal(value: object) -> Decimal:
    # Money never passes through float: accept int, Decimal (from tripquote.json.loads) and text.
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise PydanticCustomError(
            "invalid_type", 'must be a number or a decimal string such as "289.90"'
        )
    if isinstance(value, str):
        if not _DECIMAL_TEXT.fullmatch(value):
            raise PydanticCustomError(
                "invalid_number", 'must be a decimal number written like "289.90"'
            )
        return _unsigned_zero(Decimal(value))
    number = Decimal(value) if isinstance(value, int) else value
    if not number.is_finite():
        raise PydanticCustomError("invalid_number", "must be a finite number")
    # Bounded magnitude and scale: 1E+999999999 is valid JSON, but it must never reach
    # arithmetic (decimal.Overflow) or format(..., "f") (a billion-character string).
    exponent = number.as_tuple().exponent
    if number.adjusted() >= _DECIMAL_DIGITS or (
        isinstance(exponent, int) and exponent < -_DECIMAL_DIGITS
    ):
        raise PydanticCustomError(
            "invalid_number",
            f"must have at most {_DECIMAL_DIGITS} digits before and after the decimal point",
        )
    return _unsigned_zero(number)


def _unsigned_zero(number: Decimal) -> Decimal:
    # "-0" and "-0.00" are zero: stored and shown without a sign (never "-0.00").
    return number.copy_abs() if number.is_zero() else number


def _at_most_two_places(value: Decimal) -> Decimal:
    if decimal_places(value) > 2:
        raise PydanticCustomError("too_many_decimals", "must have at most 2 decimal places")
    return value


_INVISIBLE = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
"""Unicode categories that show nothing: controls, format characters (zero-width spaces…),
spaces and separators."""
_BLANK_SIGNS = frozenset({0x115F, 0x1160, 0x3164, 0xFFA0, 0x2800, 0xFFFC})
"""Characters of a visible category that show nothing all the same: the Hangul fillers (letters
that are Unicode Default_Ignorable), the blank Braille pattern, the object replacement
character."""


def shows_nothing(char: str) -> bool:
    """Whether ``char`` shows nothing (``_INVISIBLE``, ``_BLANK_SIGNS``)."""
    return ord(char) in _BLANK_SIGNS or unicodedata.category(char) in _INVISIBLE


# Unicode general category Cc is exactly U+0000-U+001F and U+007F-U+009F; the bidirectional
# embeddings, overrides and isolates are U+202A-U+202E and U+2066-U+2069.
_BIDI = "\u202a-\u202e\u2066-\u2069"
_CONTROL = re.compile(f"[\x00-\x1f\x7f-\x9f{_BIDI}]")
_CONTROL_BUT_BREAKS = re.compile(f"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f{_BIDI}]")


def has_control(value: str, *, line_breaks: bool = False) -> bool:
    """Whether ``value`` holds a control character: Unicode Cc, TAB, LF and CR allowed when
    ``line_breaks``, and the bidirectional embeddings, overrides and isolates (Unicode
    Bidi_Control but the marks LRM, RLM, ALM), which make text read in another order than it
    was typed ("Trojan Source", CVE-2021-42574) and spill their direction into whatever
    shows the text after it. The rule of every text field, the API's and the proposal
    form's."""
    return (_CONTROL_BUT_BREAKS if line_breaks else _CONTROL).search(value) is not None


def blank(value: str) -> bool:
    """Whether ``value`` shows nothing: every character invisible (controls, format characters
    such as zero-width spaces, spaces and separators; Unicode Cc, Cf, Zs, Zl, Zp; the Hangul
    fillers, the blank Braille pattern)."""
    return all(shows_nothing(char) for char in value)


_NO_CONTROL = "must not contain control characters (bidirectional overrides included)"


def _single_line(value: str) -> str:
    if value.isascii():
        # The same two checks, for ASCII only: its unprintable characters are exactly its
        # control characters, and its one invisible printable character is the space.
        if not value.isprintable():
            raise PydanticCustomError("invalid_character", _NO_CONTROL)
        if value and not value.strip(" "):
            raise PydanticCustomError("blank", "must contain a visible character")
        return value
    if has_control(value):
        raise PydanticCustomError("invalid_character", _NO_CONTROL)
    if value and blank(value):
        raise PydanticCustomError("blank", "must contain a visible character")
    return value


def _multi_line(value: str) -> str | None:
    if has_control(value, line_breaks=True):
        raise PydanticCustomError(
            "invalid_character",
            f"{_NO_CONTROL} other than line breaks",
        )
    return value or None


# --- the same text rules as JSON Schema patterns, for the OpenAPI document ------------------
# Each pattern matches exactly the raw strings its field accepts: stripped of WHITE_SPACE at both
# ends (pydantic's strip_whitespace), then the rules above; its maxLength is on the text as sent
# (``at_most``). tests/quotes/test_text_patterns.py checks each against its validator.

WHITE_SPACE = frozenset(
    [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029]
) | {0x202F, 0x205F, 0x3000}
"""What ``strip_whitespace`` strips: Unicode's White_Space property (PropList.txt)."""
_CONTROLS = frozenset(
    [*range(0x00, 0x20), *range(0x7F, 0xA0), *range(0x202A, 0x202F), *range(0x2066, 0x206A)]
)
"""``has_control``'s characters."""
_LINE_BREAKS = frozenset({0x09, 0x0A, 0x0D})


@functools.cache
def _invisible() -> frozenset[int]:
    return frozenset(code for code in range(sys.maxunicode + 1) if shows_nothing(chr(code)))


def _char_class(codes: frozenset[int], *, negate: bool = False) -> str:
    """A regex character class of ``codes`` that Python, ECMA 262 and Rust read alike: BMP
    characters as \\uXXXX, others as themselves."""
    parts: list[str] = []
    ordered = sorted(codes)
    start = previous = ordered[0]
    for code in [*ordered[1:], -1]:
        if code == previous + 1:
            previous = code
            continue
        parts.append(_char(start) if start == previous else f"{_char(start)}-{_char(previous)}")
        start = previous = code
    return f"[{'^' if negate else ''}{''.join(parts)}]"


def _char(code: int) -> str:
    return f"\\u{code:04x}" if code <= 0xFFFF else chr(code)


@functools.cache
def single_line_pattern(*, stripped: bool = True) -> str:
    """``_single_line`` as a pattern: after stripping (``stripped``), no control character and
    at least one visible one (not Cc, Cf, Zs, Zl, Zp)."""
    invisible = _invisible()
    visible = _char_class(invisible, negate=True)
    invisible_text = _char_class(invisible - _CONTROLS)
    no_control = _char_class(_CONTROLS, negate=True)
    if not stripped:
        return f"^{invisible_text}*{visible}{no_control}*$"
    edge = _char_class(invisible - WHITE_SPACE - _CONTROLS)  # invisible, kept by strip
    last = _char_class(WHITE_SPACE | _CONTROLS, negate=True)
    space = _char_class(WHITE_SPACE)
    core = f"(?:{edge}{invisible_text}*)?{visible}(?:{no_control}*{last})?"
    return f"^{space}*{core}{space}*$"


@functools.cache
def multi_line_pattern() -> str:
    """``_multi_line`` as a pattern: after stripping, no control character but line breaks."""
    refused = _CONTROLS - _LINE_BREAKS
    inner = _char_class(refused, negate=True)
    edge = _char_class(refused | WHITE_SPACE, negate=True)
    space = _char_class(WHITE_SPACE)
    return f"^{space}*(?:{edge}(?:{inner}*{edge})?{space}*)?$"


@functools.cache
def stripped_pattern(allowed: str, min_length: int) -> str:
    """A field stripped, then matching ``^[allowed]+$`` with at least ``min_length`` (>= 2)
    characters: ``allowed`` is a regex class body (its only white space the space)."""
    edge = f"[{allowed.replace(' ', '')}]"
    space = _char_class(WHITE_SPACE)
    return f"^{space}*{edge}[{allowed}]{{{min_length - 2},}}{edge}{space}*$"


@dataclass(frozen=True)
class DocumentedPattern:
    """``Annotated`` metadata: the field's JSON Schema ``pattern`` (computed once, when the
    document is built), replacing ``minLength`` (the pattern has the minimum)."""

    pattern: Callable[[], str]

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.pop("minLength", None)
        schema["pattern"] = self.pattern()
        return schema


_FREE_FORM_MAX_NODES = 100
_FREE_FORM_MAX_DEPTH = 4
_FREE_FORM_MAX_TEXT = 1000
_FREE_FORM_MAX_INT = 2**53 - 1


def _free_form(value: object) -> dict[str, Any]:
    """OTHER details (``FREE_FORM_SCHEMA``): a small JSON object of text, integers, booleans,
    null, lists and objects. A number without a fraction is an integer, ``2.0`` as ``2``, as
    JSON Schema's ``integer`` says (draft 2020-12 §6.1.1): stored as the integer."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise PydanticCustomError("invalid_type", "must be an object")
    nodes = 0

    def checked(node: object, depth: int) -> object:
        nonlocal nodes
        nodes += 1
        if nodes > _FREE_FORM_MAX_NODES or depth > _FREE_FORM_MAX_DEPTH:
            raise PydanticCustomError(
                "too_large",
                f"must hold at most {_FREE_FORM_MAX_NODES} values nested at most "
                f"{_FREE_FORM_MAX_DEPTH} levels deep",
            )
        if isinstance(node, dict):
            kept = {}
            for key, child in node.items():
                _free_text(key)
                kept[key] = checked(child, depth + 1)
            return kept
        if isinstance(node, list):
            return [checked(child, depth + 1) for child in node]
        if isinstance(node, str):
            _free_text(node)
            return node
        if node is None or isinstance(node, bool):
            return node
        if isinstance(node, Decimal) and node.is_finite() and node == node.to_integral_value():
            # adjusted() first: int() of 1E+999999999 would build a billion digits
            node = int(node) if node.adjusted() < 16 else _FREE_FORM_MAX_INT + 1
        if isinstance(node, int):
            if abs(node) > _FREE_FORM_MAX_INT:
                raise PydanticCustomError("out_of_range", "must hold integers below 2^53 only")
            return node
        # Stored with the standard JSON encoder and never as float: I-JSON (RFC 7493) only.
        raise PydanticCustomError(
            "invalid_type",
            "must hold only text, integers, booleans and null; send decimals as text",
        )

    kept = checked(value, 1)
    assert isinstance(kept, dict)
    return kept


def _free_form_schema() -> JsonSchemaValue:
    """``_free_form``'s rules as JSON Schema, but the count of values (``too_large``: no keyword
    counts the values of a whole tree): each level spelt out, down to the deepest, whose lists
    and objects are empty."""
    text = {"type": "string", "maxLength": _FREE_FORM_MAX_TEXT, "pattern": f"^[^\\u0000{_BIDI}]*$"}
    scalars: list[JsonSchemaValue] = [
        text,
        {"type": "integer", "minimum": -_FREE_FORM_MAX_INT, "maximum": _FREE_FORM_MAX_INT},
        {"type": "boolean"},
        {"type": "null"},
    ]
    value: JsonSchemaValue = {
        "anyOf": [
            *scalars,
            {"type": "array", "maxItems": 0},
            {"type": "object", "maxProperties": 0},
        ]
    }
    for _depth in range(_FREE_FORM_MAX_DEPTH - 2):
        containers = [
            {"type": "array", "items": value},
            {"type": "object", "propertyNames": text, "additionalProperties": value},
        ]
        value = {"anyOf": [*scalars, *containers]}
    return {
        "type": "object",
        "description": "Free-form small JSON object: text, integers, booleans, null, lists and "
        f"objects, at most {_FREE_FORM_MAX_NODES} values nested at most "
        f"{_FREE_FORM_MAX_DEPTH} levels deep; decimals as text.",
        "propertyNames": text,
        "additionalProperties": value,
        "examples": [{}],
    }


_NOT_IN_FREE_TEXT = re.compile(f"[\x00{_BIDI}]")
"""NUL (PostgreSQL text holds none) and the bidirectional embeddings, overrides and isolates
(``has_control``): free-form text keeps every other character, line breaks included."""


def _free_text(text: object) -> None:
    if not isinstance(text, str) or len(text) > _FREE_FORM_MAX_TEXT:
        raise PydanticCustomError(
            "too_large", f"must contain only strings of at most {_FREE_FORM_MAX_TEXT} characters"
        )
    if _NOT_IN_FREE_TEXT.search(text):
        raise PydanticCustomError(
            "invalid_character", "must not contain NUL or bidirectional overrides"
        )


# --- reusable field types -----------------------------------------------------------------


def at_most(limit: int) -> BeforeValidator:
    """A text's length limit as sent, before stripping: what the document's ``maxLength``
    says (a name padded past it with spaces is refused, not trimmed to fit)."""

    def check(value: object) -> object:
        if isinstance(value, str) and len(value) > limit:
            raise PydanticCustomError(
                "string_too_long",
                "String should have at most {max_length} characters",
                {"max_length": limit},
            )
        return value

    return BeforeValidator(check)


Text200 = Annotated[
    str,
    Strict(),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_single_line),
    DocumentedPattern(single_line_pattern),
    at_most(200),
]
Text500 = Annotated[
    str,
    Strict(),
    StringConstraints(strip_whitespace=True, min_length=1, max_length=500),
    AfterValidator(_single_line),
    DocumentedPattern(single_line_pattern),
    at_most(500),
]
_YEAR = "(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})"  # 0001-9999, as Python's
DATE_PATTERN = f"^{_YEAR}-[0-9]{{2}}-[0-9]{{2}}$"
"""``parse_iso_date``'s text (with ``format: date``: a real calendar date)."""
DATETIME_PATTERN = (
    f"^{_YEAR}-[0-9]{{2}}-[0-9]{{2}}T(?:[01][0-9]|2[0-3]):[0-5][0-9]"
    "(?::[0-5][0-9](?:\\.[0-9]{1,6})?)?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""``parse_aware_datetime``'s text (with ``format: date-time``: RFC 3339, seconds included)."""
_DECIMAL = "[0-9]{1,30}(?:\\.[0-9]{1,30})?"
_ZERO = "-0{1,30}(?:\\.0{1,30})?"  # -0 is zero
_NUMBER_RANGE = {"exclusiveMinimum": -1e30, "exclusiveMaximum": 1e30}  # _DECIMAL_DIGITS
AMOUNT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1e12, "multipleOf": 0.01},
        {
            "type": "string",
            "pattern": f"^(?:0{{0,18}}[0-9]{{1,12}}(?:\\.[0-9]{{1,30}})?|{_ZERO})$",
        },
    ]
}
"""A price or discount: >= 0 and below 10^12 (money.AMOUNT_LIMIT), a JSON number or a decimal
string (``_to_decimal``). Its places are the currency's minor units at most (a rule across two
fields: pricing.py)."""
ANY_AMOUNT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", **_NUMBER_RANGE, "multipleOf": 0.01},
        {"type": "string", "pattern": f"^-?{_DECIMAL}$"},
    ]
}
MARKUP_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": 100, "multipleOf": 0.01},
        {
            "type": "string",
            "pattern": "^(?:0{0,28}[0-9]{1,2}(?:\\.[0-9]{1,2}0{0,28})?"
            f"|0{{0,27}}100(?:\\.0{{1,30}})?|{_ZERO})$",
        },
    ]
}
"""0-100 with at most 2 significant decimals (``_at_most_two_places``)."""

IsoDate = Annotated[
    date,
    BeforeValidator(parse_iso_date),
    WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN}),
]
AwareDateTime = Annotated[
    datetime,
    BeforeValidator(parse_aware_datetime),
    WithJsonSchema({"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN}),
]
AnyAmount = Annotated[Decimal, BeforeValidator(_to_decimal), WithJsonSchema(ANY_AMOUNT_SCHEMA)]
Amount = Annotated[
    Decimal, Field(ge=0), BeforeValidator(_to_decimal), WithJsonSchema(AMOUNT_SCHEMA)
]
AirportCode = Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Z]{3}$")]


def whole(value: object) -> object:
    """``value`` as an ``int`` when it is a JSON integer as JSON Schema counts them (a number
    without a fraction, however written: 8.0 and 8E0 are 8; ``json.loads`` gives them as
    Decimal); any other value as it is, for the caller to refuse (text and booleans too)."""
    if (
        isinstance(value, Decimal)
        and value.is_finite()
        and value.adjusted() < 18  # never int() of 1E+999999999: a billion digits
        and value == value.to_integral_value()
    ):
        return int(value)
    return value


Whole = BeforeValidator(whole)
"""A JSON integer as JSON Schema counts them: ``8``, ``8.0``, ``8E0``."""
Rooms = Annotated[int, Strict(), Field(ge=1, le=100), Whole]
Quantity = Annotated[int, Strict(), Field(ge=1, le=10_000), Whole]
Travelers = Annotated[int, Strict(), Field(ge=1, le=50), Whole]
MAX_EXPIRES_IN_DAYS = 90
ExpiresInDays = Annotated[int, Strict(), Field(ge=1, le=MAX_EXPIRES_IN_DAYS), Whole]


class _Shape(BaseModel):
    """Common configuration: camelCase names on the wire, unknown fields are errors."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel)


# --- item details -------------------------------------------------------------------------


class FlightDetailsIn(_Shape):
    """One flight segment; times are local with their UTC offset (ISO 8601)."""

    carrier: Annotated[
        str, Strict(), StringConstraints(pattern=r"^(?:[A-Z][A-Z0-9]|[0-9][A-Z]|[A-Z]{3})$")
    ] = Field(description="IATA (2-character) or ICAO (3-letter) airline code.", examples=["FI"])
    flight_number: Annotated[
        str, Strict(), StringConstraints(pattern=r"^(?:[A-Z0-9]{2}[A-Z]?)?[0-9]{1,4}[A-Z]?$")
    ] = Field(description="Flight number, airline prefix optional.", examples=["FI543"])
    from_: AirportCode = Field(
        alias="from", description="IATA departure airport.", examples=["CDG"]
    )
    to: AirportCode = Field(description="IATA arrival airport.", examples=["KEF"])
    depart_at: AwareDateTime = Field(
        description="Local departure with offset.", examples=["2027-06-12T14:10:00+02:00"]
    )
    arrive_at: AwareDateTime = Field(
        description="Local arrival with offset.", examples=["2027-06-12T15:40:00+00:00"]
    )


class HotelDetailsIn(_Shape):
    """One hotel stay; check-out is after check-in."""

    name: Text200 = Field(examples=["Hotel Ranga"])
    check_in: IsoDate = Field(examples=["2027-06-14"])
    check_out: IsoDate = Field(examples=["2027-06-16"])
    rooms: Rooms = Field(examples=[2])


class ActivityDetailsIn(_Shape):
    """One activity on one day of the trip."""

    name: Text200 = Field(examples=["Glacier hike at Skaftafell"])
    date: IsoDate = Field(examples=["2027-06-17"])


class TransferDetailsIn(_Shape):
    """One ground transfer; places are free text."""

    date: IsoDate = Field(examples=["2027-06-12"])
    from_: Text200 | None = Field(default=None, alias="from", examples=["KEF"])
    to: Text200 | None = Field(default=None, examples=["Reykjavik hotel"])


# --- items --------------------------------------------------------------------------------


ITEM_ID_PATTERN = "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
"""An item id: a UUID (RFC 9562) in its lower-case text form, as the server gives it."""


class _ItemIn(_Shape):
    id: Annotated[str, Strict(), StringConstraints(pattern=ITEM_ID_PATTERN)] | None = Field(
        default=None,
        description="The item's id, as read. None on a create (a new quote has no item yet: "
        "an id is refused there, `unknown_id`). On a PATCH an item sent with it is that "
        "item of the quote edited (an id it has no item of is refused); one sent without it "
        "takes the id of the item at its position in the quote, unless another item names "
        "that id, or is a new item with a new id. With `Prefer: merge` an item sent without "
        "an id is a new item.",
        examples=["01a2493d-90b2-7df8-9a89-0bb96bdcd1e9"],
    )
    description: Text500 = Field(examples=["FI 543 CDG-KEF"])
    quantity: Quantity = Field(description="Units priced at unitPrice.", examples=[4])
    unit_price: Amount = Field(
        description="Price of one unit in the quote's currency (ISO 4217 minor units at most).",
        examples=["289.90"],
    )
    line_total: AnyAmount | None = Field(
        default=None,
        description="Optional client-computed quantity x unitPrice; must equal the server's.",
        examples=["1159.60"],
    )


class FlightItemIn(_ItemIn):
    type: Literal["FLIGHT"]
    details: FlightDetailsIn


class HotelItemIn(_ItemIn):
    type: Literal["HOTEL"]
    details: HotelDetailsIn


class ActivityItemIn(_ItemIn):
    type: Literal["ACTIVITY"]
    details: ActivityDetailsIn


class TransferItemIn(_ItemIn):
    type: Literal["TRANSFER"]
    details: TransferDetailsIn


class OtherItemIn(_ItemIn):
    type: Literal["OTHER"]
    details: Annotated[
        dict[str, Any], BeforeValidator(_free_form), WithJsonSchema(_free_form_schema())
    ] = Field(default_factory=dict)


QuoteItemIn = Annotated[
    FlightItemIn | HotelItemIn | ActivityItemIn | TransferItemIn | OtherItemIn,
    Field(discriminator="type"),
]


class ClientPricingIn(_Shape):
    """Totals the client computed; each one sent must equal the server's (ITEMS_INCONSISTENT)."""

    subtotal: AnyAmount | None = Field(default=None, examples=["6739.50"])
    markup_amount: AnyAmount | None = Field(default=None, examples=["1010.93"])
    discount: AnyAmount | None = Field(default=None, examples=["120.00"])
    total: AnyAmount | None = Field(default=None, examples=["7630.43"])
    line_totals: list[AnyAmount] | None = Field(default=None, max_length=10_000)


_EXAMPLE: dict[str, Any] = {
    "clientId": "c_7Hq2",
    "tripName": "Edinburgh weekend",
    "destination": "Edinburgh, UK",
    "startDate": "2027-03-19",
    "endDate": "2027-03-20",
    "travelers": 1,
    "currency": "GBP",
    "markupPercent": "10",
    "discount": "0",
    "expiresInDays": 3,
    "items": [
        {
            "type": "HOTEL",
            "description": "The Balmoral",
            "quantity": 1,
            "unitPrice": "495.00",
            "details": {
                "name": "The Balmoral",
                "checkIn": "2027-03-19",
                "checkOut": "2027-03-20",
                "rooms": 1,
            },
        }
    ],
}


class QuoteIn(_Shape):
    """A quote as the agent sends it (create body; a PATCH is merged into this form first)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    client_id: Annotated[
        str,
        Strict(),
        StringConstraints(min_length=1, max_length=64),
        AfterValidator(_single_line),
        AfterValidator(canonical_id),  # a UUID in upper case names the same client
        DocumentedPattern(functools.partial(single_line_pattern, stripped=False)),
    ] = Field(description="One of the agent's clients.", examples=["c_7Hq2"])
    trip_name: Text200 = Field(examples=["Iceland ring road"])
    destination: Text200 = Field(examples=["Reykjavik, Iceland"])
    start_date: IsoDate = Field(description="First day of the trip.", examples=["2027-06-12"])
    end_date: IsoDate = Field(
        description="Last day; after startDate, at most 365 days later.", examples=["2027-06-22"]
    )
    travelers: Travelers = Field(examples=[4])
    currency: Annotated[str, Strict()] = Field(
        description="ISO 4217 code from the configured whitelist.",
        examples=["EUR"],
        json_schema_extra={"pattern": "^[A-Z]{3}$"},
    )
    markup_percent: Annotated[
        Decimal,
        Field(ge=0, le=100),
        BeforeValidator(_to_decimal),
        AfterValidator(_at_most_two_places),
        WithJsonSchema(MARKUP_SCHEMA),
    ] = Field(default=Decimal(0), description="0-100, at most 2 decimals.", examples=["15"])
    discount: Amount = Field(
        default=Decimal(0),
        description="Amount off the total, in the currency.",
        examples=["120.00"],
    )
    expires_in_days: ExpiresInDays = Field(
        default=14, description="Days the sent quote stays valid.", examples=[30]
    )
    notes: (
        Annotated[
            str,
            Strict(),
            StringConstraints(strip_whitespace=True, max_length=2000),
            AfterValidator(_multi_line),
            DocumentedPattern(multi_line_pattern),
            at_most(2000),
        ]
        | None
    ) = Field(default=None, description="Free text; blank or null clears it.")
    items: list[QuoteItemIn] = Field(default_factory=list)
    pricing: ClientPricingIn | None = Field(
        default=None, description="Optional client-computed totals, checked against the server's."
    )
