"""Pydantic validation errors turned into ``details.errors`` entries with JSON paths."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from tripquote.db.tables import ID
from tripquote.errors import QUERY_INVALID, QuoteValidationFailed, TripquoteError, field_error

# Pydantic error types, renamed to the short codes clients see.
_CODES = {
    "missing": "required",
    "extra_forbidden": "unknown_field",
    "string_too_short": "too_short",
    "string_too_long": "too_long",
    "greater_than": "out_of_range",
    "greater_than_equal": "out_of_range",
    "less_than": "out_of_range",
    "less_than_equal": "out_of_range",
    "union_tag_invalid": "not_allowed",
    "literal_error": "not_allowed",
    "enum": "not_allowed",
}


def json_path(loc: Sequence[int | str]) -> str:
    """A pydantic ``loc`` as a JSON path: ``("items", 0, "to")`` -> ``items[0].to``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Every error of ``exc`` as ``{path, code, message}``, in pydantic's order."""
    out: list[dict[str, str]] = []
    for err in exc.errors(include_url=False, include_input=False):
        code = _CODES.get(err["type"], err["type"])
        message: Any = err.get("msg", "invalid value")
        out.append(field_error(json_path(err["loc"]), code, str(message)))
    return out


_UUID_TEXT = re.compile(r"[0-9A-Fa-f]{8}(?:-[0-9A-Fa-f]{4}){3}-[0-9A-Fa-f]{12}")
"""A UUID in its hyphenated text form, hex digits of either case (RFC 9562 §4)."""


def is_uuid(value: str) -> bool:
    """Whether ``value`` is a UUID's text (``_UUID_TEXT``), as every stored id is."""
    return _UUID_TEXT.fullmatch(value) is not None


def canonical_id(value: str) -> str:
    """``value`` as ids are stored: a UUID's hex digits lower-cased (they are case-insensitive
    on input, RFC 9562 §4; ``ids.new_id`` writes them lower-case); any other text as is."""
    return value.lower() if _UUID_TEXT.fullmatch(value) else value


def path_id(value: str, not_found: type[TripquoteError]) -> str:
    """An id taken from the URL, or ``not_found`` (404) when no stored id can equal it.

    A NUL byte (``%00``) is the one character PostgreSQL text cannot hold (SQLSTATE 22021), and
    no id is longer than the id columns (``db/tables.py`` ``ID``): either answers 404 with no
    query, and without echoing the value (a 60,000-character id made a 60 KB 404). A UUID's hex
    digits are case-insensitive on input (RFC 9562 §4) while ids are stored as lower-case text
    (``ids.new_id``, ``gen_random_uuid()::text``), so one in upper case is looked up lower-cased
    (``01A2…`` names the quote ``01a2…``; before, a 404).
    """
    if "\x00" in value or len(value) > ID:
        raise not_found()
    return canonical_id(value)


NO_NUL = "^[^\\x00]*$"
"""``query_text``'s rule as a JSON Schema ``pattern``: text without NUL."""


def query_text(value: str | None, name: str) -> str | None:
    """A text query parameter, or QUOTE_VALIDATION_FAILED at ``name`` if it holds a NUL byte
    (see ``path_id``)."""
    if value is not None and "\x00" in value:
        raise QuoteValidationFailed(
            QUERY_INVALID,
            details={
                "errors": [field_error(name, "invalid_character", f"{name} must not hold NUL.")]
            },
        )
    return value
