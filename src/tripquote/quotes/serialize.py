"""The API form's vocabulary: its fields in order, the client-settable ones, the instant
format (ISO 8601 UTC, milliseconds, ``Z``). ``model.Quote.to_api`` renders a quote with it."""

from __future__ import annotations

from datetime import UTC, datetime


def fmt_instant(value: datetime | None) -> str | None:
    """An aware instant as ISO 8601 UTC with milliseconds and ``Z``; None stays None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


INPUT_FIELDS = (
    "clientId",
    "tripName",
    "destination",
    "startDate",
    "endDate",
    "travelers",
    "currency",
    "markupPercent",
    "discount",
    "expiresInDays",
    "notes",
    "items",
)
"""The top-level fields a client sets; ``changedFields`` names only these."""

API_FIELDS = (
    *("id", "agentId", "clientId", "tripName", "destination", "startDate", "endDate"),
    *("travelers", "currency", "markupPercent", "discount", "expiresInDays", "notes"),
    *("items", "pricing", "status", "version", "createdAt", "lastModifiedBy"),
    *("lastModifiedAt", "sentAt", "expiresAt"),
)
"""A quote's API form, keys in order: every response and every revision snapshot."""
