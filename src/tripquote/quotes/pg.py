"""The PostgreSQL fast path of the save: the same reads and writes as the portable path in
``repository.py``, each as ONE statement: the load through SQLAlchemy (which opens the
transaction), the write on the asyncpg connection underneath it, inside that transaction.

A version-checked update is one round trip: ``UPDATE quotes … WHERE id = $1 AND version = $2``,
the item replacement and the revision insert are data-modifying CTEs that act only on the row
the UPDATE returned, so a stale version writes nothing at all. Statements run inside the
transaction the runner opened on the same connection; driver errors carry their SQLSTATE and
are mapped by ``db/errors.py`` like any other.
"""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from tripquote.agents.repository import Principal
from tripquote.quotes.jsonbody import dumps
from tripquote.quotes.repository import QuoteRecord, RevisionRecord

_PRINCIPAL = (
    "a.id AS _agent_id, a.agency_id AS _agent_agency_id, a.role AS _role, g.timezone AS _tz"
)

LOAD_FOR_WRITE = text("""
SELECT a.id AS _agent_id, a.agency_id AS _agent_agency_id, a.role AS _role,
       g.timezone AS _tz, q.*,
       (SELECT coalesce(json_agg(i ORDER BY i.position), '[]')::text
          FROM quote_items i WHERE i.quote_id = q.id) AS _items
  FROM agents a
  JOIN agencies g ON g.id = a.agency_id
  LEFT JOIN quotes q ON q.id = :quote_id
 WHERE a.id = :agent_id AND a.active
""")

LOAD_FOR_CREATE = text("""
SELECT a.id AS _agent_id, a.agency_id AS _agent_agency_id, a.role AS _role,
       g.timezone AS _tz, c.agent_id AS _client_agent_id, c.agency_id AS _client_agency_id
  FROM agents a
  JOIN agencies g ON g.id = a.agency_id
  LEFT JOIN clients c ON c.id = :client_id
 WHERE a.id = :agent_id AND a.active
   FOR UPDATE OF a
""")

CREATE = """
WITH open_quotes AS (
    SELECT count(*) AS n FROM quotes
     WHERE agent_id = $3 AND (status = 'DRAFT'
           OR (status = 'SENT' AND (expires_at IS NULL OR expires_at > $19)))
), q AS (
    INSERT INTO quotes (id, agency_id, agent_id, client_id, trip_name, destination, start_date,
                        end_date, travelers, currency, markup_percent, discount,
                        expires_in_days, notes, subtotal, markup_amount, total, status, version,
                        created_at, last_modified_by, last_modified_at)
    SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, 1,
           $19, $3, $19
     WHERE (SELECT n FROM open_quotes) < $20
    RETURNING id
), items AS (
    INSERT INTO quote_items (id, quote_id, position, type, description, quantity, unit_price,
                             line_total, details)
    SELECT x.id, q.id, x.position, x.type, x.description, x.quantity, x.unit_price,
           x.line_total, x.details
      FROM q, json_to_recordset($21::json) AS x(id text, position int, type text,
           description text, quantity int, unit_price numeric, line_total numeric, details json)
), revision AS (
    INSERT INTO quote_revisions (id, quote_id, version, operation, status, actor_id,
                                 correlation_id, created_at, snapshot)
    SELECT $22, q.id, 1, 'CREATE', $18, $3, $23, $19, $24::json FROM q
)
SELECT (SELECT id FROM q) AS id, (SELECT n FROM open_quotes) AS open_quotes
"""

UPDATE = """
WITH q AS (
    UPDATE quotes
       SET client_id = $3, trip_name = $4, destination = $5, start_date = $6, end_date = $7,
           travelers = $8, currency = $9, markup_percent = $10, discount = $11,
           expires_in_days = $12, notes = $13, subtotal = $14, markup_amount = $15, total = $16,
           status = $17, last_modified_by = $18, last_modified_at = $19, sent_at = $20,
           expires_at = $21, version = version + 1
     WHERE id = $1 AND version = $2
    RETURNING id, version
), dropped AS (
    DELETE FROM quote_items WHERE quote_id = (SELECT id FROM q) AND position >= $22
), items AS (
    INSERT INTO quote_items (id, quote_id, position, type, description, quantity, unit_price,
                             line_total, details)
    SELECT x.id, q.id, x.position, x.type, x.description, x.quantity, x.unit_price,
           x.line_total, x.details
      FROM q, json_to_recordset($23::json) AS x(id text, position int, type text,
           description text, quantity int, unit_price numeric, line_total numeric, details json)
    ON CONFLICT (quote_id, position) DO UPDATE
       SET type = EXCLUDED.type, description = EXCLUDED.description,
           quantity = EXCLUDED.quantity, unit_price = EXCLUDED.unit_price,
           line_total = EXCLUDED.line_total, details = EXCLUDED.details
), revision AS (
    INSERT INTO quote_revisions (id, quote_id, version, operation, status, actor_id,
                                 correlation_id, created_at, snapshot)
    SELECT $24, q.id, q.version, $25, $17, $18, $26, $19, $27::json FROM q
)
SELECT version FROM q
"""


