"""The checks a save runs against stored state: visibility, client ownership, the open-quote
quota, the effective status, and the QUOTE_CONFLICT_VERSION report with ``changedFields``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tripquote.agents.access import check_access
from tripquote.agents.repository import Principal
from tripquote.db.transaction import UnitConnection
from tripquote.errors import ClientNotFound, QuotaExceeded, QuoteConflictVersion, QuoteNotFound
from tripquote.http import Services
from tripquote.quotes import repository as repo
from tripquote.quotes import writes
from tripquote.quotes.lifecycle import Operation, QuoteStatus, check_transition, effective_status
from tripquote.quotes.repository import QuoteRecord
from tripquote.quotes.rules import changed_fields
from tripquote.quotes.serialize import INPUT_FIELDS, quote_to_api


def quota_exceeded(limit: int, current: int) -> QuotaExceeded:
    """QUOTA_EXCEEDED for open quotes, with ``{resource, limit, current}`` in details."""
    return QuotaExceeded(
        f"The agent already has {current} open quotes (limit {limit}).",
        details={"resource": "openQuotes", "limit": limit, "current": current},
    )


def check_visible(principal: Principal, record: QuoteRecord | None, quote_id: str) -> QuoteRecord:
    """``record`` if the caller may see it; QUOTE_NOT_FOUND (missing, other agency) or
    AUTHORIZATION_FAILED (another agent of the same agency)."""
    if record is None:
        raise QuoteNotFound(details={"quoteId": quote_id})
    check_access(
        principal,
        owner_agent_id=record.row["agent_id"],
        owner_agency_id=record.row["agency_id"],
        not_found=QuoteNotFound,
        details={"quoteId": quote_id},
    )
    return record


def check_client_owner(principal: Principal, owner: Any, client_id: str) -> None:
    """The client ``{agent_id, agency_id}`` must be the caller's (an admin: its agency's);
    CLIENT_NOT_FOUND or AUTHORIZATION_FAILED otherwise."""
    if owner is None:
        raise ClientNotFound(details={"clientId": client_id})
    check_access(
        principal,
        owner_agent_id=owner["agent_id"],
        owner_agency_id=owner["agency_id"],
        not_found=ClientNotFound,
        details={"clientId": client_id},
    )


async def check_client(conn: UnitConnection, principal: Principal, client_id: str) -> None:
    """``check_client_owner`` for the stored owner of ``client_id``."""
    check_client_owner(principal, await writes.client_owner(conn, client_id), client_id)


async def open_one_more(
    svc: Services, conn: UnitConnection, owner_agent_id: str, bound: int, now: datetime
) -> int:
    """The owner's new ``open_quote_bound`` once one more of its quotes is open (a create, a
    REJECTED quote reopened); QUOTA_EXCEEDED when it already has the maximum.

    ``bound`` is the owner's ``open_quote_bound``, read under its row lock (``lock_agent``,
    ``load_for_create``), which serializes these checks: an upper bound of its open quotes
    (DRAFT + unexpired SENT), since every create and reopen raises it and nothing lowers it.
    Below the limit it proves there is room without counting anything; at the limit the
    exact count (a statement after the lock, so it sees every committed quote) decides and
    replaces it. A save costs one counter write, not a count of the owner's quotes.
    """
    limit = svc.settings.max_open_quotes_per_agent
    if bound >= limit:
        bound = await writes.count_open_quotes(conn, owner_agent_id, now)
        if bound >= limit:
            raise quota_exceeded(limit, bound)
    return bound + 1


async def visible_quote(conn: AsyncConnection, principal: Principal, quote_id: str) -> QuoteRecord:
    """The quote if the caller may see it; QUOTE_NOT_FOUND or AUTHORIZATION_FAILED otherwise."""
    return check_visible(principal, await repo.get_quote(conn, quote_id), quote_id)


def status_now(row: Mapping[Any, Any], now: datetime) -> QuoteStatus:
    """The status as of ``now``: a SENT quote past ``expires_at`` is EXPIRED."""
    return effective_status(QuoteStatus(row["status"]), row["expires_at"], now)


async def conflict(
    conn: UnitConnection,
    quote_id: str,
    expected: int,
    http_status: int | None,
    *,
    operation: Operation,
    now: datetime,
) -> QuoteConflictVersion:
    """QUOTE_CONFLICT_VERSION with the committed state and the fields changed since ``expected``.

    The committed state decides first, as it does for a request arriving after the change
    that won: when it no longer allows ``operation`` (a concurrent send, delete, ...), this
    raises QUOTE_ALREADY_SENT / QUOTE_STATE_INVALID instead, so a lost race gets the same
    answer whichever statement of the save saw the other change.
    """
    record = await writes.get_quote(conn, quote_id)
    if record is None:  # deleted meanwhile (not possible today: deletes are soft)
        raise QuoteNotFound(details={"quoteId": quote_id})
    check_transition(status_now(record.row, now), operation)
    current = quote_to_api(record.row, record.items)
    seen = await writes.revision_snapshot(conn, quote_id, expected)
    fields = (*INPUT_FIELDS, "status")
    changed = (
        changed_fields({k: seen.get(k) for k in fields}, {k: current[k] for k in fields})
        if seen is not None
        else []
    )
    return QuoteConflictVersion(
        details={
            "quoteId": quote_id,
            "expectedVersion": expected,
            "actualVersion": current["version"],
            "lastModifiedBy": current["lastModifiedBy"],
            "lastModifiedAt": current["lastModifiedAt"],
            "changedFields": changed,
        },
        http_status=http_status,
    )
