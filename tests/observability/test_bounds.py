"""Client-controlled text is bounded where log lines, operation records and alerts are built:
through the real app, huge URLs and headers give whole JSON lines of at most 4 KiB that say
where a value was cut, and bounded operation records."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from tests.conftest import World, make_settings, quote_body
from tests.observability.test_logging import run_script
from tripquote.observability.alerts import Alert, AlertDispatcher
from tripquote.observability.bounds import FIELD_CHARS, ID_CHARS, cut
from tripquote.observability.logging import MAX_LINE_BYTES, flush_logs

HUGE = 60_000
HALF = HUGE // 2  # a path and a query of 30,000 each: a 60,000-character URL (httpx's limit: 64 Ki)
CUT = re.compile(r"…\[cut ([\d,]+) chars\]$")


def _cut_count(value: str) -> int:
    match = CUT.search(value)
    assert match, f"no cut marker at the end of {value[-60:]!r}"
    return int(match.group(1).replace(",", ""))


async def test_huge_urls_and_headers_give_bounded_lines_and_records(
    db_url: str, world_factory: Any, capsys: Any
) -> None:
    world: World = await world_factory(make_settings(db_url, log_level="INFO"))
    actor = await world.actor()
    junk_id, query = "q" * HALF, "x=" + "y" * HALF
    headers = {**actor.headers, "User-Agent": "U" * HUGE, "X-Request-ID": "r" * HUGE}
    capsys.readouterr()

    read = await world.client.get(f"/api/agents/quotes/{junk_id}?{query}", headers=headers)
    patch = await world.client.patch(
        f"/api/agents/quotes/{junk_id}", json={"version": 1}, headers=headers
    )
    keyed = await world.client.post(
        "/api/agents/quotes",
        json=quote_body("iceland-ring-road-eur", actor.client_id),
        headers={**headers, "Idempotency-Key": "k" * HUGE},
    )
    unknown = await world.client.get("/" + "n" * HALF + "?" + query, headers=headers)
    assert [r.status_code for r in (read, patch, keyed, unknown)] == [404, 404, 400, 404]
    correlation_ids = {r.headers["x-correlation-id"] for r in (read, patch, keyed, unknown)}

    flush_logs()
    raw = capsys.readouterr().out.splitlines()
    lines = [json.loads(line) for line in raw]  # every line is one JSON object
    assert all(len(line.encode()) <= MAX_LINE_BYTES for line in raw)
    mine = [line for line in lines if line.get("correlation_id") in correlation_ids]
    assert len(mine) == 4, mine
    for line in (line for line in mine if line.get("operation") != "quote.create"):
        # The URL is kept up to the field's bound, and says how much was dropped.
        path = line["path"]
        assert len(path) == FIELD_CHARS
        assert (
            path[: FIELD_CHARS - 32] in f"/api/agents/quotes/{junk_id}?{query}" + "/" + "n" * HALF
        )
        assert _cut_count(path) > HALF - FIELD_CHARS
    by_operation = {line.get("operation"): line for line in mine}
    # An id no quote can have (not a UUID: junk, or a link's token put there) is not noted.
    assert by_operation["quote.read"]["quote_id"] is None
    assert by_operation["quote.update"]["quote_id"] is None

    async with asyncio.timeout(10):  # a bound on the background writer, not a timing test
        while await world.count(
            "operation_records", "correlation_id = ANY(:ids)", ids=list(correlation_ids)
        ) < len(correlation_ids):
            await asyncio.sleep(0.02)
    async with world.engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    text("SELECT * FROM operation_records WHERE correlation_id = ANY(:ids)"),
                    {"ids": list(correlation_ids)},
                )
            )
            .mappings()
            .all()
        )
    assert {row["operation"] for row in rows} >= {"quote.read", "quote.update", "quote.create"}
    for row in rows:
        assert row["quote_id"] is None  # an id cut short matches no quote: not stored
        assert all(len(v) <= 128 for v in row.values() if isinstance(v, str))


def test_cut_keeps_the_head_within_the_limit_and_counts_the_rest() -> None:
    value = "a" * HUGE
    bounded = cut(value, 128)
    assert len(bounded) == 128
    marker = CUT.search(bounded)
    assert marker
    kept = len(bounded) - len(marker.group(0))
    assert bounded == "a" * kept + f"…[cut {HUGE - kept:,} chars]"
    assert _cut_count(bounded) == HUGE - kept == 59_891
    assert cut(bounded, 128) == bounded  # cutting twice changes nothing
    assert cut("abc", 3) == "abc"


BOUNDS_SCRIPT = """
    import logging
    import structlog
    from tripquote.config import Settings
    from tripquote.observability.logging import configure_logging

    configure_logging(Settings(_env_file=None, log_level="INFO"))
    log = structlog.get_logger("tripquote.test")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/" + "p" * 60000, "1.1", 404
    )
    logging.getLogger("some.library").warning("said: %s", "w" * 60000)
    log.warning("many_fields", **{f"field_{i}": "v" * 1000 for i in range(12)})
    log.warning("escaped", text="\\x01" * 3000)

    def deep(n):  # alternating frames: Python does not fold them into "repeated N times"
        if n == 0:
            raise ValueError("the innermost failure")
        deeper(n - 1)

    def deeper(n):
        deep(n)

    try:
        deep(80)
    except ValueError:
        log.exception("deep_failure")
