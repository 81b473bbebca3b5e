"""The working set of the growth scenario and of the plan test: one owner's quotes, a quote
with a long history, due quotes, expired idempotency keys (``growth_load``'s rows, by COPY)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from typing import Any

from bench.growth_load import CHUNK, KEY_COLUMNS, Owner, Rows, add_quote
from tripquote.quotes.model import Draft


def owner_quotes(
    owner: Owner,
    count: int,
    *,
    now: datetime,
    drafts: list[Draft],
    spread: timedelta,
    operations: Sequence[Sequence[str]] = (("CREATE",), ("CREATE", "SEND")),
) -> Iterator[tuple[Rows, list[str]]]:
    """``count`` quotes of ``owner`` in chunks, created over ``spread`` before ``now``, their
    clients and histories in turn (SENT ones valid for days yet)."""
    rows, ids = Rows(), []
    for i in range(count):
        ops = operations[i % len(operations)]
        ids.append(
            add_quote(
                rows,
                owner=owner,
                client_id=owner.client_ids[i % len(owner.client_ids)],
                draft=drafts[i % len(drafts)],
                operations=ops,
                created_at=now - spread * (1 - i / count) - timedelta(hours=1),
                step=timedelta(minutes=1),
                expires_at=now + timedelta(days=7) if ops[-1] == "SEND" else None,
            )
        )
        if len(rows.quotes) >= CHUNK or i == count - 1:
            yield rows, ids
            rows, ids = Rows(), []


async def add_long_history(
    conn: Any, owner: Owner, *, versions: int, now: datetime, draft: Draft
) -> str:
    """One DRAFT quote of ``owner`` with ``versions`` versions (a create, then updates)."""
    rows = Rows()
    quote_id = add_quote(
        rows,
        owner=owner,
        client_id=owner.client_ids[0],
        draft=draft,
        operations=("CREATE",) + ("UPDATE",) * (versions - 1),
        created_at=now - timedelta(days=30),
        step=timedelta(minutes=1),
    )
    await rows.copy(conn)
    return quote_id


async def add_due(
    conn: Any, owners: Sequence[Owner], count: int, *, now: datetime, drafts: list[Draft]
) -> None:
    """``count`` SENT quotes past their expiry (what ``tripquote expire`` writes EXPIRED)."""
    rows = Rows()
    for i in range(count):
        owner = owners[i % len(owners)]
        add_quote(
            rows,
            owner=owner,
            client_id=owner.client_ids[0],
            draft=drafts[i % len(drafts)],
            operations=("CREATE", "SEND"),
            created_at=now - timedelta(days=20),
            step=timedelta(minutes=5),
            expires_at=now - timedelta(minutes=1 + i % 600),
        )
        if len(rows.quotes) >= CHUNK or i == count - 1:
            await rows.copy(conn)


async def add_expired_keys(
    conn: Any, agent_ids: Sequence[str], count: int, *, now: datetime
) -> None:
    """``count`` idempotency keys past their expiry (what the purge deletes)."""
    for start in range(0, count, 10 * CHUNK):
        keys = [
            (
                agent_ids[i % len(agent_ids)],
                f"growth-expired-{uuid.uuid4()}",
                "0" * 64,
                "done",
                now - timedelta(hours=48),
                now - timedelta(hours=24, seconds=i),
            )
            for i in range(start, min(count, start + 10 * CHUNK))
        ]
        await conn.copy_records_to_table("idempotency_keys", records=keys, columns=KEY_COLUMNS)
