"""SQL for clients."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, insert, or_, select
from sqlalchemy.engine import Row
from sqlalchemy.ext.asyncio import AsyncConnection

from tripquote.agents.repository import Principal
from tripquote.db.tables import clients
from tripquote.ids import new_id


async def insert_client(
    conn: AsyncConnection,
    *,
    principal: Principal,
    name: str,
    email: str | None,
    phone: str | None,
    now: datetime,
) -> dict[str, Any]:
    """Create a client owned by the calling agent; returns the stored row as a dict."""
    row = {
        "id": new_id(),
        "agency_id": principal.agency_id,
        "agent_id": principal.agent_id,
        "name": name,
        "email": email,
        "phone": phone,
        "created_at": now,
    }
    await conn.execute(insert(clients).values(**row))
    return row


async def get_client(conn: AsyncConnection, client_id: str) -> Row[Any] | None:
    """The client row ``client_id``, whoever owns it, or None."""
    return (await conn.execute(select(clients).where(clients.c.id == client_id))).first()


async def list_clients(
    conn: AsyncConnection,
    *,
    principal: Principal,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[Row[Any]]:
    """The caller's clients (an admin: the agency's), oldest first, after the cursor."""
    query = select(clients)
    if principal.is_admin:
        query = query.where(clients.c.agency_id == principal.agency_id)
    else:
        query = query.where(clients.c.agent_id == principal.agent_id)
    if after is not None:
        at, row_id = after
        query = query.where(
            or_(clients.c.created_at > at, and_(clients.c.created_at == at, clients.c.id > row_id))
        )
    query = query.order_by(clients.c.created_at, clients.c.id).limit(limit)
    return list((await conn.execute(query)).all())