"""


def test_every_line_fits_whatever_its_source(python: str, subprocess_env: dict[str, str]) -> None:
    lines, raw = run_script(python, subprocess_env, BOUNDS_SCRIPT)
    assert all(len(line.encode()) <= MAX_LINE_BYTES for line in raw.splitlines())
    by_event = {line["event"]: line for line in lines}
    path = by_event["http_request"]["path"]
    assert path == cut("/" + "p" * 60_000, FIELD_CHARS)
    assert _cut_count(path) > 60_000 - FIELD_CHARS
    [said] = [event for event in by_event if event.startswith("said: ")]
    assert said == cut("said: " + "w" * 60_000, FIELD_CHARS)
    many = by_event["many_fields"]
    assert len(many) > 12  # every field is still there, the longest ones cut
    assert any(CUT.search(value) for key, value in many.items() if key.startswith("field_"))
    assert CUT.search(by_event["escaped"]["text"])
    trace = by_event["deep_failure"]["exception"]
    assert trace.startswith("[cut ") and trace.endswith("ValueError: the innermost failure")


async def test_alerts_carry_bounded_ids(settings_factory: Any, http_recorder: Any) -> None:
    dispatcher = AlertDispatcher(settings_factory(alert_webhook_url=http_recorder.url + "/h"))
    await dispatcher.start()
    dispatcher.submit(
        Alert(
            error_code="INTERNAL_ERROR",
            severity="CRITICAL",
            message="An unexpected error occurred.",
            correlation_id="REQ-BOUND-1",
            occurred_at=datetime.now(UTC),
            operation="quote.read",
            quote_id="q" * HUGE,
        )
    )
    await dispatcher.stop()  # delivers what is queued before it returns
    [request] = http_recorder.requests
    assert json.loads(request.body)["quoteId"] == cut("q" * HUGE, ID_CHARS)
    assert len(request.body) < 1024


class _Recorder:
    """A redaction pattern that notes the length of every text it is asked to scan."""

    def __init__(self, pattern: re.Pattern[str], seen: list[int]) -> None:
        self.pattern, self.seen = pattern, seen

    def sub(self, replacement: Any, text: str) -> str:
        self.seen.append(len(text))
        return self.pattern.sub(replacement, text)


def test_redaction_scans_only_what_a_line_keeps(monkeypatch: Any) -> None:
    # The patterns' cost grows with the square of a run they scan: a hostile 60,000-character
    # URL held the event loop for seconds. They now see at most the kept part and a margin.
    from tripquote.observability import logging as log_module

    seen: list[int] = []
    monkeypatch.setattr(
        log_module,
        "_VALUE_PATTERNS",
        tuple((_Recorder(p, seen), r) for p, r in log_module._VALUE_PATTERNS),
    )
    monkeypatch.setattr(log_module, "_NATIONAL_PHONE", _Recorder(log_module._NATIONAL_PHONE, seen))
    hostile = "/" + ("a" * 99 + "@") * (HUGE // 100) + "?token=eyJ" + "b" * HUGE
    scrubbed = log_module.scrub({"path": hostile, "exception": "06 12 34 56 78 " * 8000})
    assert seen and max(seen) <= MAX_LINE_BYTES + log_module._SCRUB_MARGIN
    assert len(scrubbed["path"]) <= FIELD_CHARS and _cut_count(scrubbed["path"]) > HUGE
    assert len(scrubbed["exception"]) <= MAX_LINE_BYTES
    assert "06 12 34 56 78" not in scrubbed["exception"]


def test_a_secret_the_cut_crosses_is_masked_whole() -> None:
    from tripquote.observability.logging import REDACTED, scrub

    head = "x" * (FIELD_CHARS - 40)
    for secret in ("jane.doe@example.com", "Bearer abc.def-ghi", "+33 6 12 34 56 78"):
        line = scrub({"path": f"{head} {secret} " + "y" * HUGE})["path"]
        assert secret[:12] not in line and REDACTED[:3] in line, (secret, line[-80:])
        assert len(line) <= FIELD_CHARS and _cut_count(line) > HUGE - FIELD_CHARS
