"""Bytes that are no HTTP request, sent to ``tripquote serve`` (uvicorn on loopback): the 400
is the error envelope with its correlation ID, as every refusal (BRIEF "Errors: one
contract"), and logged; uvicorn's own answer was plain text without either."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests.servers import migrated_database, server_env, serving
from tripquote.protocol import MAX_HEAD_BYTES

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
    return _parts(answer)


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


async def _send_until_closed(base_url: str, head: bytes, padding: int) -> bytes:
    """Send ``head`` then ``padding`` bytes of one header's value, a MiB at a time, until the
    server closes the connection; what it answered."""
    address = urlsplit(base_url)
    reader, writer = await asyncio.open_connection(address.hostname, address.port)
    try:
        writer.write(head)
        sent = 0
        with contextlib.suppress(ConnectionError):
            while sent < padding:
                writer.write(b"a" * 1_048_576)
                await writer.drain()
                sent += 1_048_576
        return await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()


async def test_a_request_head_past_the_bound_is_a_431_envelope(tmp_path: Path) -> None:
    # Before: no bound at all (httptools sets none): five unfinished 40 MB headers took a
    # worker from 132 to 309 MB, and a 20 MB Authorization was parsed and answered.
    padded = b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n"
    async with (
        migrated_database("head_bound") as database,
        serving(server_env(database.url), log_dir=tmp_path) as (server,),
    ):
        fits = await _exchange(server.base_url, padded % (b"a" * (MAX_HEAD_BYTES - 100)))
        over = await _exchange(server.base_url, padded % (b"a" * MAX_HEAD_BYTES))
        endless = await _send_until_closed(
            server.base_url, b"GET /api/agents/quotes HTTP/1.1\r\nAuthorization: Bearer ", 40 << 20
        )
    log = server.log_events()  # whole once the server stopped
    assert fits[0].startswith("HTTP/1.1 200"), fits[0]
    for status, headers, body in (over, _parts(endless)):
        assert status.startswith("HTTP/1.1 431"), (status, body)
        envelope = json.loads(body)
        assert envelope["errorCode"] == "QUOTE_VALIDATION_FAILED"
        assert envelope["details"] == {"maxHeadBytes": MAX_HEAD_BYTES}
        assert envelope["correlationId"] == headers["x-correlation-id"]
        assert headers["connection"] == "close"
    assert [e["status"] for e in log if e.get("reason") == "request head too large"] == [431] * 2


def _parts(answer: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *fields = head.decode("latin-1").split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (f.partition(":") for f in fields)}, body


async def test_a_pipelined_request_after_a_large_body_is_not_taken_for_a_large_head(
    tmp_path: Path,
) -> None:
    # Before: the chunk holding the end of a 100 KB body and the start of the next request's
    # head was counted as head (a 431 for a 50-byte head, the POST's answer lost), and a
    # refusal's end of stream made the earlier request's answer fail: a 500 INTERNAL_ERROR.
    body = (
        b"POST /health/live HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"a" * 100_000
    )
    async with (
        migrated_database("pipelined") as database,
        serving(server_env(database.url), log_dir=tmp_path) as (server,),
    ):
        address = urlsplit(server.base_url)
        reader, writer = await asyncio.open_connection(address.hostname, address.port)
        try:
            writer.write(body + b"GET /health/live HTTP/1.1\r\nHost: x\r\nX-Pad: ")
            await writer.drain()
            await asyncio.sleep(0.3)  # the head's end in a chunk of its own
            writer.write(b"yy\r\nConnection: close\r\n\r\n")
            await writer.drain()
            answer = await asyncio.wait_for(reader.read(), timeout=10)
        finally:
            writer.close()
        garbage = await _exchange(server.base_url, body + b"BLAH\x01 /x HTTP/1.1\r\n\r\n")
    statuses = re.findall(rb"HTTP/1.1 (\d{3})", answer)
    assert statuses == [b"405", b"200"], answer[:300]
    assert not garbage[0].startswith("HTTP/1.1 431"), garbage[0]
    log = server.log_events()
    assert not [e for e in log if e.get("error_code") == "INTERNAL_ERROR"], log[-5:]
