# ruff: noqa: S608  (SQL composed at import from constant fragments; every value is bound)
"""SQL for agencies and agents."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from tripquote.db.tables import agencies, agents
from tripquote.ids import new_id


@dataclass(frozen=True, slots=True)
class Principal:
    """The calling agent: an active agent, its agency, role and the agency's time zone."""

    agent_id: str
    agency_id: str
    role: str
    timezone: str

    @property
    def is_admin(self) -> bool:
        """True for an agency admin, who may act on the whole agency's quotes and clients."""
        return self.role == "admin"


def token_valid(a: str) -> str:
    """SQL, the one revocation rule: a token issued at ``:issued_at`` is valid for agent ``a``."""
    # Valid from tokens_valid_after on (set by `tripquote token revoke`); both in microseconds.
    return f"({a}.tokens_valid_after IS NULL OR {a}.tokens_valid_after <= :issued_at)"


CALLER = f"""caller AS (
    SELECT a.id, a.agency_id, a.role, g.timezone
      FROM agents a JOIN agencies g ON g.id = a.agency_id
     WHERE a.id = :agent_id AND a.active AND {token_valid("a")}
)"""
"""The calling agent (``:agent_id``), only if active and its token (``:issued_at``) valid."""

TOKEN_REVOKED = f"""(caller.id IS NULL AND EXISTS (
    SELECT 1 FROM agents r WHERE r.id = :agent_id AND NOT {token_valid("r")}))"""
"""Fact: ``caller`` is empty because the token was revoked (looked up only then)."""

CALLER_FACTS = f"""WITH {CALLER}
SELECT caller.id, caller.agency_id, caller.role, caller.timezone,
       {TOKEN_REVOKED} AS token_revoked
  FROM (SELECT 1) one LEFT JOIN caller ON true"""
"""One row: the calling agent (its columns null if none) and whether its token was revoked."""


@dataclass(frozen=True, slots=True)
class CallerFacts:
    """A token's caller as the database says: the active agent (None if not), token revoked."""

    principal: Principal | None
    token_revoked: bool


def caller_facts(row: Any) -> CallerFacts:
    """The ``CallerFacts`` of a ``CALLER_FACTS`` row."""
    principal = (
        Principal(
            agent_id=row["id"],
            agency_id=row["agency_id"],
            role=row["role"],
            timezone=row["timezone"],
        )
        if row["id"] is not None
        else None
    )
    return CallerFacts(principal=principal, token_revoked=bool(row["token_revoked"]))


_CALLER_FACTS = text(CALLER_FACTS)


async def load_caller(conn: AsyncConnection, *, agent_id: str, issued_at: datetime) -> CallerFacts:
    """The facts of the caller whose token names ``agent_id`` and was issued at ``issued_at``."""
    result = await conn.execute(_CALLER_FACTS, {"agent_id": agent_id, "issued_at": issued_at})
    return caller_facts(result.mappings().one())


_PRINCIPAL_QUERY = (
    select(agents.c.id, agents.c.agency_id, agents.c.role, agencies.c.timezone)
    .join(agencies, agencies.c.id == agents.c.agency_id)
    .where(agents.c.active.is_(True))
)


async def load_principal(conn: AsyncConnection, agent_id: str) -> Principal | None:
    """The active agent ``agent_id`` or None, whatever its tokens (a request's: ``load_caller``)."""
    row = (await conn.execute(_PRINCIPAL_QUERY.where(agents.c.id == agent_id))).first()
    if row is None:
        return None
    return Principal(agent_id=row.id, agency_id=row.agency_id, role=row.role, timezone=row.timezone)


async def insert_agency(conn: AsyncConnection, *, name: str, timezone: str) -> str:
    """Create an agency; returns its id."""
    agency_id = new_id()
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
    agent_id = new_id()
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
