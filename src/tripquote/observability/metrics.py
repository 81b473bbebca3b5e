"""Prometheus metrics: names fixed by the brief, exposition correct with several worker processes.

Metric objects are module-level (the prometheus_client convention). In multi-process mode
(``PROMETHEUS_MULTIPROC_DIR`` set before the worker imports this module) every process writes
its own memory-mapped files and ``render_metrics`` merges them with ``MultiProcessCollector``.
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Buckets straddle the save targets (P95 < 0.5 s, P99 < 1 s) so both can be read off directly.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)

OPERATIONS = Counter(
    "tripquote_operations_total",
    "Operations by operation, outcome (success|error|cancelled) and error code ('' on success).",
    ["operation", "outcome", "error_code"],
)
OPERATION_DURATION = Histogram(
    "tripquote_operation_duration_seconds",
    "Wall time of one operation, seconds.",
    ["operation", "outcome"],
    buckets=DURATION_BUCKETS,
)
DB_RETRIES = Counter(
    "tripquote_db_retries_total",
    "Transaction attempts retried after a retryable SQLSTATE or a statement prepared before a "
    "schema change.",
)
DB_ROLLBACKS = Counter(
    "tripquote_db_rollbacks_total", "Transactions rolled back, by reason (error code).", ["reason"]
)
VERSION_CONFLICTS = Counter(
    "tripquote_version_conflicts_total", "Saves refused with QUOTE_CONFLICT_VERSION."
)
ALERTS = Counter(
    "tripquote_alerts_total",
    "Alert deliveries by channel and result (sent|failed|suppressed).",
    ["channel", "result"],
)
OPRECORDS_DROPPED = Counter(
    "tripquote_oprecords_dropped_total",
    "Operation records not persisted (queue full, database failing, shutdown).",
)
RATE_LIMIT_STORAGE_ERRORS = Counter(
    "tripquote_ratelimit_storage_errors_total",
    "Rate-limit checks that could not reach their storage (Redis); writes then fail open/closed.",
)

EXPORTED_METRIC_NAMES: frozenset[str] = frozenset(
    {
        "tripquote_operations_total",
        "tripquote_operation_duration_seconds",
        "tripquote_db_retries_total",
        "tripquote_db_rollbacks_total",
        "tripquote_version_conflicts_total",
        "tripquote_alerts_total",
        "tripquote_oprecords_dropped_total",
        "tripquote_ratelimit_storage_errors_total",
    }
)
"""Base names of every metric tripquote exports (counters with ``_total``)."""


def is_multiprocess() -> bool:
    """True when ``PROMETHEUS_MULTIPROC_DIR`` is set (several worker processes share metrics)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def render_metrics() -> tuple[bytes, str]:
    """(exposition body, content type) of this process, or of all workers in multi-process mode."""
    if is_multiprocess():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def multiprocess_child_exit(pid: int) -> None:
    """Bookkeeping when worker ``pid`` exits (drops its live-gauge files); no-op otherwise."""
    if is_multiprocess():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
