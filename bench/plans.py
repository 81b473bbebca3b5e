"""The statements a request runs, captured as the service binds them, and their plans.

``capture`` records every statement the service sends while it runs in this process: the
store's own (asyncpg ``fetch``: its query logger) and SQLAlchemy Core's (its
``before_cursor_execute`` event), each with its bound arguments. ``plan`` shows the plan
PostgreSQL makes for one of them as a prepared statement, as the service runs it, custom
(``plan_cache_mode = force_custom_plan``: the first five executions of a statement) or
generic (``force_generic_plan``: what a prepared statement may switch to after them), without
running it; ``analyzed`` runs it (rolled back) for ``EXPLAIN (ANALYZE, BUFFERS)``'s figures.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Engine

_DML = ("SELECT", "WITH", "INSERT", "UPDATE", "DELETE")


@dataclass(frozen=True, slots=True)
class Captured:
    """One statement as sent: its text (``$n`` parameters) and its arguments."""

    text: str
    args: tuple[Any, ...]


@contextlib.contextmanager
def capture() -> Iterator[list[Captured]]:
    """Record every query (SELECT/WITH/INSERT/UPDATE/DELETE) of every engine connected in
    this process meanwhile; connections opened before it are not seen."""
    seen: list[Captured] = []
    active = [True]

    def keep(text: str, args: Any) -> None:
        if active[0] and text.lstrip().upper().startswith(_DML):
            seen.append(Captured(text, tuple(args or ())))

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(lambda r: keep(r.query, r.args))

    def before(_conn: Any, _cursor: Any, text: str, args: Any, _ctx: Any, many: bool) -> None:
        if not many:
            keep(text, args)

    event.listen(Engine, "connect", on_connect)
    event.listen(Engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        active[0] = False
        event.remove(Engine, "connect", on_connect)
        event.remove(Engine, "before_cursor_execute", before)


async def plan(conn: Any, statement: Captured, *, generic: bool, before: str = "") -> Any:
    """The plan (JSON: its ``Plan`` object) PostgreSQL makes for ``statement`` prepared and
    executed with its arguments, custom or generic, without running it: each argument becomes
    a literal of the parameter's type (its text from the server), then ``EXPLAIN EXECUTE``;
    ``before``: SQL run first in the same transaction (what the service runs before it)."""
    parameters = (await conn.prepare(statement.text)).get_parameters()
    types = [_type_name(t) for t in parameters]
    literals = [
        f"{await conn.fetchval(f'SELECT quote_nullable($1::{t}::text)', arg)}::{t}"
        for t, arg in zip(types, statement.args, strict=True)
    ]
    name = "tripquote_plan"
    transaction = conn.transaction()
    await transaction.start()
    try:
        if before:
            await conn.execute(before)
        signature = f"({', '.join(types)})" if types else ""
        await conn.execute(f"PREPARE {name} {signature} AS {statement.text}")
        try:
            await conn.execute(f"SET LOCAL plan_cache_mode = {_mode(generic)}")
            shown = await conn.fetchval(
                f"EXPLAIN (FORMAT JSON) EXECUTE {name}"
                + (f"({', '.join(literals)})" if literals else "")
            )
        finally:
            await conn.execute(f"DEALLOCATE {name}")
    finally:
        await transaction.rollback()
    return orjson.loads(shown)[0]["Plan"]


def _type_name(t: Any) -> str:
    return t.name if t.schema == "pg_catalog" else f'"{t.schema}"."{t.name}"'


def _mode(generic: bool) -> str:
    return "force_generic_plan" if generic else "force_custom_plan"


async def analyzed(conn: Any, statement: Captured, *, generic: bool) -> str:
    """``EXPLAIN (ANALYZE, BUFFERS)``'s text for ``statement`` run as a prepared statement,
    custom or generic (``auto_explain`` logs the plan it ran), in a transaction rolled back."""
    messages: list[str] = []

    def listen(_conn: Any, message: Any) -> None:
        messages.append(message.message)

    conn.add_log_listener(listen)
    transaction = conn.transaction()
    await transaction.start()
    try:
        await conn.execute(
            "LOAD 'auto_explain'; SET LOCAL auto_explain.log_min_duration = 0;"
            " SET LOCAL auto_explain.log_analyze = on; SET LOCAL auto_explain.log_buffers = on;"
            f" SET LOCAL plan_cache_mode = {_mode(generic)}; SET LOCAL client_min_messages = log"
        )
        prepared = await conn.prepare(statement.text)
        await prepared.fetch(*statement.args)
    finally:
        await transaction.rollback()
        conn.remove_log_listener(listen)
    logged = next(m for m in reversed(messages) if "plan:" in m)
    return logged.split("plan:", 1)[1].split(statement.text.strip(), 1)[-1].strip()


def nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a JSON plan, depth first."""
    return [node] + [n for child in node.get("Plans", ()) for n in nodes(child)]


def seq_scans(node: dict[str, Any]) -> list[str]:
    """The relations a JSON plan reads by a sequential scan (any depth)."""
    found = [node["Relation Name"]] if node.get("Node Type") == "Seq Scan" else []
    for child in node.get("Plans", ()):
        found += seq_scans(child)
    return found
