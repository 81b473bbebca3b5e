"""The quote store: every read and write of quotes, items and revisions, each write ONE
guarded statement (``sql.py``) on the asyncpg connection the transaction runner lends.

A write returns ``Saved`` or ``Refused`` with the facts its statement saw; ``refusals.explain``
turns those into the error. ``then`` (an idempotent response to store) runs inside the write's
transaction; without it the write is one statement without BEGIN/COMMIT.
"""

from __future__ import annotations

import builtins
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any

import asyncpg

from tripquote.agents.auth import Caller
from tripquote.agents.repository import CallerFacts, caller_facts
from tripquote.db.transaction import TransactionRunner, Tx
from tripquote.ids import new_id
from tripquote.json import dumps, loads
from tripquote.proposals.links import NewLink
from tripquote.quotes import sql
from tripquote.quotes.lifecycle import (
    LINK_ENDED_BY,
    OPEN,
    Operation,
    QuoteStatus,
    from_statuses,
    target_of,
)
from tripquote.quotes.model import Change, Draft, Item, Quote
from tripquote.quotes.results import (
    Edit,
    Filters,
    Loaded,
    Refused,
    Revision,
    Saved,
    facts_of,
)
from tripquote.quotes.serialize import fmt_instant

SYSTEM_ACTOR = "system"


Then = Callable[[Tx, Saved], Awaitable[None]]
"""Runs in the write's transaction once it wrote (e.g. store the idempotent response)."""

Decide = Callable[[Loaded, dict[str, Any] | None], Edit]
"""A merged save's decision on the quote read and the snapshot of its base version; raises
the save's error (``merge_save``)."""

MergedThen = Callable[[Tx, Saved, Edit], Awaitable[None]]
"""``Then`` of a merged save, given the edit it wrote."""


