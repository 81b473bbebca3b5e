"""The quote lifecycle: statuses, operations, and the one table of allowed transitions.

Pure functions on plain data. ``TRANSITIONS`` is the single place a reader finds what each
status allows (BRIEF "Lifecycle"); expiry instants follow the agency's IANA time zone.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from types import MappingProxyType
from zoneinfo import ZoneInfo

from tripquote.errors import QuoteAlreadySent, QuoteStateInvalid, QuoteValidationFailed, field_error


class QuoteStatus(StrEnum):
    """Where a quote is in its life (BRIEF "Lifecycle")."""

    DRAFT = "DRAFT"
    SENT = "SENT"
    ACCEPTED = "ACCEPTED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    CANCELLED = "CANCELLED"


class Operation(StrEnum):
    """What an agent (or the expiry sweep, EXPIRE) asks to do to a quote."""

    UPDATE = "UPDATE"
    DELETE = "DELETE"
    SEND = "SEND"
    ACCEPT = "ACCEPT"
    REJECT = "REJECT"
    EXPIRE = "EXPIRE"


TRANSITIONS: Mapping[tuple[QuoteStatus, Operation], QuoteStatus] = MappingProxyType(
    {
        (QuoteStatus.DRAFT, Operation.UPDATE): QuoteStatus.DRAFT,
        (QuoteStatus.DRAFT, Operation.DELETE): QuoteStatus.CANCELLED,
        (QuoteStatus.DRAFT, Operation.SEND): QuoteStatus.SENT,
        (QuoteStatus.SENT, Operation.ACCEPT): QuoteStatus.ACCEPTED,
        (QuoteStatus.SENT, Operation.REJECT): QuoteStatus.REJECTED,
        (QuoteStatus.SENT, Operation.EXPIRE): QuoteStatus.EXPIRED,
        (QuoteStatus.REJECTED, Operation.UPDATE): QuoteStatus.DRAFT,
        (QuoteStatus.REJECTED, Operation.DELETE): QuoteStatus.CANCELLED,
    }
)
"""Every allowed (status, operation) → new status. Anything absent is forbidden."""

OPEN: tuple[str, ...] = (QuoteStatus.DRAFT.value, QuoteStatus.SENT.value)
"""The statuses counted against an agent's open-quote quota (a SENT quote until it expires)."""


LINK_ENDED_BY: Mapping[Operation, str] = MappingProxyType(
    {Operation.SEND: "SUPERSEDED", Operation.DELETE: "CANCELLED"}
)
"""The operations that end a quote's open proposal links, and the reason recorded: a re-send
(its new link replaces them) and a cancel. A send also makes the new link."""


def from_statuses(operation: Operation) -> list[str]:
    """The statuses TRANSITIONS lets ``operation`` leave, for a statement's guard."""
    return [status.value for status, op in TRANSITIONS if op is operation]


def target_of(operation: Operation) -> QuoteStatus:
    """The one status ``operation`` leads to (every operation has one in TRANSITIONS)."""
    (target,) = {status for (_, op), status in TRANSITIONS.items() if op is operation}
    return target


_LOCKED_BY_SENDING = frozenset({Operation.UPDATE, Operation.DELETE, Operation.SEND})


def allowed_operations(status: QuoteStatus) -> list[Operation]:
    """Operations TRANSITIONS allows from ``status``, in Operation order."""
    return [operation for operation in Operation if (status, operation) in TRANSITIONS]


def check_transition(status: QuoteStatus, operation: Operation) -> QuoteStatus:
    """The status after ``operation``; QuoteAlreadySent (edit a SENT quote), QuoteStateInvalid."""
    target = TRANSITIONS.get((status, operation))
    if target is not None:
        return target
    details = {
        "currentStatus": status.value,
        "operation": operation.value,
        "allowedOperations": [op.value for op in allowed_operations(status)],
    }
    if status is QuoteStatus.SENT and operation in _LOCKED_BY_SENDING:
        raise QuoteAlreadySent(
            "The quote was sent to the client and is locked: it can only be accepted, "
            "rejected, or expire.",
            details=details,
        )
    allowed = ", ".join(details["allowedOperations"]) or "nothing"
    article = "an" if status.value[0] in "AEIOU" else "a"
    raise QuoteStateInvalid(
        f"{operation.value} is not allowed on {article} {status.value} quote (allowed: {allowed}).",
        details=details,
    )


ITEMS_TO_SEND = 1
"""A quote is sent only with at least this many items."""


def items_needed(operation: Operation) -> int:
    """The items a quote needs for ``operation`` (a statement's guard)."""
    return ITEMS_TO_SEND if operation is Operation.SEND else 0


def check_sendable(item_count: int) -> None:
    """A quote is sent only with ``ITEMS_TO_SEND`` items; QuoteValidationFailed at ``items``."""
    if item_count < ITEMS_TO_SEND:
        raise QuoteValidationFailed(
            "A quote needs at least one item to be sent.",
            details={"errors": [field_error("items", "too_short", "Add an item, then send.")]},
        )


def local_today(now: datetime, timezone: str) -> date:
    """The date it is at ``now`` (aware) in the IANA ``timezone``: the agency's "today"."""
    if now.utcoffset() is None:
        raise ValueError("local_today needs a timezone-aware now")
    return now.astimezone(ZoneInfo(timezone)).date()


def compute_expires_at(sent_at: datetime, expires_in_days: int, timezone: str) -> datetime:
    """UTC instant ending the last valid day (sent date + N days) in the IANA ``timezone``."""
    if sent_at.utcoffset() is None:
        raise ValueError("compute_expires_at needs a timezone-aware sent_at")
    zone = ZoneInfo(timezone)
    last_valid_day = sent_at.astimezone(zone).date() + timedelta(days=expires_in_days)
    # The midnight that starts the next local day. If a DST gap swallows that midnight,
    # fold=0 maps it to the pre-transition offset, which is exactly the instant the day starts.
    end = datetime.combine(last_valid_day + timedelta(days=1), time(0), tzinfo=zone)
    return end.astimezone(UTC)
