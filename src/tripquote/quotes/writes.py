"""The save path's reads and writes on the unit's connection: PostgreSQL's one-statement form
(``pg.py``) on a ``DriverTx``, the portable SQLAlchemy Core sequence (``repository.py``) on an
``AsyncConnection`` (SQLite). Both give the same result; the suite runs every save test on both
databases."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from tripquote.agents.repository import Principal, load_principal
from tripquote.db.transaction import DriverTx, UnitConnection
from tripquote.quotes import pg
from tripquote.quotes import repository as repo
from tripquote.quotes.repository import QuoteRecord, RevisionRecord


async def get_quote(conn: UnitConnection, quote_id: str) -> QuoteRecord | None:
    """The quote with its items, or None."""
    if isinstance(conn, DriverTx):
        return await pg.load_quote(conn, quote_id)
    return await repo.get_quote(conn, quote_id)


async def revision_snapshot(conn: UnitConnection, quote_id: str, version: int) -> Any:
    """The snapshot of version ``version`` of the quote (a dict), or None."""
    if isinstance(conn, DriverTx):
        return await pg.revision_snapshot(conn, quote_id, version)
    return await repo.get_revision_snapshot(conn, quote_id, version)


async def client_owner(conn: UnitConnection, client_id: str) -> Any:
    """``{agent_id, agency_id}`` of the client, or None."""
    if isinstance(conn, DriverTx):
        return await pg.client_owner(conn, client_id)
    return await repo.client_owner(conn, client_id)


def in_transaction(conn: UnitConnection) -> bool:
    """False only on a one-statement ``DriverTx`` (each statement commits by itself)."""
    return not isinstance(conn, DriverTx) or conn.in_transaction


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
) -> tuple[Principal | None, Any, int]:
    """The caller (None if missing or disabled, the latter checked again once locked for its
    quota check), the client's ``{agent_id, agency_id}`` and the caller's
    ``open_quote_bound``."""
    if isinstance(conn, DriverTx):
        return await pg.load_for_create(conn, agent_id, client_id)
    principal = await load_principal(conn, agent_id)
    if principal is None:
        return None, None, 0
    bound, active = await repo.lock_agent(conn, agent_id)
    if not active:
        return None, None, 0
    return principal, await repo.client_owner(conn, client_id), bound


async def lock_agent(conn: UnitConnection, agent_id: str) -> tuple[int, bool]:
    """Lock the agent's row (its quota checks serialize there); its ``open_quote_bound`` and
    whether it is active, as of the lock."""
    if isinstance(conn, DriverTx):
        return await pg.lock_agent(conn, agent_id)
    return await repo.lock_agent(conn, agent_id)


async def count_open_quotes(conn: UnitConnection, agent_id: str, now: datetime) -> int:
    """DRAFT plus unexpired SENT quotes owned by ``agent_id``, exactly."""
    if isinstance(conn, DriverTx):
        return await pg.count_open_quotes(conn, agent_id, now)
    return await repo.count_open_quotes(conn, agent_id, now)


async def set_open_quote_bound(conn: UnitConnection, agent_id: str, bound: int) -> None:
    """Store the agent's new ``open_quote_bound`` (its row is locked)."""
    if isinstance(conn, DriverTx):
        await pg.set_open_quote_bound(conn, agent_id, bound)
    else:
        await repo.set_open_quote_bound(conn, agent_id, bound)


async def insert_quote(
    conn: UnitConnection,
    *,
    values: dict[str, Any],
    items: list[dict[str, Any]],
    revision: RevisionRecord,
    open_quote_bound: int | None,
    open_limit: int,
) -> bool:
    """Insert quote, items and revision, and store the owner's new ``open_quote_bound``
    (agent, client and quota checked under the agent's lock). On a one-statement ``DriverTx``
    pass None: the statement checks the agent, the client and the bound (below
    ``open_limit``) itself and raises the bound by one; False when it wrote nothing."""
    if isinstance(conn, DriverTx):
        return await pg.insert_quote(
            conn,
            values=values,
            items=items,
            revision=revision,
            open_quote_bound=open_quote_bound,
            open_limit=open_limit,
        )
    assert open_quote_bound is not None, "the portable path checks the quota first"
    await repo.insert_quote(conn, values=values, items=items)
    await repo.insert_revision(conn, revision)
    await repo.set_open_quote_bound(conn, values["agent_id"], open_quote_bound)
    return True


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
