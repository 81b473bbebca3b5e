"""The bare save: the same transaction as tripquote's save, written straight against asyncpg.

Shared by the driver-direct limit (``bench/limit.py``) and the bare FastAPI peer
(``bench/peer.py``) so both run exactly the same SQL. No validation, no pricing (the totals
come precomputed in the body), no auth, no logging, no metrics.

A save is one transaction: the quote row (conditional ``UPDATE ... WHERE id AND version``
for an update, ``INSERT`` for a create), the item list replaced (delete + one multi-row
insert), and a revision row carrying a JSON snapshot of what was saved.

The tables copy tripquote's (``src/tripquote/db/tables.py``: columns, checks, unique keys,
indexes), minus the foreign keys to agencies/agents/clients, which the bare world does not
have. They live in the bench's own database, never tripquote's, so the limit and the peer
do not depend on the migration.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

import orjson

SCHEMA = """
CREATE TABLE IF NOT EXISTS quotes (
    id varchar(36) PRIMARY KEY,
    agency_id varchar(36) NOT NULL,
    agent_id varchar(36) NOT NULL,
    client_id varchar(36) NOT NULL,
    trip_name varchar(200) NOT NULL,
    destination varchar(200) NOT NULL,
    start_date date NOT NULL,
    end_date date NOT NULL,
    travelers integer NOT NULL CHECK (travelers BETWEEN 1 AND 50),
    currency varchar(3) NOT NULL,
    markup_percent numeric(5, 2) NOT NULL,
    discount numeric(18, 4) NOT NULL,
    expires_in_days integer NOT NULL,
    notes text,
    subtotal numeric(18, 4) NOT NULL,
    markup_amount numeric(18, 4) NOT NULL,
    total numeric(18, 4) NOT NULL,
    status varchar(16) NOT NULL CHECK (status IN ('DRAFT', 'SENT', 'ACCEPTED', 'REJECTED',
        'EXPIRED', 'CANCELLED')),
    version integer NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at timestamptz NOT NULL,
    last_modified_by varchar(36) NOT NULL,
    last_modified_at timestamptz NOT NULL,
    sent_at timestamptz,
    expires_at timestamptz,
    CHECK (start_date < end_date)
);
CREATE INDEX IF NOT EXISTS ix_quotes_client_id ON quotes (client_id);
CREATE INDEX IF NOT EXISTS ix_quotes_agent_modified ON quotes (agent_id, last_modified_at, id);
CREATE INDEX IF NOT EXISTS ix_quotes_agency_modified ON quotes (agency_id, last_modified_at, id);
CREATE INDEX IF NOT EXISTS ix_quotes_status_expires_at ON quotes (status, expires_at);
CREATE TABLE IF NOT EXISTS quote_items (
    id varchar(36) PRIMARY KEY,
    quote_id varchar(36) NOT NULL REFERENCES quotes (id) ON DELETE CASCADE,
    position integer NOT NULL,
    type varchar(16) NOT NULL CHECK (type IN ('FLIGHT', 'HOTEL', 'ACTIVITY', 'TRANSFER',
        'OTHER')),
    description varchar(500) NOT NULL,
    quantity integer NOT NULL CHECK (quantity >= 1),
    unit_price numeric(18, 4) NOT NULL,
    line_total numeric(18, 4) NOT NULL,
    details json NOT NULL,
    UNIQUE (quote_id, position)
);
CREATE TABLE IF NOT EXISTS quote_revisions (
    id varchar(36) PRIMARY KEY,
    quote_id varchar(36) NOT NULL REFERENCES quotes (id) ON DELETE CASCADE,
    version integer NOT NULL,
    operation varchar(16) NOT NULL,
    status varchar(16) NOT NULL,
    actor_id varchar(36) NOT NULL,
    correlation_id varchar(128) NOT NULL,
    created_at timestamptz NOT NULL,
    snapshot json NOT NULL,
    UNIQUE (quote_id, version)
);
"""

_INSERT_QUOTE = """
INSERT INTO quotes (id, agency_id, agent_id, client_id, trip_name, destination, start_date,
    end_date, travelers, currency, markup_percent, discount, expires_in_days, notes, subtotal,
    markup_amount, total, status, version, created_at, last_modified_by, last_modified_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17,
    'DRAFT', 1, now(), $3, now())
"""

_UPDATE_QUOTE = """
UPDATE quotes SET trip_name = $3, destination = $4, start_date = $5, end_date = $6,
    travelers = $7, currency = $8, markup_percent = $9, discount = $10,
    expires_in_days = $11, notes = $12, subtotal = $13, markup_amount = $14, total = $15,
    last_modified_by = $16, last_modified_at = now(), version = version + 1
