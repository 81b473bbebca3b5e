"""Opaque keyset cursors, base64url-encoded: ``(timestamp, id)`` pairs for the lists of quotes
and clients, a version for a quote's history; and the page size every list takes."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from tripquote.errors import QUERY_INVALID, QuoteValidationFailed, field_error
from tripquote.quotes.rules import MAX_VERSION

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(at: datetime, row_id: str) -> str:
    """The cursor that resumes a listing after the row ``(at, row_id)``."""
    return _encode(f"{at.isoformat()}|{row_id}")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The ``(timestamp, id)`` a cursor names; QUOTE_VALIDATION_FAILED if malformed."""
    at_text, _, row_id = _decode(cursor).partition("|")
    try:
        at = datetime.fromisoformat(at_text)
    except ValueError as exc:
        raise _malformed() from exc
    if not row_id or at.tzinfo is None:
        raise _malformed()
    return at, row_id


def encode_version_cursor(version: int) -> str:
    """The cursor that resumes a quote's history after ``version``."""
    return _encode(f"v{version}")


def decode_version_cursor(cursor: str) -> int:
    """The version a history cursor resumes after (1 to ``MAX_VERSION``);
    QUOTE_VALIDATION_FAILED if malformed."""
    text = _decode(cursor)
    digits = text[1:]
    if not text.startswith("v") or not digits.isascii() or not digits.isdigit():
        raise _malformed()
    if len(digits) > len(str(MAX_VERSION)) or not 1 <= int(digits) <= MAX_VERSION:
        raise _malformed()
    return int(digits)


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.urlsafe_b64decode(padded).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise _malformed() from exc


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
