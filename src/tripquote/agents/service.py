"""Agency and agent administration (what ``tripquote agencies|agents|token`` do): each a use
case in one transaction through the runner; a refusal is ``AgentRefused`` with its reason."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from tripquote.agents import repository
from tripquote.agents.auth import mint_token
from tripquote.config import Settings
from tripquote.db.transaction import TransactionRunner


class AgentRefused(Exception):
    """The operation was refused (no such agency or agent, e-mail taken); nothing changed."""


class AgentService:
    """Create agencies and agents, disable agents, mint tokens for active agents."""

    def __init__(self, *, runner: TransactionRunner, settings: Settings) -> None:
        self.runner = runner
        self.settings = settings

    async def create_agency(self, *, name: str, timezone: str) -> str:
        """A new agency's id (``timezone``: an IANA zone, checked by the caller)."""

        async def work(conn: AsyncConnection) -> str:
            return await repository.insert_agency(conn, name=name, timezone=timezone)

        return await self.runner.run(work)

    async def create_agent(self, *, agency_id: str, email: str, name: str, role: str) -> str:
        """A new active agent's id; AgentRefused when the agency does not exist or another
        agent has the e-mail in any case."""

        async def work(conn: AsyncConnection) -> str:
            if not await repository.agency_exists(conn, agency_id):
                raise AgentRefused(f"no agency {agency_id}")
            try:
                return await repository.insert_agent(
                    conn, agency_id=agency_id, email=email, name=name, role=role
                )
            except repository.EmailTaken:
                raise AgentRefused(
                    f"an agent with e-mail {email} (in any case) exists already"
                ) from None

        return await self.runner.run(work)

    async def disable(self, *, agent_id: str) -> None:
        """Disable the agent (its tokens then get AGENT_NOT_FOUND); AgentRefused if none."""

        async def work(conn: AsyncConnection) -> bool:
            return await repository.set_agent_active(conn, agent_id, active=False)

        if not await self.runner.run(work):
            raise AgentRefused(f"no agent {agent_id}")

    async def revoke_tokens(self, *, agent_id: str, now: datetime) -> None:
        """Refuse every token of the agent minted before ``now`` (it stays active);
        AgentRefused if there is no such agent."""

        async def work(conn: AsyncConnection) -> bool:
            return await repository.revoke_tokens(conn, agent_id, now=now)

        if not await self.runner.run(work):
            raise AgentRefused(f"no agent {agent_id}")

    async def token(self, *, agent_id: str, ttl_seconds: int) -> str:
        """A bearer token for an active agent, valid ``ttl_seconds``; AgentRefused if none."""

        async def work(conn: AsyncConnection) -> bool:
            return await repository.load_principal(conn, agent_id) is not None

        if not await self.runner.run(work, write=False):
            raise AgentRefused(f"no active agent {agent_id}")
        return mint_token(self.settings, agent_id=agent_id, ttl_seconds=ttl_seconds)
