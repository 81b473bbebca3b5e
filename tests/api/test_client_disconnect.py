"""A client that hangs up while sending its body: no answer is sent (no one is there), the
operation is recorded as ``cancelled``, and nothing counts as a server fault (no
INTERNAL_ERROR, no CRITICAL alert); nothing is written. Quote routes and FastAPI's alike."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from tests.conftest import World

OPS = "tripquote_operations_total"


def _count(**labels: str) -> float:
    return REGISTRY.get_sample_value(OPS, labels) or 0.0


@pytest.mark.parametrize(
    ("path", "operation"),
    [("/api/agents/quotes", "quote.create"), ("/api/agents/clients", "client.create")],
)
async def test_a_body_cut_short_by_a_disconnect(world: World, path: str, operation: str) -> None:
    actor = await world.actor()
    before = await world.table_counts()
    internal = _count(operation=operation, outcome="error", error_code="INTERNAL_ERROR")
    cancelled = _count(operation=operation, outcome="cancelled", error_code="")
    messages = iter(
        [
            {"type": "http.request", "body": b'{"clientId": "', "more_body": True},
            {"type": "http.disconnect"},
        ]
    )
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return next(messages)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"tripquote.test"),
            (b"content-type", b"application/json"),
            (b"content-length", b"1000"),
            (b"authorization", f"Bearer {actor.token}".encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("tripquote.test", 80),
    }
    await world.app(scope, receive, send)

    assert sent == []
    assert _count(operation=operation, outcome="cancelled", error_code="") == cancelled + 1
    assert _count(operation=operation, outcome="error", error_code="INTERNAL_ERROR") == internal
    assert await world.table_counts() == before
