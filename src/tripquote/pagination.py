"""Opaque keyset cursors: ``(timestamp, id)`` pairs, base64url-encoded."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime

from tripquote.errors import QUERY_INVALID, QuoteValidationFailed, field_error

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


def encode_cursor(at: datetime, row_id: str) -> str:
    """The cursor that resumes a listing after the row ``(at, row_id)``."""
    raw = f"{at.isoformat()}|{row_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The ``(timestamp, id)`` a cursor names; QUOTE_VALIDATION_FAILED if malformed."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        at_text, _, row_id = base64.urlsafe_b64decode(padded).decode().partition("|")
        at = datetime.fromisoformat(at_text)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise QuoteValidationFailed(
            "The cursor is malformed.",
            details={"errors": [field_error("cursor", "invalid", "Use nextCursor as returned.")]},
        ) from exc
    if not row_id or at.tzinfo is None:
        raise QuoteValidationFailed(
            "The cursor is malformed.",
            details={"errors": [field_error("cursor", "invalid", "Use nextCursor as returned.")]},
        )
    return at, row_id


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
