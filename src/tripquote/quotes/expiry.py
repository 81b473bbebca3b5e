"""The expiry sweep: SENT quotes past ``expiresAt`` are written EXPIRED, in batches, each as a
versioned revision by the system actor. Safe to run on several hosts at once: PostgreSQL
sweepers take disjoint batches (``SKIP LOCKED``), and every write is conditional on the status
and version read, so a quote that reached another status meanwhile is never touched."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncConnection

from tripquote.db.transaction import TransactionRunner
from tripquote.quotes import repository as repo
from tripquote.quotes.lifecycle import Operation, QuoteStatus, check_transition
from tripquote.quotes.repository import RevisionRecord
from tripquote.quotes.serialize import quote_to_api

SYSTEM_ACTOR = "system"


async def expire_due(
    runner: TransactionRunner, *, now: datetime, batch_size: int, correlation_id: str
) -> int:
    """Expire every SENT quote with ``expires_at`` ≤ ``now``; returns how many this call wrote."""
    total = 0
    while True:

        async def work(conn: AsyncConnection) -> tuple[int, int]:
            skip_locked = conn.dialect.name == "postgresql"
            due = await repo.due_for_expiry(
                conn, now=now, limit=batch_size, skip_locked=skip_locked
            )
            written = 0
            for record in due:
                target = check_transition(QuoteStatus(record.row["status"]), Operation.EXPIRE)
                values = {
                    "status": target.value,
                    "last_modified_by": SYSTEM_ACTOR,
                    "last_modified_at": now,
                }
                new_version = await repo.update_quote_if_version(
                    conn,
                    quote_id=record.row["id"],
                    expected_version=record.row["version"],
                    values=values,
                )
                if new_version is None:  # changed since read: leave it alone
                    continue
                quote = quote_to_api({**record.row, **values, "version": new_version}, record.items)
                await repo.insert_revision(
                    conn,
                    RevisionRecord(
                        quote_id=quote["id"],
                        version=new_version,
                        operation=Operation.EXPIRE.value,
                        status=target.value,
                        actor_id=SYSTEM_ACTOR,
                        correlation_id=correlation_id,
                        created_at=now,
                        snapshot=quote,
                    ),
                )
                written += 1
            return len(due), written

        seen, written = await runner.run(work)
        total += written
        if seen < batch_size or written == 0:
            return total