WHERE id = $1 AND version = $2 AND status = 'DRAFT'
RETURNING version
"""

_DELETE_ITEMS = "DELETE FROM quote_items WHERE quote_id = $1"

_INSERT_ITEMS = """
INSERT INTO quote_items (id, quote_id, position, type, description, quantity, unit_price,
    line_total, details)
SELECT i.id, $1, i.position, i.type, i.description, i.quantity, i.unit_price, i.line_total,
    i.details
FROM unnest($2::varchar[], $3::int[], $4::varchar[], $5::varchar[], $6::int[],
    $7::numeric[], $8::numeric[], $9::json[])
    AS i(id, position, type, description, quantity, unit_price, line_total, details)
"""

_INSERT_REVISION = """
INSERT INTO quote_revisions (id, quote_id, version, operation, status, actor_id,
    correlation_id, created_at, snapshot)
VALUES ($1, $2, $3, $4, 'DRAFT', $5, $6, now(), $7)
"""


@dataclass(slots=True, frozen=True)
class SaveArgs:
    """One save's values, already typed for asyncpg (dates as ``date``, amounts as strings)."""

    fields: tuple[Any, ...]  # trip_name .. total, in _UPDATE_QUOTE's $3..$15 order
    items: tuple[list[Any], ...]  # position, type, description, quantity, price, total, details
    snapshot: str


def args_from_body(body: dict[str, Any]) -> SaveArgs:
    """Turn a full quote body (camelCase, with ``pricing`` and item ``lineTotal``) into SaveArgs."""
    pricing = body["pricing"]
    items = body.get("items") or []
    fields = (
        body["tripName"],
        body["destination"],
        date.fromisoformat(body["startDate"]),
        date.fromisoformat(body["endDate"]),
        int(body["travelers"]),
        body["currency"],
        str(body.get("markupPercent", "0")),
        str(body.get("discount", "0")),
        int(body.get("expiresInDays", 14)),
        body.get("notes"),
        str(pricing["subtotal"]),
        str(pricing["markupAmount"]),
        str(pricing["total"]),
    )
    columns: tuple[list[Any], ...] = (
        list(range(len(items))),
        [item["type"] for item in items],
        [item["description"] for item in items],
        [int(item["quantity"]) for item in items],
        [str(item["unitPrice"]) for item in items],
        [str(item["lineTotal"]) for item in items],
        [orjson.dumps(item.get("details")).decode() for item in items],
    )
    return SaveArgs(fields=fields, items=columns, snapshot=orjson.dumps(body).decode())


async def _replace_items(conn: Any, quote_id: str, args: SaveArgs, *, delete: bool) -> None:
    if delete:
        await conn.execute(_DELETE_ITEMS, quote_id)
    if args.items[0]:
        ids = [str(uuid.uuid4()) for _ in args.items[0]]
        await conn.execute(_INSERT_ITEMS, quote_id, ids, *args.items)


async def create(
    conn: Any,
    *,
    quote_id: str,
    agency_id: str,
    agent_id: str,
    client_id: str,
    args: SaveArgs,
    correlation_id: str = "bench",
) -> int:
    """Insert a quote (version 1), its items and its first revision in one transaction."""
    async with conn.transaction():
        await conn.execute(_INSERT_QUOTE, quote_id, agency_id, agent_id, client_id, *args.fields)
        await _replace_items(conn, quote_id, args, delete=False)
        await conn.execute(
            _INSERT_REVISION,
            str(uuid.uuid4()),
            quote_id,
            1,
            "CREATE",
            agent_id,
            correlation_id,
            args.snapshot,
        )
    return 1


async def update(
    conn: Any,
    *,
    quote_id: str,
    expected_version: int,
    actor_id: str,
    args: SaveArgs,
    correlation_id: str = "bench",
) -> int | None:
    """Conditional update + item replacement + revision; None when the version is stale."""
    async with conn.transaction():
        version = await conn.fetchval(
            _UPDATE_QUOTE, quote_id, expected_version, *args.fields, actor_id
        )
        if version is None:
            return None
        await _replace_items(conn, quote_id, args, delete=True)
        await conn.execute(
            _INSERT_REVISION,
            str(uuid.uuid4()),
            quote_id,
            version,
            "UPDATE",
            actor_id,
            correlation_id,
            args.snapshot,
        )
    return int(version)


async def install_schema(conn: Any) -> None:
    """Create the bare tables (idempotent)."""
    await conn.execute(SCHEMA)
