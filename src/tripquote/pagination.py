"""Keyset cursors and the page size every list takes.

Clients treat a cursor as opaque (they pass ``nextCursor`` back as ``cursor``), but its grammar
is given in the OpenAPI document and every string it matches names a position, so no
well-formed cursor is refused; the empty string is no cursor (the first page):

- the lists of quotes and clients: ``(timestamp, id)`` written ``<microseconds since the Unix
  epoch>.<id>`` (``CURSOR_PATTERN``);
- a quote's history: the version it resumes after, in decimal (``VERSION_CURSOR_PATTERN``);
- a subscription's deliveries: the delivery id (a 64-bit identity) it resumes after, in
  decimal (``ID_CURSOR_PATTERN``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from tripquote.errors import QUERY_INVALID, QuoteValidationFailed, field_error
from tripquote.quotes.rules import MAX_VERSION

DEFAULT_LIMIT = 50
MAX_LIMIT = 200
LIMIT_BOUNDS = {"minimum": 1, "maximum": MAX_LIMIT}
"""``limit``'s range as JSON Schema keywords, for the OpenAPI document (``check_limit``)."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"([0-9]{1,17})\.([A-Za-z0-9_-]{1,64})", re.ASCII)
# 17 digits of microseconds reach the year 5138; ids are UUIDs (any [A-Za-z0-9_-] id would do).
CURSOR_PATTERN = rf"^(?:{_CURSOR.pattern})?$"
"""A list cursor's grammar as a JSON Schema ``pattern`` (empty: no cursor)."""
_VERSION_CURSOR = re.compile(r"[0-9]{1,10}", re.ASCII)
VERSION_CURSOR_PATTERN = rf"^(?:{_VERSION_CURSOR.pattern})?$"
"""A history cursor's grammar as a JSON Schema ``pattern`` (empty: no cursor)."""


_ID_CURSOR = re.compile(r"[0-9]{1,19}", re.ASCII)
ID_CURSOR_PATTERN = rf"^(?:{_ID_CURSOR.pattern})?$"
"""A delivery cursor's grammar as a JSON Schema ``pattern`` (empty: no cursor)."""
MAX_ID = 2**63 - 1
"""The largest id of a PostgreSQL ``bigint`` identity."""


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
        raise _malformed()
    return _EPOCH + timedelta(microseconds=int(match.group(1))), match.group(2)


def encode_version_cursor(version: int) -> str:
    """The cursor that resumes a quote's history after ``version``."""
    return str(version)


def decode_version_cursor(cursor: str) -> int:
    """The version a history cursor resumes after (0 to ``MAX_VERSION``: a larger one is past
    every version); QUOTE_VALIDATION_FAILED unless it matches ``VERSION_CURSOR_PATTERN``."""
    if _VERSION_CURSOR.fullmatch(cursor) is None:
        raise _malformed()
    return min(int(cursor), MAX_VERSION)


def decode_id_cursor(cursor: str) -> int:
    """The delivery id a cursor resumes after (0 to ``MAX_ID``: a larger one is past every
    id); QUOTE_VALIDATION_FAILED unless it matches ``ID_CURSOR_PATTERN``."""
    if _ID_CURSOR.fullmatch(cursor) is None:
        raise _malformed()
    return min(int(cursor), MAX_ID)


def _malformed() -> QuoteValidationFailed:
    return QuoteValidationFailed(
        "The cursor is malformed.",
        details={"errors": [field_error("cursor", "invalid", "Use nextCursor as returned.")]},
    )


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
