"""A realistic history written straight into a migrated tripquote database with ``COPY``.

Quotes are priced by the service's own rules (``validate_quote``, ``price``) from the bench
fixtures, their items cycled to 3-8, and every revision's snapshot is the service's own API
form (``Quote.to_api``, serialised by ``tripquote.json.dumps``), as a save writes it. Rows go
in with asyncpg's ``copy_records_to_table`` in chunks, so memory stays flat at any size.

Used by the growth scenario (``bench/growth.py``) and by the plan test
(``tests/db/test_plans.py``), which seeds a small history with it.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import random
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from bench.payloads import load_fixtures
from tripquote.ids import new_id
from tripquote.json import dumps
from tripquote.quotes.lifecycle import QuoteStatus
from tripquote.quotes.model import Draft, Quote, price
from tripquote.quotes.rules import Limits, validate_quote

QUOTES_PER_AGENCY = 5_000
QUOTES_PER_AGENT = 500
CLIENTS_PER_AGENT = 10
BYTES_PER_QUOTE = 12_000
"""Disk reckoned per history quote with its items, 2 revisions, 2 operation records, 1
idempotency key and their indexes (~10 KB measured at 20,000 quotes, see README)."""
CHUNK = 2_000


def _words(text: str) -> tuple[str, ...]:
    return tuple(text.split())


QUOTE_COLUMNS = _words(
    "id agency_id agent_id client_id trip_name destination start_date end_date travelers "
    "currency markup_percent discount expires_in_days notes subtotal markup_amount total "
    "status version created_at last_modified_by last_modified_at sent_at expires_at"
)
ITEM_COLUMNS = _words(
    "item_id quote_id position type description quantity unit_price line_total details"
)
REVISION_COLUMNS = _words(
    "quote_id version operation status actor_id correlation_id created_at snapshot save_id"
)
RECORD_COLUMNS = _words(
    "recorded_at correlation_id operation agent_id quote_id outcome error_code "
    "http_status duration_ms pid"
)
KEY_COLUMNS = ("agent_id", "key", "request_hash", "state", "created_at", "expires_at")


@dataclass(frozen=True, slots=True)
class Size:
    """How much history: ``quotes``, and agencies, agents, clients in proportion."""

    quotes: int
    at_least_agencies: int = 2

    @property
    def agencies(self) -> int:
        """One per 5,000 quotes (200 at 1,000,000), at least ``at_least_agencies``."""
        return max(self.at_least_agencies, self.quotes // QUOTES_PER_AGENCY)

    @property
    def agents(self) -> int:
        """One per 500 quotes (2,000 at 1,000,000), at least 2 per agency."""
        return max(2 * self.agencies, self.quotes // QUOTES_PER_AGENT)

    @property
    def revisions(self) -> int:
        """Versions 1, 2 and 3 in turn: 2 per quote on average."""
        return sum(_versions(i) for i in range(3)) * (self.quotes // 3) + sum(
            _versions(i) for i in range(self.quotes % 3)
        )

    @property
    def disk_bytes(self) -> int:
        """The disk the history needs (``BYTES_PER_QUOTE`` per quote)."""
        return self.quotes * BYTES_PER_QUOTE


def _versions(i: int) -> int:
    return 1 + i % 3


def templates(
    currencies: Sequence[str] = ("JPY", "EUR", "USD", "CHF", "GBP", "CAD"),
) -> list[Draft]:
    """Every fixture with 3 to 8 items, validated and priced by the service's rules."""
    limits = Limits(frozenset(currencies), 50)
    drafts = []
    for fixture in load_fixtures():
        items = fixture.request.get("items") or []
        if not items or fixture.request["currency"] not in currencies:
            continue
        for count in range(3, 9):
            request = {**fixture.request, "clientId": "c", "items": _cycle(items, count)}
            drafts.append(price(validate_quote(request, limits=limits), None))
    return drafts


