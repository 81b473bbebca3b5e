"""The PostgreSQL form of the save's reads and writes, run on the asyncpg connection of a
``DriverTx`` (``db/transaction.py``): the same results as the portable SQLAlchemy Core path in
``repository.py``, each as ONE hand-written statement.

A version-checked update is one round trip: ``UPDATE quotes … WHERE id = $1 AND version = $2``,
the item replacement and the revision insert are data-modifying CTEs that act only on the row
the UPDATE returned, so a stale version writes nothing at all. Driver errors carry their
SQLSTATE and are mapped by ``db/errors.py`` like any other.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg

from tripquote.agents.repository import Principal
from tripquote.db.transaction import DriverTx
from tripquote.json import dumps
from tripquote.quotes.repository import QuoteRecord, RevisionRecord

LOAD_FOR_WRITE = """
SELECT a.id AS _agent_id, a.agency_id AS _agent_agency_id, a.role AS _role,
       g.timezone AS _tz, q.*,
       (SELECT coalesce(json_agg(i ORDER BY i.position), '[]')::text
          FROM quote_items i WHERE i.quote_id = q.id) AS _items
  FROM agents a
  JOIN agencies g ON g.id = a.agency_id
  LEFT JOIN quotes q ON q.id = $2
 WHERE a.id = $1 AND a.active
"""

LOAD_QUOTE = """
SELECT q.*,
       (SELECT coalesce(json_agg(i ORDER BY i.position), '[]')::text
          FROM quote_items i WHERE i.quote_id = q.id) AS _items
  FROM quotes q
 WHERE q.id = $1
"""

REVISION_SNAPSHOT = (
    "SELECT snapshot::text FROM quote_revisions WHERE quote_id = $1 AND version = $2"
)

LOAD_FOR_CREATE = """
SELECT a.id AS _agent_id, a.agency_id AS _agent_agency_id, a.role AS _role,
       g.timezone AS _tz, c.agent_id AS _client_agent_id, c.agency_id AS _client_agency_id
  FROM agents a
  JOIN agencies g ON g.id = a.agency_id
  LEFT JOIN clients c ON c.id = $2
 WHERE a.id = $1 AND a.active
"""

CLIENT_OWNER = "SELECT agent_id, agency_id FROM clients WHERE id = $1"

LOCK_AGENT = "SELECT open_quote_bound, active FROM agents WHERE id = $1 FOR UPDATE"

SET_OPEN_QUOTE_BOUND = "UPDATE agents SET open_quote_bound = $2 WHERE id = $1"

COUNT_OPEN = """
SELECT count(*) FROM quotes
 WHERE agent_id = $1 AND (status = 'DRAFT'
       OR (status = 'SENT' AND (expires_at IS NULL OR expires_at > $2)))
"""

COMPLETE_IDEMPOTENCY = """
UPDATE idempotency_keys
   SET state = 'done', response_status = $3, response_body = $4, response_headers = $5::json
 WHERE agent_id = $1 AND key = $2
