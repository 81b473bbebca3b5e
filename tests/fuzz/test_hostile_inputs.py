"""Inputs the fuzzer found (or that sit next to what it found), replayed one by one against a
served process: each is refused with a 4xx envelope that is neither retryable nor CRITICAL,
never a 5xx that would tell the client to retry forever and page the on-call engineer; and the
operation record of a request carrying junk ids is still persisted."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import pytest

from tests.api.test_errors_api import assert_envelope
from tests.fuzz.conftest import Target
from tests.servers import read_metric, wait_until

pytestmark = pytest.mark.postgres

QVF = "QUOTE_VALIDATION_FAILED"
NUL = "a\x00b"

# (id, method, path, json body, query, acceptable (status, errorCode) answers)
CASES: list[tuple[str, str, str, Any, dict[str, str] | None, set[tuple[int, str | None]]]] = [
    (
        "revision-version-past-int32",
        "GET",
        "/api/agents/quotes/{quote_id}/revisions/2147483648",
        None,
        None,
        {(404, "QUOTE_NOT_FOUND"), (400, QVF)},
    ),
    (
        "updated-since-before-year-1-utc",
        "GET",
        "/api/agents/quotes",
        None,
        {"updatedSince": "0001-01-01T00:00:00+01:00"},
        {(200, None)},  # before every quote: the earliest instant there is
    ),
    (
        "updated-since-after-year-9999-utc",
        "GET",
        "/api/agents/quotes",
        None,
        {"updatedSince": "9999-12-31T23:59:59-01:00"},
        {(400, QVF), (200, None)},
    ),
    ("nul-in-client-name", "POST", "/api/agents/clients", {"name": NUL}, None, {(400, QVF)}),
    (
        "nul-in-client-phone",
        "POST",
        "/api/agents/clients",
        {"name": "Ann", "phone": NUL},
        None,
        {(400, QVF)},
    ),
    (
        "nul-in-quote-id",
        "GET",
        "/api/agents/quotes/a%00b",
        None,
        None,
        {(404, "QUOTE_NOT_FOUND"), (400, QVF)},
    ),
    (
        "nul-in-client-id",
        "GET",
        "/api/agents/clients/a%00b",
        None,
        None,
        {(404, "CLIENT_NOT_FOUND"), (400, QVF)},
    ),
    (
        "nul-in-client-filter",
        "GET",
        "/api/agents/quotes",
        None,
        {"clientId": NUL},
        {(200, None), (400, QVF)},
    ),
    (
        "nul-in-patched-notes",
        "PATCH",
        "/api/agents/quotes/{quote_id}",
        {"version": 1, "notes": NUL},
        None,
        {(400, QVF)},
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "query", "allowed"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_hostile_input_is_a_client_error(
    target: Target,
    method: str,
    path: str,
    body: Any,
    query: dict[str, str] | None,
    allowed: set[tuple[int, str | None]],
) -> None:
    async with httpx.AsyncClient(base_url=target.server.base_url, timeout=20) as client:
        response = await client.request(
            method,
            path.format(quote_id=target.quote_id),
            json=body,
            params=query,
            headers=target.actor.headers,
        )
    code = response.json().get("errorCode") if response.status_code >= 400 else None
    assert (response.status_code, code) in allowed, response.text
    if code is not None:
        envelope = assert_envelope(response, code, response.status_code)
        assert envelope["retryable"] is False
        assert envelope["severity"] != "CRITICAL"


async def test_junk_ids_do_not_cost_operation_records(target: Target) -> None:
    """A request naming a quote id longer than any id (or with a NUL) is still recorded, and
    does not make the batch it is written with fail (which would drop its neighbours too)."""
    base_url = target.server.base_url
    dropped_before = await read_metric(base_url, "tripquote_oprecords_dropped_total")
    tags = {f"junk-{uuid.uuid4().hex[:12]}": path for path in ("a" * 300, "a%00b")}
    async with httpx.AsyncClient(base_url=base_url, timeout=20) as client:
        for tag, junk in tags.items():
            await client.get(  # its answer is checked in the cases above
                f"/api/agents/quotes/{junk}",
                headers={**target.actor.headers, "X-Correlation-ID": tag},
            )

    async def settled() -> tuple[int, float] | None:
        conn = await asyncpg.connect(target.database.dsn)
        try:
            stored = await conn.fetchval(
                "SELECT count(*) FROM operation_records WHERE correlation_id = ANY($1::text[])",
                list(tags),
            )
        finally:
            await conn.close()
        dropped = await read_metric(base_url, "tripquote_oprecords_dropped_total")
        done = stored == len(tags) or dropped > dropped_before
        return (int(stored), dropped) if done else None

    async with asyncio.timeout(30):
        stored, dropped = await wait_until(settled, within=20, what="operation records written")
    assert dropped == dropped_before, f"{dropped - dropped_before} operation records dropped"
    assert stored == len(tags)
