"""``tripquote ops summary``: duration parsing, the table, and the command on a real database."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from tripquote.observability.cli import format_summary, ops_app, parse_since
from tripquote.observability.summary import OperationRecord, RollingWindow


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", timedelta(seconds=90)),
        ("30m", timedelta(minutes=30)),
        ("1h", timedelta(hours=1)),
        ("2d", timedelta(days=2)),
        ("36500d", timedelta(days=36500)),
    ],
)
def test_parse_since(text: str, expected: timedelta) -> None:
    assert parse_since(text) == expected


@pytest.mark.parametrize(
    "text", ["", "h", "1", "1w", "-1h", "0m", "1.5h", "1 h", "36501d", "999999d", "99999999999d"]
)
def test_parse_since_refuses(text: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_since(text)


def make_record(op: str, ms: float, code: str | None = None) -> OperationRecord:
    return OperationRecord(
        recorded_at=datetime.now(UTC),
        correlation_id="REQ-CLI",
        operation=op,
        outcome="error" if code else "success",
        duration_ms=ms,
        pid=7,
        error_code=code,
        http_status=409 if code else 200,
    )


def test_format_summary_names_every_figure() -> None:
    window = RollingWindow()
    window.add(make_record("quote.update", 12.5))
    window.add(make_record("quote.update", 40.0, "QUOTE_CONFLICT_VERSION"))
    text = format_summary(window.summary())
    assert "quote.update" in text
    assert "conflict rate 0.5000" in text
    assert "QUOTE_CONFLICT_VERSION" in text
    assert "p95 40.0 ms" in text


def test_summary_command_reads_the_database(
    tmp_path: Path, empty_db: str, records_table: Table, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = empty_db

    async def seed() -> None:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            await conn.run_sync(records_table.create)
            rows = [make_record("quote.update", float(ms)).as_row() for ms in (10, 20, 30, 40)]
            rows.append(make_record("quote.send", 5.0, "QUOTE_ALREADY_SENT").as_row())
            await conn.execute(insert(records_table), rows)
        await engine.dispose()

    asyncio.run(seed())
    monkeypatch.setenv("TRIPQUOTE_DATABASE_URL", url)
    monkeypatch.chdir(tmp_path)  # no stray .env

    result = CliRunner().invoke(ops_app, ["summary", "--since", "30m", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["saves"] == {
        "count": 5,
        "avgMs": 21.0,
        "p50Ms": 20.0,
        "p95Ms": 40.0,
        "p99Ms": 40.0,
    }
    assert summary["errorRateByCode"] == {"QUOTE_ALREADY_SENT": 0.2}
    assert summary["operations"]["quote.update"]["p50Ms"] == 20.0

    table = CliRunner().invoke(ops_app, ["summary"])
    assert table.exit_code == 0, table.output
    assert "error rate 0.2000" in table.output

    bad = CliRunner().invoke(ops_app, ["summary", "--since", "soon"])
    assert bad.exit_code == 2
