"""SQL for agencies and agents."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from tripquote.db.tables import agencies, agents


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: an active agent, its agency, role and the agency's time zone."""

    agent_id: str
    agency_id: str
    role: str
    timezone: str
    tokens_valid_after: datetime | None = None
    """Tokens issued before this instant are refused (``tripquote token revoke``)."""

    @property
    def is_admin(self) -> bool:
        """True for an agency admin, who may act on the whole agency's quotes and clients."""
        return self.role == "admin"


_PRINCIPAL_QUERY = (
    select(
        agents.c.id,
        agents.c.agency_id,
        agents.c.role,
        agencies.c.timezone,
        agents.c.tokens_valid_after,
    )
    .join(agencies, agencies.c.id == agents.c.agency_id)
    .where(agents.c.active.is_(True))
)


async def load_principal(conn: AsyncConnection, agent_id: str) -> Principal | None:
    """The active agent ``agent_id`` with its agency's time zone, or None."""
    row = (await conn.execute(_PRINCIPAL_QUERY.where(agents.c.id == agent_id))).first()
    if row is None:
        return None
    return Principal(
        agent_id=row.id,
        agency_id=row.agency_id,
        role=row.role,
        timezone=row.timezone,
        tokens_valid_after=row.tokens_valid_after,
    )


async def insert_agency(conn: AsyncConnection, *, name: str, timezone: str) -> str:
    """Create an agency; returns its id."""
    agency_id = str(uuid.uuid4())
    await conn.execute(
        insert(agencies).values(
            id=agency_id, name=name, timezone=timezone, created_at=datetime.now(UTC)
        )
    )
    return agency_id


class EmailTaken(Exception):
    """Another agent has this e-mail address, whatever its case."""


async def insert_agent(
    conn: AsyncConnection, *, agency_id: str, email: str, name: str, role: str
) -> str:
    """Create an active agent in ``agency_id``; returns its id. EmailTaken if another agent
    has ``email`` in any case (the unique index on ``lower(email)`` decides, race-free)."""
    agent_id = str(uuid.uuid4())
    statement = (
        insert(agents)
        .values(
            id=agent_id,
            agency_id=agency_id,
            email=email,
            name=name,
            role=role,
            active=True,
            created_at=datetime.now(UTC),
        )
        .on_conflict_do_nothing(index_elements=[func.lower(agents.c.email)])
        .returning(agents.c.id)
    )
    if (await conn.execute(statement)).first() is None:
        raise EmailTaken(email)
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


async def revoke_tokens(conn: AsyncConnection, agent_id: str, *, now: datetime) -> bool:
    """Refuse every token of ``agent_id`` issued before ``now``; False if there is no such
    agent. The agent stays active: tokens minted from ``now`` on work."""
    result = await conn.execute(
        agents.update().where(agents.c.id == agent_id).values(tokens_valid_after=now)
    )
    return bool(result.rowcount)
