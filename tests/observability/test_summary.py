"""The summary figures: nearest-rank percentiles and rates as fractions of saves."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tripquote.observability.summary import OperationRecord, RollingWindow, rank_index, stats_of
from tripquote.quotes.serialize import fmt_instant

T0 = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def rec(op: str, ms: float, *, code: str | None = None, second: int = 0) -> OperationRecord:
    return OperationRecord(
        recorded_at=T0 + timedelta(seconds=second),
        correlation_id="REQ-S",
        operation=op,
        outcome="error" if code else "success",
        duration_ms=ms,
        pid=1,
        error_code=code,
    )


def test_nearest_rank() -> None:
    assert [rank_index(100, p) for p in (50, 95, 99)] == [49, 94, 98]
    assert [rank_index(1, p) for p in (50, 95, 99)] == [0, 0, 0]
    assert rank_index(4, 50) == 1


def test_stats_of_one_to_hundred() -> None:
    stats = stats_of([float(v) for v in range(100, 0, -1)])
    assert stats == {
        "count": 100,
        "avgMs": 50.5,
        "p50Ms": 50.0,
        "p95Ms": 95.0,
        "p99Ms": 99.0,
        "maxMs": 100.0,
    }


def test_empty_window() -> None:
    summary = RollingWindow().summary()
    assert summary["window"] == {"size": 0, "since": None, "until": None}
    assert summary["saves"] == {
        "count": 0,
        "avgMs": None,
        "p50Ms": None,
        "p95Ms": None,
        "p99Ms": None,
    }
    assert (summary["errorRate"], summary["conflictRate"], summary["rollbackRate"]) == (
        0.0,
        0.0,
        0.0,
    )


def test_rates_are_fractions_of_saves_only() -> None:
    window = RollingWindow()
    for i in range(6):
        window.add(rec("quote.update", 10.0 * (i + 1), second=i))
    window.add(rec("quote.update", 70.0, code="QUOTE_CONFLICT_VERSION", second=6))
    window.add(rec("quote.send", 80.0, code="QUOTE_ALREADY_SENT", second=7))
    window.add(rec("quote.read", 1.0, code="QUOTE_NOT_FOUND", second=8))  # not a save
    window.add_rollback(T0 + timedelta(seconds=6))
    window.add_rollback(T0 - timedelta(days=1))  # before the window: not counted
    summary = window.summary()
    assert summary["window"]["size"] == 9
    # The API's one instant format (ISO 8601 UTC, milliseconds, Z), as every instant it gives.
    assert summary["window"]["since"] == fmt_instant(T0 - timedelta(milliseconds=10))  # 1st start
    assert summary["window"]["until"] == fmt_instant(T0 + timedelta(seconds=8))
    assert summary["window"]["until"].endswith("Z")
    assert summary["saves"]["count"] == 8
    assert summary["saves"]["avgMs"] == 45.0
    assert summary["errorRateByCode"] == {
        "QUOTE_ALREADY_SENT": 0.125,
        "QUOTE_CONFLICT_VERSION": 0.125,
    }
    assert summary["errorRate"] == 0.25
    assert summary["conflictRate"] == 0.125
    assert summary["rollbackRate"] == 0.125
    assert summary["operations"]["quote.read"]["count"] == 1
    assert set(summary["operations"]) == {"quote.read", "quote.send", "quote.update"}
