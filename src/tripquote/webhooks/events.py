"""The event types: one per kind of committed quote change (the outbox's ``events.type``)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

EVENT_TYPES: Mapping[str, str] = MappingProxyType(
    {
        "CREATE": "quote.created",
        "UPDATE": "quote.updated",
        "SEND": "quote.sent",
        "ACCEPT": "quote.accepted",
        "REJECT": "quote.rejected",
        "EXPIRE": "quote.expired",
        "DELETE": "quote.cancelled",
    }
)
"""A revision's ``operation`` -> the type of the event its statement writes."""

ALL_TYPES: tuple[str, ...] = tuple(EVENT_TYPES.values())
"""Every event type a subscription may name in ``eventTypes``."""


def event_type_sql(operation: str) -> str:
    """SQL: the event type of operation expression ``operation`` (``EVENT_TYPES``, written
    once here; an unknown operation is NULL, which ``events.type NOT NULL`` refuses)."""
    whens = " ".join(f"WHEN '{op}' THEN '{kind}'" for op, kind in EVENT_TYPES.items())
    return f"(CASE {operation} {whens} END)"