def _cycle(items: list[Any], count: int) -> list[Any]:
    return [items[i % len(items)] for i in range(count)]


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a generated quote belongs to."""

    agency_id: str
    agent_id: str
    client_ids: tuple[str, ...]


@dataclass
class Rows:
    """The rows of one chunk, by table."""

    quotes: list[tuple[Any, ...]] = field(default_factory=list)
    items: list[tuple[Any, ...]] = field(default_factory=list)
    revisions: list[tuple[Any, ...]] = field(default_factory=list)

    async def copy(self, conn: Any) -> None:
        """COPY the chunk (quotes first: the others reference them)."""
        await conn.copy_records_to_table("quotes", records=self.quotes, columns=QUOTE_COLUMNS)
        await conn.copy_records_to_table("quote_items", records=self.items, columns=ITEM_COLUMNS)
        await conn.copy_records_to_table(
            "quote_revisions", records=self.revisions, columns=REVISION_COLUMNS
        )
        self.quotes.clear()
        self.items.clear()
        self.revisions.clear()


_NEXT = {  # the status a quote's k-th version has, by its last status
    QuoteStatus.DRAFT: ("CREATE",),
    QuoteStatus.SENT: ("CREATE", "SEND"),
    QuoteStatus.ACCEPTED: ("CREATE", "SEND", "ACCEPT"),
    QuoteStatus.REJECTED: ("CREATE", "SEND", "REJECT"),
    QuoteStatus.EXPIRED: ("CREATE", "SEND", "EXPIRE"),
}
_STATUS_OF = {
    "CREATE": QuoteStatus.DRAFT,
    "UPDATE": QuoteStatus.DRAFT,
    "SEND": QuoteStatus.SENT,
    "ACCEPT": QuoteStatus.ACCEPTED,
    "REJECT": QuoteStatus.REJECTED,
    "EXPIRE": QuoteStatus.EXPIRED,
}


def add_quote(
    rows: Rows,
    *,
    owner: Owner,
    client_id: str,
    draft: Draft,
    operations: Sequence[str],
    created_at: datetime,
    step: timedelta,
    expires_at: datetime | None = None,
) -> str:
    """One quote whose history is ``operations`` (one revision each, ``step`` apart), its
    items and revisions, each snapshot the API form the service writes; returns its id."""
    quote_id = new_id(created_at)
    version = len(operations)
    modified_at = created_at + step * (version - 1)
    sent_index = operations.index("SEND") if "SEND" in operations else None
    sent_at = created_at + step * sent_index if sent_index is not None else None
    if sent_at is not None and expires_at is None:
        expires_at = sent_at + timedelta(days=draft.expires_in_days)
    status = _STATUS_OF[operations[-1]]
    last_by = "system" if operations[-1] == "EXPIRE" else owner.agent_id
    quote = Quote(
        id=quote_id,
        agent_id=owner.agent_id,
        client_id=client_id,
        draft=draft,
        status=status,
        version=version,
        created_at=created_at,
        last_modified_by=last_by,
        last_modified_at=modified_at,
        sent_at=sent_at,
        expires_at=expires_at,
    )
    form = quote.to_api()
    d = draft
    rows.quotes.append(
        (
            quote_id,
            owner.agency_id,
            owner.agent_id,
            client_id,
            d.trip_name,
            d.destination,
            d.start_date,
            d.end_date,
            d.travelers,
            d.currency,
            d.markup_percent,
            d.discount,
            d.expires_in_days,
            d.notes,
            d.subtotal,
            d.markup_amount,
            d.total,
            status.value,
            version,
            created_at,
            last_by,
            modified_at,
            sent_at,
            expires_at,
        )
    )
    for position, item in enumerate(d.items):
        rows.items.append(
            (
                new_id(created_at),
                quote_id,
                position,
                item.type,
                item.description,
                item.quantity,
                item.unit_price,
                item.line_total,
                dumps(item.details).decode(),
            )
        )
    for index, operation in enumerate(operations):
        at = created_at + step * index
        actor = "system" if operation == "EXPIRE" else owner.agent_id
        sent = sent_index is not None and index >= sent_index
        snapshot = {
            **form,
            "status": _STATUS_OF[operation].value,
            "version": index + 1,
            "lastModifiedBy": actor,
            "lastModifiedAt": form["createdAt"] if index == 0 else _instant(at),
            "sentAt": form["sentAt"] if sent else None,
            "expiresAt": form["expiresAt"] if sent else None,
        }
        rows.revisions.append(
            (
                quote_id,
                index + 1,
                operation,
                snapshot["status"],
                actor,
                f"growth-{quote_id[:8]}-{index + 1}",
                at,
                dumps(snapshot).decode(),
                new_id(at),
            )
        )
    return quote_id


def _instant(value: datetime) -> str:
    from tripquote.quotes.serialize import fmt_instant

    return str(fmt_instant(value))


async def add_agencies(conn: Any, size: Size, *, now: datetime, rng: random.Random) -> list[Owner]:
    """``size.agencies`` agencies and ``size.agents`` agents with their clients; the owners."""
    agencies = [
        (new_id(now), f"Growth agency {i}", "Europe/Paris", now) for i in range(size.agencies)
    ]
    await conn.copy_records_to_table(
        "agencies", records=agencies, columns=("id", "name", "timezone", "created_at")
    )
    agents, clients, owners = [], [], []
    tag = uuid.uuid4().hex[:8]
    for i in range(size.agents):
        agency_id = agencies[i % len(agencies)][0]
        agent_id = new_id(now)
        role = "admin" if i < len(agencies) else "agent"
        agents.append(
            (agent_id, agency_id, f"g{i}.{tag}@growth.example", f"Agent {i}", role, True, now)
        )
        ids = tuple(new_id(now) for _ in range(CLIENTS_PER_AGENT))
        clients += [(c, agency_id, agent_id, f"Client {c[:8]}", None, None, now) for c in ids]
        owners.append(Owner(agency_id, agent_id, ids))
    await conn.copy_records_to_table(
        "agents",
        records=agents,
        columns=("id", "agency_id", "email", "name", "role", "active", "created_at"),
    )
    await conn.copy_records_to_table(
        "clients",
        records=clients,
        columns=("id", "agency_id", "agent_id", "name", "email", "phone", "created_at"),
    )
    rng.shuffle(owners)
    return owners


_HISTORY = (
    ("CREATE",),
    ("CREATE", "SEND"),
    ("CREATE", "SEND", "ACCEPT"),
    ("CREATE",),
    ("CREATE", "SEND"),
    ("CREATE", "SEND", "REJECT"),
    ("CREATE",),
    ("CREATE", "SEND"),
    ("CREATE", "SEND", "EXPIRE"),
)
"""Versions 1, 2, 3 in turn (2 revisions per quote on average); closed quotes in turn."""


async def load_history(
    conn: Any,
    size: Size,
    *,
    now: datetime,
    days: int = 730,
    seed: int = 18,
    progress: Any = None,
    dsn: str | None = None,
    parts: int = 1,
) -> dict[str, int]:
    """The history: agencies, agents, clients, ``size.quotes`` quotes created over ``days``
    days (SENT ones still valid, the others closed), 2 operation records and 1 live
    idempotency key per quote; returns the rows written by table.

    ``parts`` > 1 (with ``dsn``, the database's asyncpg DSN): the quotes are written by that
    many processes at once, each on its own connection, quote ``i`` by process
    ``i % parts``: one's Python builds rows while another's ``COPY`` runs on the server (one
    process leaves one core idle most of the time: it builds, then waits)."""
    owners = await add_agencies(conn, size, now=now, rng=random.Random(seed))
    if parts > 1:
        if dsn is None:
            raise ValueError("parts > 1 needs the dsn")
        await _in_processes(dsn, size, owners, now=now, days=days, seed=seed, parts=parts,
                            progress=progress)  # fmt: skip
    else:
        await load_quotes(conn, size, owners, now=now, days=days, seed=seed, progress=progress)
    await _raise_bounds(conn)
    return {
        "quotes": size.quotes,
        "quote_revisions": size.revisions,
        "operation_records": 2 * size.quotes,
        "idempotency_keys": size.quotes,
    }


async def _in_processes(
    dsn: str, size: Size, owners: list[Owner], *, now: datetime, days: int, seed: int,
    parts: int, progress: Any,
) -> None:  # fmt: skip
    context = multiprocessing.get_context("spawn")
    done = context.Value("q", 0)
    with ProcessPoolExecutor(
        parts, mp_context=context, initializer=_share, initargs=(done,)
    ) as pool:
        loop = asyncio.get_running_loop()
        futures = [
            loop.run_in_executor(
                pool, _load_part, dsn, size, owners, now, days, seed, (part, parts)
            )
            for part in range(parts)
        ]
        waiting = asyncio.gather(*futures)
        while not waiting.done():
            await asyncio.wait([waiting], timeout=1.0)
            if progress is not None:
                progress(done.value, size.quotes)
        await waiting


_DONE: Any = None


def _share(done: Any) -> None:
    global _DONE
    _DONE = done


def _load_part(
    dsn: str, size: Size, owners: list[Owner], now: datetime, days: int, seed: int,
    part: tuple[int, int],
) -> None:  # fmt: skip
    async def run() -> None:
        conn = await asyncpg.connect(dsn)
        try:

            def count(n: int, _total: int) -> None:
                with _DONE.get_lock():
                    _DONE.value += n

            await load_quotes(
                conn, size, owners, now=now, days=days, seed=seed, part=part, progress=count,
                delta=True,
            )  # fmt: skip
        finally:
            await conn.close()

    asyncio.run(run())


async def load_quotes(
    conn: Any,
    size: Size,
    owners: Sequence[Owner],
    *,
    now: datetime,
    days: int,
    seed: int,
    part: tuple[int, int] = (0, 1),
    progress: Any = None,
    delta: bool = False,
) -> None:
    """Quote ``i`` of the history for every ``i`` of ``part`` (``(k, n)``: ``i % n == k``),
    in chunks of ``CHUNK``; ``progress(done, total)`` after each (``delta``: the chunk's
    count instead of the running total)."""
    k, n = part
    rng = random.Random(seed * 1_000 + k)
    drafts = templates()
    rows = Rows()
    records: list[tuple[Any, ...]] = []
    keys: list[tuple[Any, ...]] = []
    span = timedelta(days=days).total_seconds()
    mine = range(k, size.quotes, n)
    written = 0
    for i in mine:
        owner = owners[i % len(owners)]
        operations = _HISTORY[i % len(_HISTORY)]
        created_at = now - timedelta(seconds=span * (1 - i / size.quotes) + 3600)
        draft = drafts[rng.randrange(len(drafts))]
        expires_at = None
        if operations[-1] == "SEND":  # still valid: due later than the bench's sweep
            expires_at = now + timedelta(days=1 + i % 14)
        quote_id = add_quote(
            rows,
            owner=owner,
            client_id=owner.client_ids[i % CLIENTS_PER_AGENT],
            draft=draft,
            operations=operations,
            created_at=created_at,
            step=timedelta(minutes=30),
            expires_at=expires_at,
        )
        for r in range(2):
            recorded = now - timedelta(seconds=rng.random() * 60 * 86400)
            records.append(
                (
                    recorded,
                    f"growth-{i}-{r}",
                    "quote.update",
                    owner.agent_id,
                    quote_id,
                    "ok",
                    None,
                    200,
                    5.0 + rng.random() * 20,
                    1000 + r,
                )
            )
        keys.append(
            (owner.agent_id, str(uuid.uuid4()), "0" * 64, "done", now, now + timedelta(hours=24))
        )
        if len(rows.quotes) >= CHUNK or i == mine[-1]:
            chunk = len(rows.quotes)
            await rows.copy(conn)
            await conn.copy_records_to_table(
                "operation_records", records=records, columns=RECORD_COLUMNS
            )
            await conn.copy_records_to_table("idempotency_keys", records=keys, columns=KEY_COLUMNS)
            records.clear()
            keys.clear()
            written += chunk
            if progress is not None:
                progress(chunk if delta else written, size.quotes)


async def _raise_bounds(conn: Any) -> None:
    """Every agent's open-quote bound at least its open quotes (the create path's invariant)."""
    await conn.execute(
        """UPDATE agents a SET open_quote_bound = greatest(a.open_quote_bound, o.n)
             FROM (SELECT agent_id, count(*) AS n FROM quotes
                    WHERE status IN ('DRAFT', 'SENT') GROUP BY agent_id) o
            WHERE o.agent_id = a.id"""
    )


def utcnow() -> datetime:
    """Now, aware UTC."""
    return datetime.now(UTC)
