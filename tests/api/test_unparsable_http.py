"""Bytes that are no HTTP request, sent to ``tripquote serve`` (uvicorn on loopback): the 400
is the error envelope with its correlation ID, as every refusal (BRIEF "Errors: one
contract"), and logged; uvicorn's own answer was plain text without either."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers import migrated_database, server_env, serving

pytestmark = pytest.mark.postgres

REQUESTS = {
    "request-line": b"GARBAGE \x01 nothing\r\n\r\n",
    "content-length": b"POST /api/agents/quotes HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
}


async def _exchange(base_url: str, raw: bytes) -> tuple[str, dict[str, str], bytes]:
    address = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(raw)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)  # the server closes
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}
    return status, headers, body


async def test_an_unparsable_request_gets_the_envelope(tmp_path: Path) -> None:
    async with (
        migrated_database("unparsable") as database,
        serving(server_env(database.url), log_dir=tmp_path) as (server,),
    ):
        answers = {n: await _exchange(server.base_url, raw) for n, raw in REQUESTS.items()}
    for status, headers, body in answers.values():
        assert status.startswith("HTTP/1.1 400"), status
        assert headers["content-type"] == "application/json"
        envelope = json.loads(body)
        assert (envelope["success"], envelope["errorCode"]) == (False, "QUOTE_VALIDATION_FAILED")
        assert envelope["correlationId"] == headers["x-correlation-id"]
        logged = [
            line
            for line in server.log_events()
            if line.get("correlation_id") == envelope["correlationId"]
        ]
        assert [(line["event"], line["status"]) for line in logged] == [("http_request", 400)]