async def _driver(conn: AsyncConnection) -> Any:
    """The asyncpg connection under ``conn``, which must already be inside its transaction:
    SQLAlchemy sends BEGIN lazily with its first statement, so the unit's first statement
    (a load) always goes through SQLAlchemy and the raw writes that follow join it."""
    driver = (await conn.get_raw_connection()).driver_connection
    if driver is None or not driver.is_in_transaction():
        raise RuntimeError("the PostgreSQL fast path needs an open transaction")
    return driver


def _principal(row: Any) -> Principal:
    return Principal(
        agent_id=row["_agent_id"],
        agency_id=row["_agent_agency_id"],
        role=row["_role"],
        timezone=row["_tz"],
    )


def _items_json(items: list[dict[str, Any]]) -> str:
    return dumps(
        [
            {
                "id": str(uuid.uuid4()),
                "position": position,
                "type": item["type"],
                "description": item["description"],
                "quantity": item["quantity"],
                "unit_price": item["unit_price"],
                "line_total": item["line_total"],
                "details": item["details"],
            }
            for position, item in enumerate(items)
        ]
    ).decode()


async def load_for_write(
    conn: AsyncConnection, agent_id: str, quote_id: str
) -> tuple[Principal | None, QuoteRecord | None]:
    """The active agent and the quote with its items, in one statement."""
    found = await conn.execute(LOAD_FOR_WRITE, {"agent_id": agent_id, "quote_id": quote_id})
    row = found.mappings().first()
    if row is None:
        return None, None
    principal = _principal(row)
    if row["id"] is None:
        return principal, None
    quote = {k: v for k, v in row.items() if not k.startswith("_")}
    items = tuple(json.loads(row["_items"], parse_float=Decimal))
    for item in items:  # json_agg renders numerics as JSON numbers: exact via parse_float
        item["unit_price"] = Decimal(item["unit_price"])
        item["line_total"] = Decimal(item["line_total"])
    return principal, QuoteRecord(row=quote, items=items)  # type: ignore[arg-type]


async def load_for_create(
    conn: AsyncConnection, agent_id: str, client_id: str
) -> tuple[Principal | None, dict[str, str] | None]:
    """The active agent, locked (``FOR UPDATE``) so its quota check is serialized, and the
    owner of ``client_id`` (None if no such client)."""
    found = await conn.execute(LOAD_FOR_CREATE, {"agent_id": agent_id, "client_id": client_id})
    row = found.mappings().first()
    if row is None:
        return None, None
    owner = (
        {"agent_id": row["_client_agent_id"], "agency_id": row["_client_agency_id"]}
        if row["_client_agent_id"] is not None
        else None
    )
    return _principal(row), owner


async def insert_quote(
    conn: AsyncConnection,
    *,
    values: dict[str, Any],
    items: list[dict[str, Any]],
    revision: RevisionRecord,
    open_limit: int,
) -> int | None:
    """Insert quote, items and first revision unless the owner has ``open_limit`` open quotes;
    None on success, else the owner's open-quote count (nothing written)."""
    v = values
    row = await (await _driver(conn)).fetchrow(
        CREATE,
        v["id"], v["agency_id"], v["agent_id"], v["client_id"], v["trip_name"],
        v["destination"], v["start_date"], v["end_date"], v["travelers"], v["currency"],
        v["markup_percent"], v["discount"], v["expires_in_days"], v["notes"], v["subtotal"],
        v["markup_amount"], v["total"], v["status"], v["created_at"], open_limit,
        _items_json(items), str(uuid.uuid4()), revision.correlation_id,
        dumps(revision.snapshot).decode(),
    )  # fmt: skip
    return None if row["id"] is not None else int(row["open_quotes"])


async def update_quote(
    conn: AsyncConnection,
    *,
    quote_id: str,
    expected_version: int,
    values: dict[str, Any],
    items: list[dict[str, Any]],
    revision: RevisionRecord,
) -> int | None:
    """The version-checked update, item replacement and revision in one statement; the new
    version, or None when ``expected_version`` is stale (nothing written)."""
    v = values
    new_version = await (await _driver(conn)).fetchval(
        UPDATE,
        quote_id, expected_version, v["client_id"], v["trip_name"], v["destination"],
        v["start_date"], v["end_date"], v["travelers"], v["currency"], v["markup_percent"],
        v["discount"], v["expires_in_days"], v["notes"], v["subtotal"], v["markup_amount"],
        v["total"], v["status"], v["last_modified_by"], v["last_modified_at"], v["sent_at"],
        v["expires_at"], len(items), _items_json(items), str(uuid.uuid4()),
        revision.operation, revision.correlation_id, dumps(revision.snapshot).decode(),
    )  # fmt: skip
    return int(new_version) if new_version is not None else None
