"""Which of the save's hand-written statements ran, read off asyncpg's query logger on every
pooled connection of a test's engine (PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


class Statements:
    """The watched statements run on the engine's pooled asyncpg connections, by name, in
    order; ``names`` maps a statement's text to its name (other statements are not kept)."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.seen: list[str] = []
        self._watched: set[int] = set()

    def watch(self, dbapi_connection: Any, *_: Any) -> None:
        driver = dbapi_connection.driver_connection
        if id(driver) not in self._watched:
            self._watched.add(id(driver))
            driver.add_query_logger(self._log)

    def _log(self, record: Any) -> None:
        name = self.names.get(record.query)
        if name is not None:
            self.seen.append(name)

    async def take(self) -> list[str]:
        """The statements seen since the last call."""
        await asyncio.sleep(0)  # asyncpg calls query loggers with call_soon
        seen, self.seen = self.seen, []
        return seen


@contextmanager
def watching(engine: AsyncEngine, names: dict[str, str]) -> Iterator[Statements]:
    """A ``Statements`` fed by every connection checked out of ``engine``'s pool."""
    watcher = Statements(names)
    pool = engine.sync_engine.pool
    event.listen(pool, "checkout", watcher.watch)
    try:
        yield watcher
    finally:
        event.remove(pool, "checkout", watcher.watch)
