"""Stored quotes rendered in their API form (camelCase, JSON-ready: amounts as strings in the
currency's ISO 4217 minor units, dates ISO 8601, instants ISO 8601 UTC with ``Z``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from tripquote.money import fmt_money


def fmt_instant(value: datetime | None) -> str | None:
    """An aware instant as ISO 8601 UTC with milliseconds and ``Z``; None stays None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def item_to_api(item: Mapping[Any, Any], currency: str) -> dict[str, Any]:
    """One item row in API form."""
    return {
        "type": item["type"],
        "description": item["description"],
        "quantity": item["quantity"],
        "unitPrice": fmt_money(item["unit_price"], currency),
        "lineTotal": fmt_money(item["line_total"], currency),
        "details": item["details"],
    }


def quote_to_api(
    row: Mapping[Any, Any], items: Sequence[Mapping[Any, Any]], *, status: str | None = None
) -> dict[str, Any]:
    """A quote row and its item rows in API form; ``status`` overrides the stored one (expiry)."""
    currency = row["currency"]
    return {
        "id": row["id"],
        "agentId": row["agent_id"],
        "clientId": row["client_id"],
        "tripName": row["trip_name"],
        "destination": row["destination"],
        "startDate": row["start_date"].isoformat(),
        "endDate": row["end_date"].isoformat(),
        "travelers": row["travelers"],
        "currency": currency,
        "markupPercent": format(row["markup_percent"].quantize(Decimal("0.01")), "f"),
        "discount": fmt_money(row["discount"], currency),
        "expiresInDays": row["expires_in_days"],
        "notes": row["notes"],
        "items": [item_to_api(item, currency) for item in items],
        "pricing": {
            "subtotal": fmt_money(row["subtotal"], currency),
            "markupAmount": fmt_money(row["markup_amount"], currency),
            "discount": fmt_money(row["discount"], currency),
            "total": fmt_money(row["total"], currency),
        },
        "status": status or row["status"],
        "version": row["version"],
        "createdAt": fmt_instant(row["created_at"]),
        "lastModifiedBy": row["last_modified_by"],
        "lastModifiedAt": fmt_instant(row["last_modified_at"]),
        "sentAt": fmt_instant(row["sent_at"]),
        "expiresAt": fmt_instant(row["expires_at"]),
    }


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


def api_to_input(quote: Mapping[Any, Any]) -> dict[str, Any]:
    """The client-settable part of an API-form quote: what a PATCH is merged into."""
    current = {name: quote[name] for name in INPUT_FIELDS}
    current["items"] = [
        {k: item[k] for k in ("type", "description", "quantity", "unitPrice", "details")}
        for item in quote["items"]
    ]
    return current
