"""Personal data in free text never reaches a log line: a bare e-mail address in a sentence,
and phone numbers written the national way (no ``+``) as well as E.164. Checked on the
redaction processor and on the lines a real request writes."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest

from tests.api.test_errors_api import assert_envelope
from tests.conftest import World, make_settings, quote_body
from tripquote.observability.logging import REDACTED, flush_logs, redact

# free text -> what the log line must say instead
FREE_TEXT = {
    "quote sent to jane@example.com": f"quote sent to {REDACTED}",
    "call 06 12 34 56 78 after 6pm": f"call {REDACTED} after 6pm",
    "call +33 6 12 34 56 78 after 6pm": f"call {REDACTED} after 6pm",
    "office (415) 555-0134, ask for Jane": f"office {REDACTED}, ask for Jane",
    "or 06.12.34.56.78": f"or {REDACTED}",
    "or 415-555-0134": f"or {REDACTED}",
}
SECRETS = ("jane@example.com", "06 12 34 56 78", "6 12 34 56 78", "555-0134", "06.12.34.56.78")

# Text that looks numeric but is no phone number: it must stay readable.
KEPT = [
    "2026-11-29T10:00:00.123+00:00",
    "2026-11-29 10:00:00",
    "ends 2026-12-05, sent 2026-11-29",
    "client 127.0.0.1:5000 from 192.168.100.200",
    "a1b2c3d4-1234-5678-9abc-def012345678",
    "12345678-1234-1234-1234-123456789012",
    "REQ-27D740C0814BF33ACAC5",
    "total 1346125.00 EUR, 3 items, took 12.5 ms",
]


@pytest.mark.parametrize("text", sorted(FREE_TEXT))
def test_the_processor_redacts_free_text(text: str) -> None:
    event = {"event": text, "detail": {"notes": [text]}, "count": 3}
    redacted = redact(None, "info", dict(event))
    assert redacted["event"] == FREE_TEXT[text]
    assert redacted["detail"] == {"notes": [FREE_TEXT[text]]}
    assert redacted["count"] == 3
    rendered = json.dumps(redacted)
    for secret in SECRETS:
        assert secret not in rendered


@pytest.mark.parametrize("text", KEPT)
def test_the_processor_keeps_dates_addresses_and_ids(text: str) -> None:
    assert redact(None, "info", {"event": text, "path": text}) == {"event": text, "path": text}


async def _log_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    flush_logs()
    out = capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines() if line.strip()]


@pytest.mark.parametrize(
    "text",
    ["quote sent to jane@example.com", "06 12 34 56 78", "(415) 555-0134", "+33 6 12 34 56 78"],
)
async def test_a_request_carrying_free_text_logs_it_redacted(
    pg_url: str, world_factory: Any, capsys: pytest.CaptureFixture[str], text: str
) -> None:
    # A mistyped or pasted id lands in the path, and the path is logged.
    world: World = await world_factory(make_settings(pg_url, log_level="INFO"))
    actor = await world.actor()
    capsys.readouterr()
    response = await world.client.get(
        f"/api/agents/quotes/{quote(text)}",
        headers={**actor.headers, "X-Correlation-ID": "pin-redaction-1"},
    )
    assert_envelope(response, "QUOTE_NOT_FOUND", 404)
    lines = await _log_lines(capsys)
    mine = [line for line in lines if line.get("correlation_id") == "pin-redaction-1"]
    operation = [line for line in mine if line["event"] == "operation"]
    assert len(operation) == 1, mine
    assert operation[0]["error_code"] == "QUOTE_NOT_FOUND"
    assert REDACTED in operation[0]["path"]
    assert operation[0]["quote_id"] is None  # no UUID: no quote has it, not noted
    raw = json.dumps(lines)
    for secret in (*SECRETS, text):
        assert secret not in raw


async def test_notes_with_contact_details_never_reach_the_log(
    pg_url: str, world_factory: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    # Notes are free text an agent types; whatever a save logs about them, these stay out.
    world: World = await world_factory(make_settings(pg_url, log_level="INFO"))
    actor = await world.actor()
    notes = "quote sent to jane@example.com; call 06 12 34 56 78 or (415) 555-0134"
    body = {**quote_body("edinburgh-weekend-gbp", actor.client_id), "notes": notes}
    capsys.readouterr()
    created = await world.client.post("/api/agents/quotes", json=body, headers=actor.headers)
    assert created.status_code == 201, created.text
    too_long = {"version": 1, "notes": notes * 1000, "travelers": 0}
    refused = await world.client.patch(
        f"/api/agents/quotes/{created.json()['quoteId']}", json=too_long, headers=actor.headers
    )
    assert_envelope(refused, "QUOTE_VALIDATION_FAILED", 400)
    lines = await _log_lines(capsys)
    assert {line["event"] for line in lines} >= {"operation"}
    raw = json.dumps(lines)
    for secret in SECRETS:
        assert secret not in raw
