"""Operation records and the figures behind ``/api/ops/summary``.

The same definitions serve the in-memory window of this process and the ``operation_records``
table across processes: percentiles are nearest-rank, rates are fractions of saves. Pure but
for ``scoped_summary``, which reads the agents of the caller's agency: an agency admin sees the
operations of its agency's agents only; the operator (the metrics token) sees them all.
"""

from __future__ import annotations

import hmac
import math
import re
from collections import Counter, deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from tripquote.observability.bounds import CORRELATION_CHARS, ID_CHARS, bound_attributes
from tripquote.quotes.serialize import fmt_instant

if TYPE_CHECKING:
    from pydantic import SecretStr
    from sqlalchemy.ext.asyncio import AsyncEngine

SAVE_OPERATIONS: frozenset[str] = frozenset(
    [
        *(f"quote.{verb}" for verb in ("create", "update", "delete", "send", "accept", "reject")),
        # The client's answer on the proposal page: a save of the quote too (ACCEPTED,
        # REJECTED), the one the agency cares most about.
        "proposal.accept",
        "proposal.decline",
    ]
)
"""``Observer.track`` names of quote writes; every rate in the summary is a fraction of these."""

ROLLBACK_OPERATION = "db.rollback"
"""Operation name of the record written for each rolled-back transaction (outcome ``rollback``)."""

CONFLICT_CODE = "QUOTE_CONFLICT_VERSION"
WINDOW_SIZE = 1000


@dataclass(frozen=True, slots=True)
class OperationRecord:
    """One finished operation, as logged, counted, kept in the window and persisted."""

    recorded_at: datetime
    correlation_id: str
    operation: str
    outcome: str
    duration_ms: float
    pid: int
    agent_id: str | None = None
    quote_id: str | None = None
    error_code: str | None = None
    http_status: int | None = None
    severity: str | None = None

    def __post_init__(self) -> None:
        # Ids may come from the URL (a 60,000-character "quote id"): bounded here, once, for
        # the log line, the window and the row built from this record.
        bound_attributes(self, _BOUNDS)

    def as_row(self) -> dict[str, Any]:
        """The ``operation_records`` row: every field but ``severity`` (not a column)."""
        return {
            "recorded_at": self.recorded_at,
            "correlation_id": self.correlation_id,
            "operation": self.operation,
            "outcome": self.outcome,
            "duration_ms": self.duration_ms,
            "pid": self.pid,
            "agent_id": _storable_id(self.agent_id),
            "quote_id": _storable_id(self.quote_id),
            "error_code": self.error_code,
            "http_status": self.http_status,
        }


_BOUNDS = (
    ("correlation_id", CORRELATION_CHARS),
    ("operation", ID_CHARS),
    ("agent_id", ID_CHARS),
    ("quote_id", ID_CHARS),
    ("error_code", ID_CHARS),
)

_STORABLE_ID = re.compile(r"[A-Za-z0-9-]{1,36}")


def _storable_id(value: str | None) -> str | None:
    """An id the 36-character column can hold; junk taken from a URL (too long or cut, NUL, ...)
    is not stored, so it cannot make the batch INSERT fail and drop its neighbours."""
    return value if value is not None and _STORABLE_ID.fullmatch(value) else None


def rank_index(count: int, percentile: float) -> int:
    """0-based index of the nearest-rank ``percentile`` (0-100) in ``count`` sorted values."""
    return max(0, math.ceil(percentile / 100 * count) - 1)


def _ms(value: float | None) -> float | None:
    return None if value is None else round(float(value), 3)


def duration_stats(
    *, count: int, total_ms: float, max_ms: float | None, pick: Mapping[int, float | None]
) -> dict[str, Any]:
    """``{count, avgMs, p50Ms, p95Ms, p99Ms, maxMs}`` from a count, a sum and picked percentiles."""
    return {
        "count": count,
        "avgMs": _ms(total_ms / count) if count else None,
        "p50Ms": _ms(pick.get(50)),
        "p95Ms": _ms(pick.get(95)),
        "p99Ms": _ms(pick.get(99)),
        "maxMs": _ms(max_ms),
    }


def stats_of(durations_ms: Sequence[float]) -> dict[str, Any]:
    """Duration stats (ms) of a list of durations, in any order."""
    ordered = sorted(durations_ms)
    n = len(ordered)
    pick = {p: ordered[rank_index(n, p)] for p in (50, 95, 99)} if n else {}
    return duration_stats(
        count=n, total_ms=math.fsum(ordered), max_ms=ordered[-1] if n else None, pick=pick
    )


