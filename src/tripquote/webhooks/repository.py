"""SQL for webhook subscriptions and the deliveries an admin reads and replays (old ones go a
day at a time: ``tripquote maintenance``, ``db/retention.py``).

Every query is scoped by the caller's agency: another agency's subscription is not found.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import case, delete, func, insert, literal_column, select, union_all, update
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from tripquote.db.tables import NEXT_XACT, events, webhook_deliveries, webhook_subscriptions
from tripquote.ids import new_id

S = webhook_subscriptions
D = webhook_deliveries


async def insert_subscription(
    conn: AsyncConnection, *, agency_id: str, url: str, event_types: list[str], enabled: bool,
    secret: str, now: datetime,
) -> RowMapping:  # fmt: skip
    """A new subscription of ``agency_id``; its row."""
    row = (
        await conn.execute(
            insert(S)
            .values(
                id=new_id(),
                agency_id=agency_id,
                url=url,
                event_types=event_types,
                enabled=enabled,
                secret=secret,
                created_at=now,
                updated_at=now,
            )
            .returning(S)
        )
    ).mappings()
    inserted: RowMapping = row.one()
    return inserted


async def get_subscription(
    conn: AsyncConnection, *, agency_id: str, subscription_id: str, lock: bool = False
) -> RowMapping | None:
    """The agency's subscription ``subscription_id`` (``lock``: FOR UPDATE), or None."""
    query = select(S).where(S.c.id == subscription_id, S.c.agency_id == agency_id)
    if lock:
        query = query.with_for_update()
    found: RowMapping | None = (await conn.execute(query)).mappings().first()
    return found


async def list_subscriptions(conn: AsyncConnection, *, agency_id: str) -> list[RowMapping]:
    """The agency's subscriptions, oldest first."""
    query = select(S).where(S.c.agency_id == agency_id).order_by(S.c.created_at, S.c.id)
    return list((await conn.execute(query)).mappings().all())


async def update_subscription(
    conn: AsyncConnection, *, agency_id: str, subscription_id: str, values: dict[str, Any],
    now: datetime,
) -> RowMapping | None:  # fmt: skip
    """Set ``values`` (column names) on the agency's subscription; its new row, or None. A
    subscription enabled again gets the events of changes made from then on (its fan-out mark
    moves past what happened while it was disabled)."""
    if values.get("enabled"):
        values = {
            **values,
            "fanned_out_to": case(
                (S.c.enabled, S.c.fanned_out_to), else_=literal_column(NEXT_XACT)
            ),
        }
    query = (
        update(S)
        .where(S.c.id == subscription_id, S.c.agency_id == agency_id)
        .values(**values, updated_at=now)
        .returning(S)
    )
    updated: RowMapping | None = (await conn.execute(query)).mappings().first()
    return updated


async def resume_deliveries(conn: AsyncConnection, *, subscription_id: str, now: datetime) -> None:
    """Make the subscription's pending deliveries due at ``now`` (it was enabled again)."""
    await conn.execute(
        update(D)
        .where(D.c.subscription_id == subscription_id, D.c.status == "pending")
        .values(next_attempt_at=now)
    )


async def delete_subscription(
    conn: AsyncConnection, *, agency_id: str, subscription_id: str
) -> bool:
    """Delete the agency's subscription and its deliveries; whether it existed. The
    deliveries are deleted here, not by a cascade: their partitions have no foreign key
    (migration 0012)."""
    query = delete(S).where(S.c.id == subscription_id, S.c.agency_id == agency_id).returning(S.c.id)
    if (await conn.execute(query)).first() is None:
        return False
    await conn.execute(delete(D).where(D.c.subscription_id == subscription_id))
    return True


async def deliveries_page(
    conn: AsyncConnection, *, subscription_id: str, before_id: int | None, limit: int,
    status: str | None,
) -> list[RowMapping]:  # fmt: skip
    """Up to ``limit`` of the subscription's deliveries, newest first, before ``before_id``."""
    query = (
        select(D, events.c.type)
        # The event's whole key (its partition's): a delivery's created_at is its occurred_at.
        .join(events, (events.c.id == D.c.event_id) & (events.c.occurred_at == D.c.created_at))
        .where(D.c.subscription_id == subscription_id)
        .order_by(D.c.id.desc())
        .limit(limit)
    )
    if before_id is not None:
        query = query.where(D.c.id < before_id)
    if status is not None:
        query = query.where(D.c.status == status)
    return list((await conn.execute(query)).mappings().all())


async def replay(
    conn: AsyncConnection, *, subscription_id: str, since: datetime, until: datetime | None,
    include_delivered: bool, now: datetime,
) -> int:  # fmt: skip
    """Queue again the subscription's dead-lettered deliveries (and delivered ones, with
    ``include_delivered``) created in [``since``, ``until``): pending, attempts from 0, due
    now; the same event, so the same ``webhook-id``. How many."""
    statuses = ["dead", "delivered"] if include_delivered else ["dead"]
    query = (
        update(D)
        .where(
            D.c.subscription_id == subscription_id,
            D.c.status.in_(statuses),
            D.c.created_at >= since,
        )
        .values(
            status="pending", attempts=0, next_attempt_at=now, last_error=None, delivered_at=None
        )
    )
    if until is not None:
        query = query.where(D.c.created_at < until)
    return (await conn.execute(query)).rowcount


async def outbox_backlog(conn: AsyncConnection, *, now: datetime) -> tuple[int, float]:
    """(deliveries waiting: the pending ones and those of events not fanned out yet, age in
    seconds of the oldest one's event; 0 when none): from the database, so the same for every
    process that asks. Only those of a subscription that exists: a save racing its
    subscription's deletion may leave a delivery nobody sends (no foreign key serializes them:
    migration 0012); it goes with its day."""
    pending = (
        select(D.c.created_at.label("at"))
        .select_from(D.join(S, S.c.id == D.c.subscription_id))
        .where(D.c.status == "pending")
    )
    unfanned = (
        select(events.c.occurred_at.label("at"))
        .select_from(S.join(events, events.c.agency_id == S.c.agency_id))
        .where(
            S.c.enabled,
            events.c.xact >= S.c.fanned_out_to,
            events.c.type == S.c.event_types.any_(),
        )
    )
    waiting = union_all(pending, unfanned).subquery()
    count, oldest = (await conn.execute(select(func.count(), func.min(waiting.c.at)))).one()
    return int(count), (now - oldest).total_seconds() if oldest is not None else 0.0
