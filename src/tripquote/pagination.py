"""Keyset cursors: ``(timestamp, id)`` pairs written ``<microseconds since the Unix epoch>.<id>``.

Clients treat a cursor as opaque (they pass ``nextCursor`` back as ``cursor``), but its grammar
is ``CURSOR_PATTERN``, given in the OpenAPI document: every string it matches names a position
in a listing, so no well-formed cursor is refused. The empty string is no cursor (first page).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tripquote.errors import QUERY_INVALID, QuoteValidationFailed, field_error

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
LIMIT_BOUNDS = {"minimum": 1, "maximum": MAX_LIMIT}
"""``limit``'s range as JSON Schema keywords, for the OpenAPI document (``check_limit``)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"([0-9]{1,17})\.([A-Za-z0-9_-]{1,64})", re.ASCII)
# 17 digits of microseconds reach the year 5138; ids are UUIDs (any [A-Za-z0-9_-] id would do).
CURSOR_PATTERN = rf"^(?:{_CURSOR.pattern})?$"
"""The cursor's grammar as a JSON Schema ``pattern`` (empty: no cursor)."""


def encode_cursor(at: datetime, row_id: str) -> str:
    """The cursor that resumes a listing after the row ``(at, row_id)`` (``at`` aware)."""
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    cursor = f"{micros}.{row_id}"
    assert _CURSOR.fullmatch(cursor), cursor  # ids and instants the service makes always fit
    return cursor


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The ``(timestamp, id)`` a cursor names; QUOTE_VALIDATION_FAILED at ``cursor`` unless it
    matches ``CURSOR_PATTERN``."""
    match = _CURSOR.fullmatch(cursor)
    if match is None:
        raise QuoteValidationFailed(
            "The cursor is malformed.",
            details={"errors": [field_error("cursor", "invalid", "Use nextCursor as returned.")]},
        )
    return _EPOCH + timedelta(microseconds=int(match.group(1))), match.group(2)


def check_limit(limit: int) -> int:
    """``limit`` if within 1..MAX_LIMIT, else QUOTE_VALIDATION_FAILED at ``limit``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise QuoteValidationFailed(
            QUERY_INVALID,
            details={
                "errors": [field_error("limit", "out_of_range", f"limit must be 1..{MAX_LIMIT}.")]
            },
        )
    return limit
