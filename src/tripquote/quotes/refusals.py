"""The one place a write's refusal becomes an error: ``explain`` reads the facts the statement
saw (``store.Facts``) in the note's order — the caller, the quote (visible, may act), its
status, its version, then validation, client, pricing and consistency, then the quota. SQL
decided whether to write; this only says why it did not."""

from __future__ import annotations

from enum import Enum

from tripquote.agents.access import caller_refusal
from tripquote.errors import (
    AuthorizationFailed,
    ClientNotFound,
    QuotaExceeded,
    QuoteConflictVersion,
    QuoteNotFound,
    QuoteValidationFailed,
    TripAlreadyStarted,
    TripquoteError,
    field_error,
)
from tripquote.quotes.lifecycle import Operation, check_sendable, check_transition
from tripquote.quotes.model import unknown_item_id
from tripquote.quotes.results import Facts
from tripquote.quotes.serialize import fmt_instant

_NOT_YOURS = "This record belongs to another agent of your agency."


class Verdict(Enum):
    """A refusal that is no error: nothing to save, or the quota bound must be counted."""

    UNCHANGED = "unchanged"
    AT_QUOTA_BOUND = "at_quota_bound"


def access_error(facts: Facts, quote_id: str) -> TripquoteError | None:
    """AUTHENTICATION_FAILED (token revoked), AGENT_NOT_FOUND, QUOTE_NOT_FOUND (missing or
    another agency's: the same answer) or AUTHORIZATION_FAILED (another agent's, for a
    non-admin); None when the caller may act."""
    error = caller_refusal(token_revoked=facts.token_revoked, agent_ok=facts.agent_ok)
    if error is not None:
        return error
    if not facts.visible:
        return QuoteNotFound(details={"quoteId": quote_id})
    if not facts.may_act:
        return AuthorizationFailed(_NOT_YOURS)
    return None


def explain(
    facts: Facts,
    *,
    operation: Operation | None,
    quote_id: str,
    expected: int | None = None,
    conflict_status: int | None = None,
    client_id: str | None = None,
    invalid: TripquoteError | None = None,
    pending: TripquoteError | None = None,
) -> TripquoteError | Verdict | None:
    """The error (or verdict) ``facts`` call for; None when they explain nothing (the write
    met a concurrent commit its facts predate). ``operation`` None: a create (no quote yet).
    ``invalid``: the input's validation error; ``pending``: its pricing or consistency error
    (reported after the client). QUOTE_CONFLICT_VERSION comes without ``changedFields``."""
    error = caller_refusal(token_revoked=facts.token_revoked, agent_ok=facts.agent_ok)
    if error is not None:
        return error
    if operation is not None:
        error = access_error(facts, quote_id)
        if error is not None:
            return error
        assert facts.status is not None
        try:
            check_transition(facts.status, operation)
        except TripquoteError as refused:
            return refused
        if facts.version != expected:
            return version_conflict(facts, quote_id, expected, conflict_status)
        if facts.unknown_items:
            errors = [unknown_item_id(position) for position in facts.unknown_items]
            return QuoteValidationFailed(details={"errors": errors})
        if operation is Operation.SEND and facts.trip_started:
            return trip_already_started(quote_id, facts)
        if facts.item_count is not None and operation is Operation.SEND:
            try:
                check_sendable(facts.item_count)
            except TripquoteError as refused:
                return refused
    if invalid is not None:
        return invalid
    if not facts.client_kept:
        if not facts.client_visible:
            return ClientNotFound(details={"clientId": client_id})
        if not facts.client_may_use:
            return AuthorizationFailed(_NOT_YOURS)
    if pending is not None:
        return pending
    if not facts.changed:
        return Verdict.UNCHANGED
    if facts.at_bound:
        return Verdict.AT_QUOTA_BOUND
    return None


def version_conflict(
    facts: Facts,
    quote_id: str,
    expected: int | None,
    http_status: int | None,
    message: str | None = None,
) -> QuoteConflictVersion:
    """QUOTE_CONFLICT_VERSION (``http_status``: None for its 409): the quote is at
    ``facts.version``, not ``expected`` (or, with ``message``, a precondition refuses the
    version it is at)."""
    return QuoteConflictVersion(
        message,
        details={
            "quoteId": quote_id,
            "expectedVersion": expected,
            "actualVersion": facts.version,
            "lastModifiedBy": facts.last_modified_by,
            "lastModifiedAt": fmt_instant(facts.last_modified_at),
        },
        http_status=http_status,
    )


def trip_already_started(quote_id: str, facts: Facts) -> TripAlreadyStarted:
    """TRIP_ALREADY_STARTED for a send the statement refused because the trip has started
    (``sql.trip_started``): ``details.quoteId``, ``startDate`` and ``errors`` at ``startDate``."""
    assert facts.start_date is not None
    start = facts.start_date.isoformat()
    return TripAlreadyStarted(
        details={
            "quoteId": quote_id,
            "startDate": start,
            "errors": [
                field_error(
                    "startDate",
                    "trip_started",
                    f"The trip started on {start} (the agency's time zone): move the dates "
                    "to a trip that has not started to send it.",
                )
            ],
        }
    )


def quota_exceeded(limit: int, current: int) -> QuotaExceeded:
    """QUOTA_EXCEEDED for open quotes, with ``{resource, limit, current}`` in details."""
    return QuotaExceeded(
        f"The agent already has {current} open quotes (limit {limit}).",
        details={"resource": "openQuotes", "limit": limit, "current": current},
    )
