"""The save path's reads and writes on the unit's connection: PostgreSQL's one-statement form
(``pg.py``) on a ``DriverTx``, the portable SQLAlchemy Core sequence (``repository.py``) on an
``AsyncConnection`` (SQLite). Both give the same result; the suite runs every save test on both
databases."""

from __future__ import annotations

from typing import Any

from tripquote.agents.repository import Principal, load_principal
from tripquote.db.transaction import DriverTx, UnitConnection
from tripquote.quotes import pg
from tripquote.quotes import repository as repo
from tripquote.quotes.repository import QuoteRecord, RevisionRecord


def require_transaction(conn: UnitConnection) -> None:
    """TransactionRequired when the unit runs statement by statement (see ``DriverTx``)."""
    if isinstance(conn, DriverTx):
        conn.require_transaction()


async def load_for_write(
    conn: UnitConnection, agent_id: str, quote_id: str
) -> tuple[Principal | None, QuoteRecord | None]:
    """The caller (None if missing or disabled) and the quote with its items (None if none)."""
    if isinstance(conn, DriverTx):
        return await pg.load_for_write(conn, agent_id, quote_id)
    principal = await load_principal(conn, agent_id)
    if principal is None:
        return None, None
    return principal, await repo.get_quote(conn, quote_id)


async def load_for_create(
    conn: UnitConnection, agent_id: str, client_id: str
) -> tuple[Principal | None, Any]:
    """The caller, locked for its quota check, and the client's ``{agent_id, agency_id}``."""
    if isinstance(conn, DriverTx):
        return await pg.load_for_create(conn, agent_id, client_id)
    principal = await load_principal(conn, agent_id)
    if principal is None:
        return None, None
    await repo.lock_agent(conn, agent_id)
    return principal, await repo.client_owner(conn, client_id)


async def insert_quote(
    conn: UnitConnection,
    *,
    values: dict[str, Any],
    items: list[dict[str, Any]],
    revision: RevisionRecord,
    open_limit: int,
) -> int | None:
    """Insert quote, items and revision unless the owner already has ``open_limit`` open
    quotes; None when written, else the owner's open-quote count (nothing written)."""
    if isinstance(conn, DriverTx):
        return await pg.insert_quote(
            conn, values=values, items=items, revision=revision, open_limit=open_limit
        )
    current = await repo.count_open_quotes(conn, values["agent_id"], values["created_at"])
    if current >= open_limit:
        return current
    await repo.insert_quote(conn, values=values, items=items)
    await repo.insert_revision(conn, revision)
    return None


async def update_quote(
    conn: UnitConnection,
    *,
    quote_id: str,
    expected_version: int,
    values: dict[str, Any],
    items: list[dict[str, Any]],
    revision: RevisionRecord,
) -> int | None:
    """Version-checked update of every column in ``values``, item replacement and revision;
    the new version, or None when ``expected_version`` is stale (nothing written)."""
    if isinstance(conn, DriverTx):
        return await pg.update_quote(
            conn,
            quote_id=quote_id,
            expected_version=expected_version,
            values=values,
            items=items,
            revision=revision,
        )
    new_version = await repo.update_quote_if_version(
        conn, quote_id=quote_id, expected_version=expected_version, values=values
    )
    if new_version is None:
        return None
    await repo.replace_items(conn, quote_id, items)
    await repo.insert_revision(conn, revision)
    return new_version