class QuoteStore:
    """All quote SQL; each method one unit of work through ``runner``."""

    def __init__(self, runner: TransactionRunner, *, open_limit: int) -> None:
        self.runner = runner
        self.open_limit = open_limit

    async def load(
        self, *, caller: Caller, quote_id: str, now: datetime, client_id: str | None = None,
        version: int | None = None,
    ) -> Loaded:  # fmt: skip
        """The quote with its items and the facts about the caller (and ``client_id``); with
        ``version``, the quote only when it is at that version (else the facts alone)."""
        values = {
            **_caller(caller), "quote_id": quote_id, "now": now, "client_id": client_id,
            "version": version,
        }  # fmt: skip

        async def work(tx: Tx) -> Loaded:
            row = await tx.fetchrow(sql.LOAD, values)
            facts = facts_of(row)
            if row["id"] is None or not facts.visible:
                return Loaded(facts, None)
            return Loaded(facts, quote_of(row))

        return await self.runner.run_store(work, atomic=False, write=False)

    async def create(
        self, *, quote_id: str, caller: Caller, draft: Draft, quote: dict[str, Any],
        now: datetime, correlation_id: str, then: Then | None,
    ) -> Saved | Refused:  # fmt: skip
        """Insert a DRAFT at version 1 with its items and first revision (``quote``: its API
        form), if the agent is active, its token valid, it may use the client and it is below
        its open-quote bound."""
        values = {
            **_content(draft),
            **_caller(caller),
            "quote_id": quote_id,
            "client_id": draft.client_id,
            "open_limit": self.open_limit,
            "target": QuoteStatus.DRAFT.value,
            "now": now,
            "operation": "CREATE",
            "correlation_id": correlation_id,
            "snapshot": dumps(quote).decode(),
        }
        return await self._write(sql.CREATE, values, then, _created, _created)

    async def edit(
        self, *, caller: Caller, quote_id: str, expected: int, draft: Draft, now: datetime,
        correlation_id: str, then: Then | None,
    ) -> Saved | Refused:  # fmt: skip
        """Save ``draft`` over the quote at version ``expected`` if the caller may act on it,
        its status allows an update (REJECTED reopens as a DRAFT, within the owner's bound),
        the client (if another) is usable, and something changes."""
        values = self._edit_values(
            caller=caller, quote_id=quote_id, expected=expected, draft=draft, now=now,
            correlation_id=correlation_id, merge=None, fresh_ids=[],
        )  # fmt: skip
        return await self._write(sql.EDIT, values, then, _edited, _edited_as_found)

    def _edit_values(
        self, *, caller: Caller, quote_id: str, expected: int, draft: Draft, now: datetime,
        correlation_id: str, merge: dict[str, Any] | None, fresh_ids: builtins.list[str],
    ) -> dict[str, Any]:  # fmt: skip
        """The parameters of ``sql.EDIT`` but the save id; ``merge``: what a merged save
        merged (``merge.Merged.record``), kept on its revision; ``fresh_ids``: the ids of
        the new items it names (``sql.ITEMS_IN``); ``new_item_ids``: an id for each item
        sent, the one an item sent without one takes when it is a new item."""
        known = {
            "id": quote_id,
            **draft.content_api(),
            **sql.changes(
                lastModifiedBy=caller.agent_id, lastModifiedAt=now, sentAt=None, expiresAt=None
            ),
        }
        return {
            **_content(draft),
            # each item's API form without its id (the snapshot splices it in: sql.EDIT)
            "item_texts": [
                dumps({k: v for k, v in item.items() if k != "id"}).decode()
                for item in known["items"]
            ],
            **_caller(caller),
            "quote_id": quote_id,
            "expected": expected,
            "client_id": draft.client_id,
            "open_limit": self.open_limit,
            "open_statuses": list(OPEN),
            "from_statuses": from_statuses(Operation.UPDATE),
            "target": target_of(Operation.UPDATE).value,
            "now": now,
            "operation": Operation.UPDATE.value,
            "correlation_id": correlation_id,
            "parts": sql.snapshot_parts(known, sql.EDIT_FROM_ROW),
            "merge": dumps(merge).decode() if merge is not None else None,
            "fresh_ids": fresh_ids,
            "new_item_ids": [new_id() for _ in draft.items],
        }

    async def merged_edit(
        self, *, caller: Caller, quote_id: str, base_version: int, now: datetime,
        correlation_id: str, decide: Decide, then: MergedThen | None = None,
    ) -> tuple[Saved | Refused, Edit]:  # fmt: skip
        """A merged save, in one transaction: the quote's row locked (``sql.LOCK_QUOTE``), the
        quote read (``sql.LOAD``) with its snapshot of ``base_version`` (None unless older
        than the quote's version, or when it never existed), ``decide`` (may raise: nothing
        written) says what to write, written by ``edit``'s guarded statement at the version
        read, which the lock keeps current until COMMIT; ``then`` runs in that transaction once
        it wrote."""
        save_id = new_id()
        decided: builtins.list[Edit] = []

        async def work(tx: Tx) -> Saved | Refused:
            decided.clear()
            await tx.fetchrow(sql.LOCK_QUOTE, {"quote_id": quote_id})
            row = await tx.fetchrow(
                sql.LOAD,
                {
                    **_caller(caller),
                    "quote_id": quote_id,
                    "now": now,
                    "client_id": None,
                    "version": None,
                },
            )
            facts = facts_of(row)
            visible = row["id"] is not None and facts.visible
            loaded = Loaded(facts, quote_of(row) if visible else None)
            base = None
            if loaded.quote is not None and base_version < loaded.quote.version:
                found = await tx.fetchrow(
                    sql.REVISION, {"quote_id": quote_id, "version": base_version}
                )
                base = loads(found["snapshot"].encode()) if found is not None else None
            edit = decide(loaded, base)
            decided.append(edit)
            stored = {item.id for item in edit.current.draft.items}
            fresh = [i.id for i in edit.draft.items if i.id is not None and i.id not in stored]
            values = self._edit_values(
                caller=caller, quote_id=quote_id, expected=edit.current.version,
                draft=edit.draft, now=now, correlation_id=correlation_id, merge=edit.merge,
                fresh_ids=fresh,
            )  # fmt: skip
            row = await tx.write(sql.EDIT, {**values, "save_id": save_id})
            if not row["written"]:
                return Refused(facts_of(row))
            saved = _edited(row)
            if then is not None:
                await then(tx, saved, edit)
            return saved

        async def found(tx: Tx) -> Saved | None:
            row = await tx.fetchrow(sql.OUTCOME, {"save_id": save_id})
            return _edited_as_found(row) if row["written"] else None

        result = await self.runner.run_store(work, atomic=True, outcome=found)
        return result, decided[-1]

    async def transition(
        self, *, caller: Caller, quote_id: str, expected: int, change: Change, now: datetime,
        timezone: str | None, correlation_id: str, then: Then | None,
        link: NewLink | None = None,
    ) -> Saved | Refused:  # fmt: skip
        """Move the quote at version ``expected`` to ``change.status`` if the caller may act
        on it, its status allows ``change.operation`` and it has the items that needs; a send
        (``change.expiries`` made for ``timezone``) only in the caller's agency ``timezone``
        and before its trip starts (``sql.trip_started``), expiring by then (``offer_days``),
        storing the proposal behind ``link``; a re-send or a cancel ends the open links."""
        changes = sql.changes(lastModifiedBy=caller.agent_id, lastModifiedAt=now)
        expiries = None
        if change.expiries is not None:
            changes.update(sql.changes(sentAt=change.sent_at))
            expiries = {str(days): fmt_instant(at) for days, at in change.expiries.items()}
        values = {
            **_caller(caller),
            "quote_id": quote_id,
            "client_id": None,
            "expected": expected,
            "sent_at": change.sent_at,
            "today": change.today,
            "expiries": dumps(expiries).decode() if expiries is not None else None,
            "timezone": timezone,
            "items_needed": change.items_needed,
            "from_statuses": from_statuses(change.operation),
            "target": change.status.value,
            "now": now,
            "operation": change.operation.value,
            "correlation_id": correlation_id,
            "changes": dumps(changes).decode(),
            "end_reason": LINK_ENDED_BY.get(change.operation),
            "link_hash": link.hash if link is not None else None,
            "link_nonce": link.nonce if link is not None else None,
            "proposal_id": new_id() if link is not None else None,
        }
        return await self._write(sql.TRANSITION, values, then, _transitioned, _transitioned)

    async def _write(
        self,
        statement: sql.Statement,
        values: dict[str, Any],
        then: Then | None,
        saved_of: Callable[[Any], Saved],
        found_of: Callable[[Any], Saved],
    ) -> Saved | Refused:
        """Run ``statement`` as one save, under a fresh save id; ``saved_of`` reads its row,
        ``found_of`` the ``sql.OUTCOME`` row of the save found after an unanswered COMMIT."""
        save_id = new_id()

        async def work(tx: Tx) -> Saved | Refused:
            row = await tx.write(statement, {**values, "save_id": save_id})
            if not row["written"]:
                return Refused(facts_of(row))
            saved = saved_of(row)
            if then is not None:
                await then(tx, saved)
            return saved

        async def found(tx: Tx) -> Saved | None:
            row = await tx.fetchrow(sql.OUTCOME, {"save_id": save_id})
            return found_of(row) if row["written"] else None

        return await self.runner.run_store(work, atomic=then is not None, outcome=found)

    def refused(self, code: str) -> None:
        """Count a write refused with the error ``code`` as its rolled-back unit."""
        self.runner.rolled_back(code)

    async def recount_open_quotes(self, *, agent_id: str, now: datetime) -> int:
        """Set the agent's open-quote bound to its exact count of open quotes, counted under
        its row lock (so every create that raised the bound before is counted); the count."""

        async def work(tx: Tx) -> int:
            await tx.fetchrow(sql.LOCK_AGENT, {"agent_id": agent_id})
            row = await tx.fetchrow(
                sql.RECOUNT, {"agent_id": agent_id, "now": now, "open_statuses": list(OPEN)}
            )
            return int(row[0]) if row is not None else 0

        return await self.runner.run_store(work, atomic=True)

    async def expire_due(self, *, now: datetime, batch_size: int, correlation_id: str) -> int:
        """Write EXPIRED on every SENT quote past its expiry, in batches of one statement each,
        by the system actor; how many this call wrote."""
        values = {
            "from_statuses": from_statuses(Operation.EXPIRE),
            "target": target_of(Operation.EXPIRE).value,
            "now": now,
            "batch_size": batch_size,
            "actor": SYSTEM_ACTOR,
            "operation": Operation.EXPIRE.value,
            "correlation_id": correlation_id,
            "changes": dumps(sql.changes(lastModifiedBy=SYSTEM_ACTOR, lastModifiedAt=now)).decode(),
        }

        total = 0
        while True:
            save_id = new_id()

            async def work(tx: Tx, save_id: str = save_id) -> tuple[int, int]:
                row = await tx.fetchrow(sql.EXPIRE, {**values, "save_id": save_id})
                return int(row["seen"]), int(row["written"])

            async def found(tx: Tx, save_id: str = save_id) -> tuple[int, int] | None:
                # A batch found written is taken as full: the loop looks for another.
                written = int((await tx.fetchrow(sql.OUTCOME, {"save_id": save_id}))["written"])
                return (batch_size, written) if written else None

            seen, written = await self.runner.run_store(work, atomic=True, outcome=found)
            total += written
            if seen < batch_size or written == 0:
                return total

    async def caller_facts(self, *, caller: Caller) -> CallerFacts:
        """Whether the caller is an active agent, and whether its token was revoked."""

        async def work(tx: Tx) -> CallerFacts:
            return caller_facts(await tx.fetchrow(sql.CALLER_FACTS, _caller(caller)))

        return await self.runner.run_store(work, atomic=False, write=False)

    async def list(
        self, *, caller: Caller, filters: Filters, before: tuple[datetime, str] | None,
        limit: int, now: datetime,
    ) -> tuple[CallerFacts, builtins.list[Quote]]:  # fmt: skip
        """The caller's facts and, if it may act, its ``limit`` quotes before ``before`` (LIST)."""

        async def work(tx: Tx) -> tuple[CallerFacts, builtins.list[Quote]]:
            facts = caller_facts(await tx.fetchrow(sql.CALLER_FACTS, _caller(caller)))
            principal = facts.principal
            if principal is None:
                return facts, []
            await tx.fetch(sql.KEYSET_PLANS, {})
            rows = await tx.fetch(
                sql.LIST[principal.role],
                {
                    "agent_id": principal.agent_id,
                    "agency_id": principal.agency_id,
                    "now": now,
                    "status": filters.status,
                    "client_id": filters.client_id,
                    "updated_since": filters.updated_since,
                    "before_at": before[0] if before else None,
                    "before_id": before[1] if before else None,
                    "limit": limit,
                },
            )
            return facts, [quote_of(row) for row in rows]

        return await self.runner.run_store(work, atomic=True, write=False)

    async def revision_page(
        self, *, quote_id: str, after: int, limit: int
    ) -> builtins.list[Revision]:
        """Up to ``limit`` of the quote's committed versions after version ``after``, oldest
        first, without their snapshots (REVISION_PAGE)."""

        async def work(tx: Tx) -> builtins.list[Any]:
            return await tx.fetch(
                sql.REVISION_PAGE, {"quote_id": quote_id, "after": after, "limit": limit}
            )

        rows = await self.runner.run_store(work, atomic=False, write=False)
        return [_revision(row) for row in rows]

    async def revision(self, *, quote_id: str, version: int) -> Revision | None:
        """The quote's committed ``version`` with its snapshot; None if it never existed."""

        async def work(tx: Tx) -> Any:
            return await tx.fetchrow(sql.REVISION, {"quote_id": quote_id, "version": version})

        row = await self.runner.run_store(work, atomic=False, write=False)
        if row is None:
            return None
        return replace(_revision(row), snapshot=loads(row["snapshot"].encode()))

    async def snapshots(self, *, quote_id: str, versions: builtins.list[int]) -> dict[int, Any]:
        """The snapshots of ``versions`` of the quote, by version (a missing one is absent)."""

        async def work(tx: Tx) -> builtins.list[Any]:
            return await tx.fetch(sql.SNAPSHOTS, {"quote_id": quote_id, "versions": versions})

        rows = await self.runner.run_store(work, atomic=False, write=False)
        return {row["version"]: loads(row["snapshot"].encode()) for row in rows}


