"""The event types: one per kind of committed quote change (the outbox's ``events.type``)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, get_args

EventType = Literal[
    "quote.created",
    "quote.updated",
    "quote.sent",
    "quote.accepted",
    "quote.rejected",
    "quote.expired",
    "quote.cancelled",
    "quote.viewed",
]
"""Every event type, as a subscription's ``eventTypes`` names them."""

ALL_TYPES: tuple[str, ...] = get_args(EventType)

EVENT_TYPES: Mapping[str, EventType] = MappingProxyType(
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

VIEWED: EventType = "quote.viewed"
"""The client opened the proposal's link for the first time (no revision: the quote's version
stays; the event carries the version sent, ``proposals/sql.py`` ``VIEW``)."""

# every operation has its type, and every type an operation but the view
assert set(EVENT_TYPES.values()) | {VIEWED} == set(ALL_TYPES)


def event_type_sql(operation: str) -> str:
    """SQL: the event type of operation expression ``operation`` (``EVENT_TYPES``, written
    once here; an unknown operation is NULL, which ``events.type NOT NULL`` refuses)."""
    whens = " ".join(f"WHEN '{op}' THEN '{kind}'" for op, kind in EVENT_TYPES.items())
    return f"(CASE {operation} {whens} END)"