def assemble_summary(
    *,
    size: int,
    since: datetime | None,
    until: datetime | None,
    operations: Mapping[str, dict[str, Any]],
    saves: dict[str, Any],
    save_errors: Mapping[str, int],
    rollbacks: int,
) -> dict[str, Any]:
    """The summary body: window, per-operation stats, save stats and rates (fractions of saves)."""
    n = saves["count"]

    def rate(k: int) -> float:
        return round(k / n, 6) if n else 0.0

    return {
        "success": True,
        "window": {
            "size": size,
            "since": fmt_instant(since) if since else None,  # the API's one instant format
            "until": fmt_instant(until) if until else None,
        },
        "operations": dict(sorted(operations.items())),
        "saves": {key: saves[key] for key in ("count", "avgMs", "p50Ms", "p95Ms", "p99Ms")},
        "errorRateByCode": {code: rate(k) for code, k in sorted(save_errors.items())},
        "errorRate": rate(sum(save_errors.values())),
        "conflictRate": rate(save_errors.get(CONFLICT_CODE, 0)),
        "rollbackRate": rate(rollbacks),
    }


def summarize(
    records: Iterable[OperationRecord], rollback_times: Iterable[datetime]
) -> dict[str, Any]:
    """The summary of ``records``; rollbacks count when inside the operations' time span."""
    ops = [r for r in records if r.operation != ROLLBACK_OPERATION]
    by_operation: dict[str, list[float]] = {}
    for r in ops:
        by_operation.setdefault(r.operation, []).append(r.duration_ms)
    saves = [r for r in ops if r.operation in SAVE_OPERATIONS]
    # The window opens when its oldest operation started: a rollback happens before its save ends.
    since = min((r.recorded_at - timedelta(milliseconds=r.duration_ms) for r in ops), default=None)
    until = max((r.recorded_at for r in ops), default=None)
    rollbacks = sum(1 for t in rollback_times if since <= t <= until) if since and until else 0
    return assemble_summary(
        size=len(ops),
        since=since,
        until=until,
        operations={op: stats_of(d) for op, d in by_operation.items()},
        saves=stats_of([r.duration_ms for r in saves]),
        save_errors=Counter(r.error_code or "UNKNOWN" for r in saves if r.outcome == "error"),
        rollbacks=rollbacks,
    )


class RollingWindow:
    """The last ``size`` operations of this process, and the recent rollbacks (time, agent)."""

    def __init__(self, size: int = WINDOW_SIZE) -> None:
        self._records: deque[OperationRecord] = deque(maxlen=size)
        self._rollbacks: deque[tuple[datetime, str | None]] = deque(maxlen=size)

    def __len__(self) -> int:
        return len(self._records)

    def add(self, record: OperationRecord) -> None:
        """Append one finished operation (O(1); the oldest falls out when full)."""
        self._records.append(record)

    def add_rollback(self, at: datetime, agent_id: str | None = None) -> None:
        """Note one rolled-back transaction at ``at`` (UTC), of ``agent_id``'s operation."""
        self._rollbacks.append((at, agent_id))

    def summary(self, *, agent_ids: Collection[str] | None = None) -> dict[str, Any]:
        """The ``/api/ops/summary`` body for this window: only the operations (and rollbacks)
        of ``agent_ids`` when given, every one when None."""
        records, rollbacks = list(self._records), list(self._rollbacks)
        if agent_ids is not None:
            records = [r for r in records if r.agent_id in agent_ids]
            rollbacks = [(at, agent) for at, agent in rollbacks if agent in agent_ids]
        return summarize(records, [at for at, _agent in rollbacks])


def is_operator(metrics_token: SecretStr | None, authorization: str | None) -> bool:
    """True when ``authorization`` is ``Bearer <metrics token>`` and a token is configured."""
    if metrics_token is None or authorization is None:
        return False
    scheme, _, presented = authorization.partition(" ")
    expected = metrics_token.get_secret_value().encode()
    return scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), expected)


async def scoped_summary(
    window: RollingWindow, engine: AsyncEngine, *, agency_id: str | None
) -> dict[str, Any]:
    """The ``/api/ops/summary`` body: ``window``'s operations of agency ``agency_id``'s agents
    (an agency admin), or of everyone, requests of no agent included, when None (the operator)."""
    if agency_id is None:
        return window.summary()
    from tripquote.db.tables import agents  # lazy: the pure part needs no tables

    async with engine.connect() as conn:
        rows = await conn.execute(select(agents.c.id).where(agents.c.agency_id == agency_id))
        agent_ids = frozenset(rows.scalars())
    return window.summary(agent_ids=agent_ids)