def _revision(row: Any) -> Revision:
    return Revision(
        version=row["version"],
        operation=row["operation"],
        status=row["status"],
        actor_id=row["actor_id"],
        correlation_id=row["correlation_id"],
        created_at=row["created_at"],
        merge=loads(row["merge"].encode()) if row["merge"] is not None else None,
    )


def _caller(caller: Caller) -> dict[str, Any]:
    """The parameters that name the caller (``agents.CALLER``) and the writes' actor."""
    return {"agent_id": caller.agent_id, "issued_at": caller.issued_at, "actor": caller.agent_id}


def _content(draft: Draft) -> dict[str, Any]:
    items = [
        {
            "id": item.id,
            "position": position,
            "type": item.type,
            "description": item.description,
            "quantity": item.quantity,
            "unit_price": item.unit_price,
            "line_total": item.line_total,
            "details": item.details,
        }
        for position, item in enumerate(draft.items)
    ]
    return {
        "trip_name": draft.trip_name,
        "destination": draft.destination,
        "start_date": draft.start_date,
        "end_date": draft.end_date,
        "travelers": draft.travelers,
        "currency": draft.currency,
        "markup_percent": draft.markup_percent,
        "discount": draft.discount,
        "expires_in_days": draft.expires_in_days,
        "notes": draft.notes,
        "subtotal": draft.subtotal,
        "markup_amount": draft.markup_amount,
        "total": draft.total,
        "items": dumps(items).decode(),
    }


