"""All SQL for quotes, their items and revisions (SQLAlchemy Core; no ORM unit of work)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from tripquote.db.tables import clients, quote_items, quote_revisions, quotes


@dataclass(frozen=True, slots=True)
class QuoteRecord:
    """A stored quote: its row and its items in position order."""

    row: RowMapping
    items: tuple[RowMapping, ...]


@dataclass(frozen=True, slots=True)
class RevisionRecord:
    """One row of a quote's history."""

    quote_id: str
    version: int
    operation: str
    status: str
    actor_id: str
    correlation_id: str
    created_at: datetime
    snapshot: dict[str, Any]


async def get_quote(conn: AsyncConnection, quote_id: str) -> QuoteRecord | None:
    """The quote ``quote_id`` with its items, or None."""
    row = (await conn.execute(select(quotes).where(quotes.c.id == quote_id))).mappings().first()
    if row is None:
        return None
    items = (
        (
            await conn.execute(
                select(quote_items)
                .where(quote_items.c.quote_id == quote_id)
                .order_by(quote_items.c.position)
            )
        )
        .mappings()
        .all()
    )
    return QuoteRecord(row=row, items=tuple(items))


async def client_owner(conn: AsyncConnection, client_id: str) -> RowMapping | None:
    """``{agent_id, agency_id}`` of the client ``client_id``, or None."""
    query = select(clients.c.agent_id, clients.c.agency_id).where(clients.c.id == client_id)
    return (await conn.execute(query)).mappings().first()


async def insert_quote(
    conn: AsyncConnection, *, values: dict[str, Any], items: list[dict[str, Any]]
) -> None:
    """Insert a quote row and its items (``quote_id``/``id`` are filled in here)."""
    await conn.execute(insert(quotes).values(**values))
    await _insert_items(conn, values["id"], items)


async def update_quote_if_version(
    conn: AsyncConnection,
    *,
    quote_id: str,
    expected_version: int,
    values: dict[str, Any],
) -> int | None:
    """The optimistic lock, in one statement: ``UPDATE quotes SET ..., version = version + 1
    WHERE id = :id AND version = :expected RETURNING version``; the new version, or None when
    no row matched (someone else committed first)."""
    stmt = (
        update(quotes)
        .where(quotes.c.id == quote_id, quotes.c.version == expected_version)
        .values(**values, version=quotes.c.version + 1)
        .returning(quotes.c.version)
    )
    new_version = (await conn.execute(stmt)).scalar()
    return int(new_version) if new_version is not None else None


async def replace_items(conn: AsyncConnection, quote_id: str, items: list[dict[str, Any]]) -> None:
    """Replace the whole item list of ``quote_id``."""
    await conn.execute(delete(quote_items).where(quote_items.c.quote_id == quote_id))
    await _insert_items(conn, quote_id, items)


async def _insert_items(conn: AsyncConnection, quote_id: str, items: list[dict[str, Any]]) -> None:
    if not items:
        return
    rows = [
        {**item, "id": str(uuid.uuid4()), "quote_id": quote_id, "position": position}
        for position, item in enumerate(items)
    ]
    await conn.execute(insert(quote_items), rows)


async def insert_revision(conn: AsyncConnection, revision: RevisionRecord) -> None:
    """Append one committed version to the quote's history."""
    await conn.execute(
        insert(quote_revisions).values(
            id=str(uuid.uuid4()),
            quote_id=revision.quote_id,
            version=revision.version,
            operation=revision.operation,
            status=revision.status,
            actor_id=revision.actor_id,
            correlation_id=revision.correlation_id,
            created_at=revision.created_at,
            snapshot=revision.snapshot,
        )
    )


async def get_revision_snapshot(
    conn: AsyncConnection, quote_id: str, version: int
) -> dict[str, Any] | None:
    """The snapshot of version ``version`` of the quote, or None."""
    query = select(quote_revisions.c.snapshot).where(
        quote_revisions.c.quote_id == quote_id, quote_revisions.c.version == version
    )
    snapshot = (await conn.execute(query)).scalar()
    return snapshot if isinstance(snapshot, dict) else None
