"""The proposal store: the link's reads and writes, each ONE statement (``proposals/sql.py``)
through the transaction runner."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from tripquote.agents.auth import Caller
from tripquote.db.transaction import TransactionRunner, Tx
from tripquote.ids import new_id
from tripquote.json import dumps
from tripquote.proposals import sql
from tripquote.quotes.lifecycle import Operation, QuoteStatus, from_statuses, target_of
from tripquote.quotes.results import Facts, facts_of
from tripquote.quotes.sql import changes

CLIENT_ACTOR = "client"
"""The actor of a revision the client's answer wrote (``lastModifiedBy``)."""


@dataclass(frozen=True, slots=True)
class Link:
    """A proposal link as stored (never its token), with its quote's version and status as
    of the read when it was read by token."""

    id: str
    quote_id: str
    version: int
    nonce: str
    proposal: str  # the JSON text, byte for byte as sent
    proposal_hash: str
    created_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    ended_reason: str | None
    views: int
    first_viewed_at: datetime | None
    last_viewed_at: datetime | None
    answer: str | None
    answered_at: datetime | None
    signer_name: str | None
    decline_reason: str | None
    answered_hash: str | None
    quote_version: int | None = None
    quote_status: QuoteStatus | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """The client's answer as the form gave it, and where it came from."""

    operation: Operation  # ACCEPT or REJECT
    shown_hash: str
    signer_name: str | None
    decline_reason: str | None
    ip: str | None
    user_agent: str | None


def _link(row: Any) -> Link | None:
    if row is None or row["link_id"] is None:
        return None
    keys = set(row.keys())
    status = row["quote_status"] if "quote_status" in keys else None
    return Link(
        id=row["link_id"],
        quote_id=row["quote_id"],
        version=row["link_version"],
        nonce=row["link_nonce"],
        proposal=row["proposal"],
        proposal_hash=row["proposal_hash"],
        created_at=row["link_created_at"],
        expires_at=row["link_expires_at"],
        ended_at=row["ended_at"],
        ended_reason=row["ended_reason"],
        views=row["views"],
        first_viewed_at=row["first_viewed_at"],
        last_viewed_at=row["last_viewed_at"],
        answer=row["answer"],
        answered_at=row["answered_at"],
        signer_name=row["signer_name"],
        decline_reason=row["decline_reason"],
        answered_hash=row["answered_hash"],
        quote_version=row["quote_version"] if "quote_version" in keys else None,
        quote_status=QuoteStatus(status) if status is not None else None,
    )


def _latest(row: Any) -> tuple[Facts, Link | None]:
    """A ``PROPOSAL_OF`` / ``REVOKE`` row: its facts, and the quote's latest link with the
    quote's version and status as those facts saw them (what its page shows)."""
    facts = facts_of(row)
    link = _link(row)
    if link is not None:
        link = replace(link, quote_version=facts.version, quote_status=facts.status)
    return facts, link


def _caller(caller: Caller, quote_id: str, now: datetime) -> dict[str, Any]:
    return {
        "agent_id": caller.agent_id,
        "issued_at": caller.issued_at,
        "quote_id": quote_id,
        "client_id": None,
        "now": now,
    }


class ProposalStore:
    """All proposal SQL; each method one unit of work through ``runner``."""

    def __init__(self, runner: TransactionRunner) -> None:
        self.runner = runner

    async def by_token(
        self, *, link_hash: str, now: datetime, count_view: bool, correlation_id: str
    ) -> Link | None:
        """The link whose token hashes to ``link_hash`` (None: no such link), its view
        counted when ``count_view`` and it is open (the first: a ``quote.viewed`` event)."""

        async def work(tx: Tx) -> Link | None:
            # A view count lost with a connection is harmless: no outcome to look for.
            values = {
                "link_hash": link_hash,
                "now": now,
                "count_view": count_view,
                "correlation_id": correlation_id,
            }
            return _link(await tx.fetchrow(sql.VIEW, values))

        return await self.runner.run_store(work, atomic=False, write=count_view)

    async def answer(
        self, *, link_hash: str, answer: Answer, now: datetime, correlation_id: str
    ) -> str | None:
        """Write the client's ``answer`` (ANSWER); the quote's id, None when nothing was
        written (no such link, the link ended or answered, another proposal shown, the quote
        moved on or expired)."""
        target = target_of(answer.operation)
        save_id = new_id()
        values = {
            "link_hash": link_hash,
            "shown_hash": answer.shown_hash,
            "from_statuses": from_statuses(answer.operation),
            "target": target.value,
            "actor": CLIENT_ACTOR,
            "now": now,
            "operation": answer.operation.value,
            "correlation_id": correlation_id,
            "changes": dumps(changes(lastModifiedBy=CLIENT_ACTOR, lastModifiedAt=now)).decode(),
            "signer_name": answer.signer_name,
            "decline_reason": answer.decline_reason,
            "answer_ip": answer.ip,
            "answer_user_agent": answer.user_agent,
            "save_id": save_id,
        }

        async def work(tx: Tx) -> str | None:
            row = await tx.write(sql.ANSWER, values)
            return str(row["quote_id"]) if row["written"] else None

        async def found(tx: Tx) -> str | None:
            from tripquote.quotes.sql import OUTCOME

            row = await tx.fetchrow(OUTCOME, {"save_id": save_id})
            return str(row["quote_id"]) if row["written"] else None

        return await self.runner.run_store(work, atomic=False, outcome=found)

    async def latest(
        self, *, caller: Caller, quote_id: str, now: datetime
    ) -> tuple[Facts, Link | None]:
        """The facts about the caller and the quote, and the quote's latest link (None)."""

        async def work(tx: Tx) -> tuple[Facts, Link | None]:
            return _latest(await tx.fetchrow(sql.PROPOSAL_OF, _caller(caller, quote_id, now)))

        return await self.runner.run_store(work, atomic=False, write=False)

    async def revoke(
        self, *, caller: Caller, quote_id: str, now: datetime
    ) -> tuple[bool, Facts, Link | None]:
        """End the quote's latest link (REVOKE): whether it did, the facts, and the link as
        the revoke left it when it did (ended, REVOKED), else as found."""

        async def work(tx: Tx) -> tuple[bool, Facts, Link | None]:
            row = await tx.write(sql.REVOKE, _caller(caller, quote_id, now))
            facts, link = _latest(row)
            if row["written"] and link is not None:
                link = replace(link, ended_at=row["revoked_at"], ended_reason="REVOKED")
            return bool(row["written"]), facts, link

        return await self.runner.run_store(work, atomic=False)
