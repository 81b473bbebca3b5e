"""Read use cases: the list with filters and cursor pagination, and the revision history."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from tripquote.agents.auth import require_principal
from tripquote.agents.repository import load_principal
from tripquote.errors import QuoteNotFound
from tripquote.http import Services
from tripquote.pagination import encode_cursor
from tripquote.quotes import repository as repo
from tripquote.quotes.checks import status_now, visible_quote
from tripquote.quotes.repository import QuoteFilters, RevisionRecord
from tripquote.quotes.serialize import fmt_instant, quote_to_api


async def list_quotes(
    svc: Services,
    *,
    agent_id: str,
    filters: QuoteFilters,
    before: tuple[datetime, str] | None,
    limit: int,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the caller's quotes (an admin: the agency's), newest first, and the cursor
    of the next page (None on the last)."""
    now = datetime.now(UTC)

    async def work(conn: AsyncConnection) -> list[repo.QuoteRecord]:
        principal = require_principal(await load_principal(conn, agent_id))
        return await repo.list_quotes(
            conn,
            agent_id=None if principal.is_admin else principal.agent_id,
            agency_id=principal.agency_id,
            filters=filters,
            before=before,
            limit=limit + 1,
            now=now,
        )

    records = await svc.runner.run(work, write=False)
    page = records[:limit]
    next_cursor = (
        encode_cursor(page[-1].row["created_at"], page[-1].row["id"])
        if len(records) > limit
        else None
    )
    quotes = [quote_to_api(r.row, r.items, status=status_now(r.row, now)) for r in page]
    return quotes, next_cursor


def revision_to_api(revision: RevisionRecord) -> dict[str, Any]:
    """One history entry: who, when, what, under which correlation ID, and the full quote."""
    return {
        "version": revision.version,
        "operation": revision.operation,
        "status": revision.status,
        "actorId": revision.actor_id,
        "correlationId": revision.correlation_id,
        "createdAt": fmt_instant(revision.created_at),
        "snapshot": revision.snapshot,
    }


async def list_revisions(svc: Services, *, agent_id: str, quote_id: str) -> list[dict[str, Any]]:
    """Every committed version of a visible quote, oldest first."""

    async def work(conn: AsyncConnection) -> list[RevisionRecord]:
        principal = require_principal(await load_principal(conn, agent_id))
        await visible_quote(conn, principal, quote_id)
        return await repo.list_revisions(conn, quote_id)

    return [revision_to_api(r) for r in await svc.runner.run(work, write=False)]


async def get_revision(
    svc: Services, *, agent_id: str, quote_id: str, version: int
) -> dict[str, Any]:
    """Version ``version`` of a visible quote; QUOTE_NOT_FOUND if it never existed."""

    async def work(conn: AsyncConnection) -> RevisionRecord:
        principal = require_principal(await load_principal(conn, agent_id))
        await visible_quote(conn, principal, quote_id)
        revision = await repo.get_revision(conn, quote_id, version)
        if revision is None:
            raise QuoteNotFound(
                f"The quote has no version {version}.",
                details={"quoteId": quote_id, "version": version},
            )
        return revision

    return revision_to_api(await svc.runner.run(work, write=False))
