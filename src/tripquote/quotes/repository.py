"""All SQL for quotes, their items and revisions (SQLAlchemy Core; no ORM unit of work)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, func, insert, or_, select, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from tripquote.db.tables import agents, clients, quote_items, quote_revisions, quotes


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


@dataclass(frozen=True, slots=True)
class QuoteFilters:
    """List filters: effective status, client, changed at or after ``updated_since``."""

    status: str | None = None
    client_id: str | None = None
    updated_since: datetime | None = None


async def lock_agent(conn: AsyncConnection, agent_id: str) -> tuple[int, bool]:
    """Serialize this agent's quota-checked writes (``SELECT … FOR UPDATE``; SQLite's
    ``BEGIN IMMEDIATE`` already serializes every writer); its ``open_quote_bound`` and whether
    it is active, as of the lock ((0, False) if there is no such agent)."""
    query = (
        select(agents.c.open_quote_bound, agents.c.active)
        .where(agents.c.id == agent_id)
        .with_for_update()
    )
    row = (await conn.execute(query)).first()
    return (int(row.open_quote_bound), bool(row.active)) if row is not None else (0, False)


async def set_open_quote_bound(conn: AsyncConnection, agent_id: str, bound: int) -> None:
    """Store the agent's new ``open_quote_bound`` (its row is locked: ``lock_agent``)."""
    await conn.execute(update(agents).where(agents.c.id == agent_id).values(open_quote_bound=bound))


def _open_condition(now: datetime) -> Any:
    return or_(
        quotes.c.status == "DRAFT",
        and_(
            quotes.c.status == "SENT", or_(quotes.c.expires_at.is_(None), quotes.c.expires_at > now)
        ),
    )


async def count_open_quotes(conn: AsyncConnection, agent_id: str, now: datetime) -> int:
    """DRAFT plus unexpired SENT quotes owned by ``agent_id``."""
    query = select(func.count()).where(quotes.c.agent_id == agent_id, _open_condition(now))
    return int((await conn.execute(query)).scalar() or 0)


def _status_condition(status: str, now: datetime) -> Any:
    if status == "SENT":
        return and_(
            quotes.c.status == "SENT", or_(quotes.c.expires_at.is_(None), quotes.c.expires_at > now)
        )
    if status == "EXPIRED":
        return or_(
            quotes.c.status == "EXPIRED",
            and_(quotes.c.status == "SENT", quotes.c.expires_at <= now),
        )
    return quotes.c.status == status


async def list_quotes(
    conn: AsyncConnection,
    *,
    agent_id: str | None,
    agency_id: str,
    filters: QuoteFilters,
    before: tuple[datetime, str] | None,
    limit: int,
    now: datetime,
) -> list[QuoteRecord]:
    """Quotes newest first (``created_at``, ``id`` descending: immutable, so pages are stable),
    of one agent or, with ``agent_id`` None, of the whole agency; items included."""
    query = select(quotes).where(quotes.c.agency_id == agency_id)
    if agent_id is not None:
        query = query.where(quotes.c.agent_id == agent_id)
    if filters.status is not None:
        query = query.where(_status_condition(filters.status, now))
    if filters.client_id is not None:
        query = query.where(quotes.c.client_id == filters.client_id)
    if filters.updated_since is not None:
        query = query.where(quotes.c.last_modified_at >= filters.updated_since)
    if before is not None:
        at, row_id = before
        query = query.where(
            or_(quotes.c.created_at < at, and_(quotes.c.created_at == at, quotes.c.id < row_id))
        )
    query = query.order_by(quotes.c.created_at.desc(), quotes.c.id.desc()).limit(limit)
    rows = (await conn.execute(query)).mappings().all()
    if not rows:
        return []
    ids = [row["id"] for row in rows]
    item_rows = (
        (
            await conn.execute(
                select(quote_items)
                .where(quote_items.c.quote_id.in_(ids))
                .order_by(quote_items.c.quote_id, quote_items.c.position)
            )
        )
        .mappings()
        .all()
    )
    by_quote: dict[str, list[RowMapping]] = {quote_id: [] for quote_id in ids}
    for item in item_rows:
        by_quote[item["quote_id"]].append(item)
    return [QuoteRecord(row=row, items=tuple(by_quote[row["id"]])) for row in rows]


async def list_revisions(conn: AsyncConnection, quote_id: str) -> list[RevisionRecord]:
    """Every committed version of the quote, oldest first."""
    query = (
        select(quote_revisions)
        .where(quote_revisions.c.quote_id == quote_id)
        .order_by(quote_revisions.c.version)
    )
    return [_revision(row) for row in (await conn.execute(query)).mappings().all()]


async def get_revision(conn: AsyncConnection, quote_id: str, version: int) -> RevisionRecord | None:
    """Version ``version`` of the quote's history, or None."""
    query = select(quote_revisions).where(
        quote_revisions.c.quote_id == quote_id, quote_revisions.c.version == version
    )
    row = (await conn.execute(query)).mappings().first()
    return _revision(row) if row is not None else None


def _revision(row: RowMapping) -> RevisionRecord:
    return RevisionRecord(
        quote_id=row["quote_id"],
        version=row["version"],
        operation=row["operation"],
        status=row["status"],
        actor_id=row["actor_id"],
        correlation_id=row["correlation_id"],
        created_at=row["created_at"],
        snapshot=row["snapshot"],
    )


async def due_for_expiry(
    conn: AsyncConnection, *, now: datetime, limit: int, skip_locked: bool
) -> list[QuoteRecord]:
    """SENT quotes whose ``expires_at`` has passed, oldest first, locked for this sweeper
    (``FOR UPDATE SKIP LOCKED`` on PostgreSQL so concurrent sweepers take disjoint batches)."""
    query = (
        select(quotes.c.id)
        .where(quotes.c.status == "SENT", quotes.c.expires_at <= now)
        .order_by(quotes.c.expires_at, quotes.c.id)
        .limit(limit)
    )
    if skip_locked:
        query = query.with_for_update(skip_locked=True)
    ids = list((await conn.execute(query)).scalars().all())
    records = []
    for quote_id in ids:
        record = await get_quote(conn, quote_id)
        if record is not None:
            records.append(record)
    return records