"""

CREATE = """
WITH bound AS (
    -- $24 true: agent, client and quota were checked under the agent's row lock; the bound
    -- becomes $19. $24 false (one statement, nothing checked yet, no lock held): only an
    -- active agent below the limit $19, creating for a client it may use (its own; an admin:
    -- its agency's), raises its bound by one. The UPDATE re-reads a row changed concurrently,
    -- so check and raise are atomic. No row: nothing below is written.
    UPDATE agents a
       SET open_quote_bound = CASE WHEN $24 THEN $19 ELSE a.open_quote_bound + 1 END
     WHERE a.id = $2 AND ($24 OR (a.active AND a.open_quote_bound < $19 AND EXISTS (
           SELECT 1 FROM clients c
            WHERE c.id = $3 AND c.agency_id = a.agency_id
              AND (c.agent_id = a.id OR a.role = 'admin'))))
    RETURNING a.agency_id
), q AS (
    INSERT INTO quotes (id, agency_id, agent_id, client_id, trip_name, destination, start_date,
                        end_date, travelers, currency, markup_percent, discount,
                        expires_in_days, notes, subtotal, markup_amount, total, status, version,
                        created_at, last_modified_by, last_modified_at)
    SELECT $1, bound.agency_id, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
           $16, $17, 1, $18, $2, $18
      FROM bound
    RETURNING id
), items AS (
    INSERT INTO quote_items (id, quote_id, position, type, description, quantity, unit_price,
                             line_total, details)
    SELECT gen_random_uuid()::text, q.id, x.position, x.type, x.description, x.quantity,
           x.unit_price, x.line_total, x.details
      FROM q, json_to_recordset($20::json) AS x(position int, type text,
           description text, quantity int, unit_price numeric, line_total numeric, details json)
), revision AS (
    INSERT INTO quote_revisions (id, quote_id, version, operation, status, actor_id,
                                 correlation_id, created_at, snapshot)
    SELECT $21, q.id, 1, 'CREATE', $17, $2, $22, $18, $23::json FROM q
)
SELECT id FROM q
"""


def _replace_items(count: str, items: str) -> str:
    """The CTEs that give the quote ``q`` the items of the JSON array ``items``: positions from
    ``count`` on go, the others are upserted by position (the row and its indexes stay)."""
    return f"""dropped AS (
    DELETE FROM quote_items WHERE quote_id = (SELECT id FROM q) AND position >= {count}
), items AS (
    INSERT INTO quote_items (id, quote_id, position, type, description, quantity, unit_price,
                             line_total, details)
    SELECT gen_random_uuid()::text, q.id, x.position, x.type, x.description, x.quantity,
           x.unit_price, x.line_total, x.details
      FROM q, json_to_recordset({items}::json) AS x(position int, type text,
           description text, quantity int, unit_price numeric, line_total numeric, details json)
    ON CONFLICT (quote_id, position) DO UPDATE
       SET type = EXCLUDED.type, description = EXCLUDED.description,
           quantity = EXCLUDED.quantity, unit_price = EXCLUDED.unit_price,
           line_total = EXCLUDED.line_total, details = EXCLUDED.details
)"""  # noqa: S608 (constant SQL composed at import; every value is a bind parameter)


UPDATE = f"""
WITH q AS (
    UPDATE quotes
       SET client_id = $3, trip_name = $4, destination = $5, start_date = $6, end_date = $7,
           travelers = $8, currency = $9, markup_percent = $10, discount = $11,
           expires_in_days = $12, notes = $13, subtotal = $14, markup_amount = $15, total = $16,
           status = $17, last_modified_by = $18, last_modified_at = $19, sent_at = $20,
           expires_at = $21, version = version + 1
     WHERE id = $1 AND version = $2
    RETURNING id, version
), {_replace_items("$22", "$23")}, revision AS (
    INSERT INTO quote_revisions (id, quote_id, version, operation, status, actor_id,
                                 correlation_id, created_at, snapshot)
    SELECT $24, q.id, q.version, $25, $17, $18, $26, $19, $27::json FROM q
)
SELECT version FROM q
"""  # noqa: S608 (constant SQL composed at import; every value is a bind parameter)

UPDATE_OWN_DRAFT = f"""
WITH q AS (
    -- The caller's own DRAFT at version $2, only if the caller is active in the quote's agency,
    -- the client is unchanged ($3, or NULL: not sent) and something changes. Any other case
    -- (another agent's quote, a REJECTED quote reopened, a new client, a stale version,
    -- nothing to save) writes nothing: the unit's step-by-step path then tells which.
    UPDATE quotes q
       SET trip_name = $4, destination = $5, start_date = $6, end_date = $7, travelers = $8,
           currency = $9, markup_percent = $10, discount = $11, expires_in_days = $12,
           notes = $13, subtotal = $14, markup_amount = $15, total = $16,
           last_modified_by = $17, last_modified_at = $18, version = q.version + 1
     WHERE q.id = $1 AND q.version = $2
       -- Never an index condition: the primary key must find the row, not (agent, status).
       AND (q.agent_id, q.status, q.sent_at, q.expires_at)
           IS NOT DISTINCT FROM ($17, 'DRAFT', NULL, NULL)
       AND ($3::varchar IS NULL OR q.client_id = $3)
       AND EXISTS (SELECT 1 FROM agents a
                    WHERE a.id = $17 AND a.active AND a.agency_id = q.agency_id)
       AND ((q.trip_name, q.destination, q.start_date, q.end_date, q.travelers, q.currency,
             q.markup_percent, q.discount, q.expires_in_days, q.notes)
            IS DISTINCT FROM ($4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
            OR EXISTS (
                SELECT 1
                  FROM (SELECT * FROM quote_items WHERE quote_id = $1) i
                  FULL JOIN json_to_recordset($20::json) AS x(position int, type text,
                       description text, quantity int, unit_price numeric, details json)
                       USING (position)
                 WHERE (i.type, i.description, i.quantity, i.unit_price, i.details::jsonb)
                       IS DISTINCT FROM
                       (x.type, x.description, x.quantity, x.unit_price, x.details::jsonb)))
    RETURNING q.id, q.version, q.client_id, q.created_at
), {_replace_items("$19", "$20")}, revision AS (
    -- The snapshot is the API form with the two values only the row knows spliced in:
    -- clientId and createdAt (ISO 8601 UTC, milliseconds truncated, as serialize.fmt_instant).
    INSERT INTO quote_revisions (id, quote_id, version, operation, status, actor_id,
                                 correlation_id, created_at, snapshot)
    SELECT $21, q.id, q.version, 'UPDATE', 'DRAFT', $17, $22, $18,
           ($23 || to_json(q.client_id)::text || $24
               || to_json(to_char(q.created_at AT TIME ZONE 'UTC',
                                  'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'))::text
               || $25)::json
      FROM q
)
SELECT client_id, created_at FROM q
"""  # noqa: S608 (constant SQL composed at import; every value is a bind parameter)


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


def _record(row: Any) -> QuoteRecord:
    quote = {k: v for k, v in row.items() if not k.startswith("_")}
    items = tuple(json.loads(row["_items"], parse_float=Decimal))
    for item in items:  # json_agg renders numerics as JSON numbers: exact via parse_float
        item["unit_price"] = Decimal(item["unit_price"])
        item["line_total"] = Decimal(item["line_total"])
    return QuoteRecord(row=quote, items=items)  # type: ignore[arg-type]


async def load_for_write(
    tx: DriverTx, agent_id: str, quote_id: str
) -> tuple[Principal | None, QuoteRecord | None]:
    """The active agent and the quote with its items, in one statement."""
    row = await tx.driver.fetchrow(LOAD_FOR_WRITE, agent_id, quote_id)
    if row is None:
        return None, None
    return _principal(row), (_record(row) if row["id"] is not None else None)


async def load_quote(tx: DriverTx, quote_id: str) -> QuoteRecord | None:
    """The quote with its items, or None (``repository.get_quote``)."""
    row = await tx.driver.fetchrow(LOAD_QUOTE, quote_id)
    return _record(row) if row is not None else None


async def revision_snapshot(tx: DriverTx, quote_id: str, version: int) -> dict[str, Any] | None:
    """The snapshot of version ``version``, or None (``repository.get_revision_snapshot``)."""
    text = await tx.driver.fetchval(REVISION_SNAPSHOT, quote_id, version)
    snapshot = json.loads(text, parse_float=Decimal) if text is not None else None
    return snapshot if isinstance(snapshot, dict) else None


async def load_for_create(
    tx: DriverTx, agent_id: str, client_id: str
) -> tuple[Principal | None, dict[str, str] | None, int]:
    """The active agent, the owner of ``client_id`` (None if no such client) and, in a
    transaction, the agent's ``open_quote_bound`` read under its row lock (``FOR UPDATE``), so
    the quota check is serialized; an agent disabled by then is None too. One statement at a
    time the bound is not read (0): there ``insert_quote`` checks agent, client and bound
    itself, and this load only says why it wrote nothing."""
    row = await tx.driver.fetchrow(LOAD_FOR_CREATE, agent_id, client_id)
    if row is None:
        return None, None, 0
    owner = (
        {"agent_id": row["_client_agent_id"], "agency_id": row["_client_agency_id"]}
        if row["_client_agent_id"] is not None
        else None
    )
    if not tx.in_transaction:
        return _principal(row), owner, 0
    bound, active = await lock_agent(tx, agent_id)
    if not active:  # disabled while this request waited for the lock
        return None, None, 0
    return _principal(row), owner, bound


async def client_owner(tx: DriverTx, client_id: str) -> dict[str, str] | None:
    """``{agent_id, agency_id}`` of the client, or None (``repository.client_owner``)."""
    row = await tx.driver.fetchrow(CLIENT_OWNER, client_id)
    return dict(row) if row is not None else None


async def lock_agent(tx: DriverTx, agent_id: str) -> tuple[int, bool]:
    """Lock the agent's row (serializing its quota checks); its ``open_quote_bound`` and
    whether it is active, as of the lock ((0, False) if there is no such agent)."""
    row = await tx.driver.fetchrow(LOCK_AGENT, agent_id)
    return (int(row[0]), bool(row[1])) if row is not None else (0, False)


async def count_open_quotes(tx: DriverTx, agent_id: str, now: datetime) -> int:
    """DRAFT plus unexpired SENT quotes owned by ``agent_id`` (``repository`` twin)."""
    return int(await tx.driver.fetchval(COUNT_OPEN, agent_id, now))


async def set_open_quote_bound(tx: DriverTx, agent_id: str, bound: int) -> None:
    """Store the agent's new ``open_quote_bound`` (its row is locked)."""
    await tx.driver.execute(SET_OPEN_QUOTE_BOUND, agent_id, bound)


async def complete_idempotency(
    tx: DriverTx, *, agent_id: str, key: str, status: int, body: bytes, headers: dict[str, str]
) -> None:
    """Store the response of an idempotent request in the change's transaction."""
    await tx.driver.execute(
        COMPLETE_IDEMPOTENCY, agent_id, key, status, body.decode(), dumps(headers).decode()
    )


async def insert_quote(
    tx: DriverTx,
    *,
    values: dict[str, Any],
    items: list[dict[str, Any]],
    revision: RevisionRecord,
    open_quote_bound: int | None,
    open_limit: int,
) -> bool:
    """Insert quote, items and first revision and update the owner's ``open_quote_bound``, in
    one statement; the quote's agency is its agent's. ``open_quote_bound`` given (agent,
    client and quota checked under the agent's lock): it is stored. None (one statement,
    nothing checked): written only if the agent is active and below ``open_limit`` and may use
    the client; the bound is then raised by one. False when nothing was written (then run the
    checks, which say why, or the locked path)."""
    v = values
    checked = open_quote_bound is not None
    tx.committing()
    inserted = await tx.driver.fetchval(
        CREATE,
        v["id"], v["agent_id"], v["client_id"], v["trip_name"], v["destination"],
        v["start_date"], v["end_date"], v["travelers"], v["currency"], v["markup_percent"],
        v["discount"], v["expires_in_days"], v["notes"], v["subtotal"], v["markup_amount"],
        v["total"], v["status"], v["created_at"],
        open_quote_bound if checked else open_limit,
        _items_json(items), str(uuid.uuid4()), revision.correlation_id,
        dumps(revision.snapshot).decode(), checked,
    )  # fmt: skip
    if inserted is None:
        tx.wrote_nothing()
        return False
    tx.committed()
    return True


async def update_quote(
    tx: DriverTx,
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
    tx.committing()
    new_version = await tx.driver.fetchval(
        UPDATE,
        quote_id, expected_version, v["client_id"], v["trip_name"], v["destination"],
        v["start_date"], v["end_date"], v["travelers"], v["currency"], v["markup_percent"],
        v["discount"], v["expires_in_days"], v["notes"], v["subtotal"], v["markup_amount"],
        v["total"], v["status"], v["last_modified_by"], v["last_modified_at"], v["sent_at"],
        v["expires_at"], len(items), _items_json(items), str(uuid.uuid4()),
        revision.operation, revision.correlation_id, dumps(revision.snapshot).decode(),
    )  # fmt: skip
    if new_version is None:
        tx.wrote_nothing()
        return None
    tx.committed()
    return int(new_version)


_CLIENT_KEY = '"clientId":'
_CREATED_KEY = '"createdAt":'


def snapshot_parts(snapshot: dict[str, Any]) -> tuple[str, str, str]:
    """The snapshot's JSON text cut around its ``clientId`` and ``createdAt`` values, both
    null: the first ``"clientId":`` (the third top-level key, after two ids) and the last
    ``"createdAt":`` (only ids, instants and nulls follow it, never an item's details)."""
    text = dumps(snapshot).decode()
    client = text.index(_CLIENT_KEY + "null") + len(_CLIENT_KEY)
    created = text.rindex(_CREATED_KEY + "null") + len(_CREATED_KEY)
    return text[:client], text[client + 4 : created], text[created + 4 :]


async def update_own_draft(
    tx: DriverTx,
    *,
    quote_id: str,
    expected_version: int,
    agent_id: str,
    client_id: str | None,
    values: dict[str, Any],
    items: list[dict[str, Any]],
    snapshot: dict[str, Any],
    correlation_id: str,
) -> tuple[str, datetime] | None:
    """Save ``values`` and ``items`` over the caller's own DRAFT at ``expected_version`` in one
    statement that also checks the caller (active, the quote's agency), the client (unchanged:
    ``client_id`` or None) and that something changes; ``(client_id, created_at)`` of the
    saved quote, or None when it wrote nothing. ``snapshot`` is the revision's API form with
    ``clientId`` and ``createdAt`` None: the statement fills them from the row."""
    v = values
    head, middle, tail = snapshot_parts(snapshot)
    tx.committing()
    try:
        row = await tx.driver.fetchrow(
            UPDATE_OWN_DRAFT,
            quote_id, expected_version, client_id, v["trip_name"], v["destination"],
            v["start_date"], v["end_date"], v["travelers"], v["currency"], v["markup_percent"],
            v["discount"], v["expires_in_days"], v["notes"], v["subtotal"], v["markup_amount"],
            v["total"], agent_id, v["last_modified_at"], len(items), _items_json(items),
            str(uuid.uuid4()), correlation_id, head, middle, tail,
        )  # fmt: skip
    except asyncpg.UntranslatableCharacterError:
        # A stored item's details hold \u0000 (written around the API, which refuses NUL): as
        # json it is kept, as jsonb (the comparison) it cannot be. The statement wrote nothing;
        # the step-by-step path, which compares in Python, makes the save.
        row = None
    if row is None:
        tx.wrote_nothing()
        return None
    tx.committed()
    return row["client_id"], row["created_at"]


WARM_UP_LOCK_TIMEOUT_MS = 100
"""How long start-up waits for a table lock while preparing (a ``VACUUM FULL`` or an index
build may hold one): past it that statement is prepared on its first use instead."""


async def prepare_save_statements(driver: Any) -> None:
    """Run the save path's statements once as no-ops (ids that match nothing) on one asyncpg
    connection, so they are prepared there (asyncpg's statement cache, PostgreSQL's generic
    plan) before the first save needs them. Each runs in its own transaction, rolled back,
    with a short lock and statement timeout: a locked table costs start-up at most that."""
    when, day, zero = datetime.now(UTC), date(2000, 1, 1), Decimal(0)
    quote = ("", "", "", day, day, 1, "", zero, zero, 1, None, zero, zero, zero)
    statements: tuple[tuple[str, tuple[Any, ...]], ...] = (
        (LOAD_FOR_WRITE, ("", "")),
        (LOAD_FOR_CREATE, ("", "")),
        (CREATE, ("", "", *quote, "DRAFT", when, 0, "[]", "", "", "{}", False)),
        (UPDATE, ("", 1, *quote, "DRAFT", "", when, None, None, 0, "[]", "", "UPDATE", "", "{}")),
        (UPDATE_OWN_DRAFT, ("", 1, None, *quote[1:], "", when, 0, "[]", "", "", "{", "", "}")),
    )
    for statement, args in statements:
        transaction = driver.transaction()
        await transaction.start()
        try:
            await driver.execute(
                f"SET LOCAL lock_timeout = {WARM_UP_LOCK_TIMEOUT_MS};"
                f" SET LOCAL statement_timeout = {10 * WARM_UP_LOCK_TIMEOUT_MS}"
            )
            await driver.fetch(statement, *args)
        except asyncpg.PostgresError:
            pass  # e.g. a lock not granted in time, or not migrated yet: prepared on first use
        finally:
            await transaction.rollback()
