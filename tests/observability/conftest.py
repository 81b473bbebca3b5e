"""Fixtures for the observability tests: settings, real databases, a real HTTP server."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    text,
)
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

import tripquote
from tests.conftest import load_fixture
from tripquote.config import Settings


def define_operation_records(metadata: MetaData) -> Table:
    """The ``operation_records`` table exactly as the brief gives it (mirrors db/tables.py)."""
    table = Table(
        "operation_records",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("recorded_at", DateTime(timezone=True), nullable=False),
        Column("correlation_id", String(128), nullable=False),
        Column("operation", String(64), nullable=False),
        Column("agent_id", String(36), nullable=True),
        Column("quote_id", String(36), nullable=True),
        Column("outcome", String(16), nullable=False),
        Column("error_code", String(64), nullable=True),
        Column("http_status", Integer, nullable=True),
        Column("duration_ms", Float, nullable=False),
        Column("pid", Integer, nullable=False),
    )
    Index("ix_operation_records_recorded_at", table.c.recorded_at)
    return table


@pytest.fixture
def records_table() -> Table:
    """The application's ``operation_records`` table (the brief's definition until it exists)."""
    try:
        from tripquote.db.tables import operation_records
    except ImportError:
        return define_operation_records(MetaData())
    table: Table = operation_records
    return table


def make_settings(**overrides: Any) -> Settings:
    """Settings from arguments only (no .env file)."""
    return Settings(_env_file=None, **overrides)  # type: ignore[call-arg]


@pytest.fixture
def settings_factory() -> Callable[..., Settings]:
    return make_settings


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """Environment for child Python processes that import tripquote from this checkout."""
    src = str(Path(tripquote.__file__).resolve().parents[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TRIPQUOTE_", "PROMETHEUS"))}
    env["PYTHONPATH"] = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def python() -> str:
    return sys.executable


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_until(predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until true; fail after ``timeout`` seconds (a bound, not an assertion)."""
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.01)


@pytest.fixture
def until() -> Callable[..., Awaitable[None]]:
    return wait_until


# --- databases ------------------------------------------------------------------------------


@pytest.fixture
async def engine(pg_url: str, records_table: Table) -> AsyncIterator[AsyncEngine]:
    """An engine on the session's database whose search_path is a fresh schema holding only the
    records table; the schema is dropped afterwards."""
    schema = f"obs_test_{secrets.token_hex(6)}"
    admin = create_async_engine(pg_url)
    async with admin.begin() as conn:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = create_async_engine(pg_url, connect_args={"server_settings": {"search_path": schema}})
    try:
        async with engine.begin() as conn:
            await conn.run_sync(records_table.create)
        yield engine
    finally:
        await engine.dispose()
        async with admin.begin() as conn:
            await conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        await admin.dispose()


# --- a real HTTP server (webhook and Telegram API stand-in) --------------------------------


@dataclass
class Captured:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class HttpRecorder:
    """A minimal HTTP/1.1 server on 127.0.0.1 that records requests and answers as scripted."""

    statuses: deque[int] = field(default_factory=deque)
    requests: list[Captured] = field(default_factory=list)
    gate: asyncio.Event | None = None
    events: list[str] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (raw := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = raw.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                self.requests.append(Captured(method, target, headers, body))
                self.events.append("server_received")
                if self.gate is not None:
                    await self.gate.wait()
                status = self.statuses.popleft() if self.statuses else 200
                payload = b'{"ok":true}'
                writer.write(
                    f"HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(payload)}\r\n\r\n".encode()
                    + payload
                )
                await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def http_recorder() -> AsyncIterator[HttpRecorder]:
    recorder = HttpRecorder()
    await recorder.start()
    yield recorder
    if recorder.gate is not None:
        recorder.gate.set()
    await recorder.close()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A local port with nothing listening (connections are refused)."""
    yield free_port()


# --- errors provoked through the real app ----------------------------------------------------


def mismatch_body(client_id: str) -> dict[str, Any]:
    """A create whose client-sent totals differ from the server's: 400 ITEMS_INCONSISTENT."""
    case = next(
        c for c in load_fixture("bad-requests.json") if c["name"] == "client-pricing-mismatch"
    )
    body: dict[str, Any] = json.loads(json.dumps(case["request"]).replace("$CLIENT_ID", client_id))
    return body
