"""SQL for agencies and agents."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from tripquote.db.tables import agencies, agents


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: an active agent, its agency, role and the agency's time zone."""

    agent_id: str
    agency_id: str
    role: str
    timezone: str

    @property
    def is_admin(self) -> bool:
        """True for an agency admin, who may act on the whole agency's quotes and clients."""
        return self.role == "admin"


_PRINCIPAL_QUERY = (
    select(agents.c.id, agents.c.agency_id, agents.c.role, agencies.c.timezone)
    .join(agencies, agencies.c.id == agents.c.agency_id)
    .where(agents.c.active.is_(True))
)


async def load_principal(conn: AsyncConnection, agent_id: str) -> Principal | None:
    """The active agent ``agent_id`` with its agency's time zone, or None."""
    row = (await conn.execute(_PRINCIPAL_QUERY.where(agents.c.id == agent_id))).first()
    if row is None:
        return None
    return Principal(agent_id=row.id, agency_id=row.agency_id, role=row.role, timezone=row.timezone)


async def insert_agency(conn: AsyncConnection, *, name: str, timezone: str) -> str:
    """Create an agency; returns its id."""
    agency_id = str(uuid.uuid4())
    await conn.execute(
        insert(agencies).values(
            id=agency_id, name=name, timezone=timezone, created_at=datetime.now(UTC)
        )
    )
    return agency_id


async def insert_agent(
    conn: AsyncConnection, *, agency_id: str, email: str, name: str, role: str
) -> str:
    """Create an active agent in ``agency_id``; returns its id."""
    agent_id = str(uuid.uuid4())
    await conn.execute(
        insert(agents).values(
            id=agent_id,
            agency_id=agency_id,
            email=email,
            name=name,
            role=role,
            active=True,
            created_at=datetime.now(UTC),
        )
    )
    return agent_id


async def agency_exists(conn: AsyncConnection, agency_id: str) -> bool:
    """True if the agency exists."""
    row = (await conn.execute(select(agencies.c.id).where(agencies.c.id == agency_id))).first()
    return row is not None


async def set_agent_active(conn: AsyncConnection, agent_id: str, *, active: bool) -> bool:
    """Enable or disable an agent; False if there is no such agent."""
    result = await conn.execute(
        agents.update().where(agents.c.id == agent_id).values(active=active)
    )
    return bool(result.rowcount)