def _created(_row: Any) -> Saved:
    return Saved()


def _edited(row: Any) -> Saved:
    return Saved(
        agent_id=row["saved_agent_id"],
        client_id=row["saved_client_id"],
        created_at=row["saved_created_at"],
        item_ids=tuple(row["item_ids"] or ()),
    )


def _transitioned(row: Any) -> Saved:
    return Saved(snapshot=row["snapshot"])


def _edited_as_found(row: Any) -> Saved:
    """An edit's ``Saved`` from its revision's snapshot (``sql.OUTCOME``): the values only
    the row knew are there too."""
    snapshot = loads(row["snapshot"].encode())
    return Saved(
        agent_id=snapshot["agentId"],
        client_id=snapshot["clientId"],
        created_at=datetime.fromisoformat(snapshot["createdAt"]),
        snapshot=row["snapshot"],
        item_ids=tuple(item["id"] for item in snapshot["items"]),
    )


def quote_of(row: Any) -> Quote:
    """A ``Quote`` from a ``quotes`` row with ``fact_status`` (status as of the read) and
    ``items`` (their rows as a JSON array)."""
    items = loads(row["items"].encode())
    draft = Draft(
        client_id=row["client_id"],
        trip_name=row["trip_name"],
        destination=row["destination"],
        start_date=row["start_date"],
        end_date=row["end_date"],
        travelers=row["travelers"],
        currency=row["currency"],
        markup_percent=row["markup_percent"],
        discount=row["discount"],
        expires_in_days=row["expires_in_days"],
        notes=row["notes"],
        items=tuple(
            Item(
                id=i["api_id"],
                type=i["type"],
                description=i["description"],
                quantity=i["quantity"],
                # json_agg renders numerics as JSON numbers: exact, parsed as Decimal
                unit_price=Decimal(i["unit_price"]),
                line_total=Decimal(i["line_total"]),
                details=i["details"],
            )
            for i in items
        ),
        subtotal=row["subtotal"],
        markup_amount=row["markup_amount"],
        total=row["total"],
    )
    return Quote(
        id=row["id"],
        agent_id=row["agent_id"],
        client_id=row["client_id"],
        draft=draft,
        status=QuoteStatus(row["fact_status"]),
        version=row["version"],
        created_at=row["created_at"],
        last_modified_by=row["last_modified_by"],
        last_modified_at=row["last_modified_at"],
        sent_at=row["sent_at"],
        expires_at=row["expires_at"],
    )


WARM_UP_LOCK_TIMEOUT_MS = 100
"""How long start-up waits for a table lock while preparing (a ``VACUUM FULL`` or an index
build may hold one): past it that statement is prepared on its first use instead."""


async def prepare_statements(driver: Any) -> None:
    """Run the write statements once as no-ops (every parameter NULL: they match nothing) on
    one asyncpg connection, so they are prepared there (asyncpg's statement cache, the generic
    plan) before the first save; each in its own transaction, rolled back, with a short lock
    and statement timeout: a locked table costs start-up at most that."""
    for statement in (*sql.SAVES, sql.LOAD):
        transaction = driver.transaction()
        await transaction.start()
        try:
            await driver.execute(
                f"SET LOCAL lock_timeout = {WARM_UP_LOCK_TIMEOUT_MS};"
                f" SET LOCAL statement_timeout = {10 * WARM_UP_LOCK_TIMEOUT_MS}"
            )
            await driver.fetch(statement.text, *([None] * len(statement.names)))
        except asyncpg.PostgresError:
            pass  # e.g. a lock not granted in time, or not migrated yet: prepared on first use
        finally:
            await transaction.rollback()
