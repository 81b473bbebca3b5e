"""Prometheus metrics: names fixed by the brief, exposition correct with several worker processes.

Metric objects are module-level (the prometheus_client convention). In multi-process mode
(``PROMETHEUS_MULTIPROC_DIR`` set before the worker imports this module) every process writes
its own memory-mapped files and ``render_metrics`` merges them with ``MultiProcessCollector``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

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

WEBHOOK_ATTEMPTS = Counter(
    "tripquote_webhook_attempts_total",
    "Webhook delivery attempts by result (delivered|retry|dead|gone).",
    ["result"],
)
WEBHOOK_DELIVERIES = Counter(
    "tripquote_webhook_deliveries_total",
    "Webhook deliveries finished, by result (delivered|dead).",
    ["result"],
)
LAG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
WEBHOOK_LAG = Histogram(
    "tripquote_webhook_delivery_lag_seconds",
    "From a change's commit (its event) to its webhook's 2xx, seconds.",
    buckets=LAG_BUCKETS,
)
OUTBOX_DEPTH = "tripquote_webhook_outbox_depth"
OUTBOX_OLDEST_AGE = "tripquote_webhook_oldest_pending_age_seconds"
DATABASE_GAUGES = frozenset({OUTBOX_DEPTH, OUTBOX_OLDEST_AGE})
"""Gauges read from the database at each scrape (``outbox_exposition``): the same figure
whichever process answers, however many workers run; absent when it cannot be read."""

EXPORTED_METRIC_NAMES: frozenset[str] = frozenset(
    {
        "tripquote_webhook_attempts_total",
        "tripquote_webhook_deliveries_total",
        "tripquote_webhook_delivery_lag_seconds",
        OUTBOX_DEPTH,
        OUTBOX_OLDEST_AGE,
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


class _Outbox(Collector):
    def __init__(self, depth: int, oldest_age_seconds: float) -> None:
        self.depth, self.oldest_age_seconds = depth, oldest_age_seconds

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(
            OUTBOX_DEPTH,
            "Webhook deliveries pending (due or waiting to be retried), and those of events"
            " not fanned out yet.",
            value=self.depth,
        )
        yield GaugeMetricFamily(
            OUTBOX_OLDEST_AGE,
            "Age of the oldest pending webhook delivery (of its event when not fanned out"
            " yet), seconds (0 when none).",
            value=self.oldest_age_seconds,
        )


def outbox_exposition(depth: int, oldest_age_seconds: float) -> bytes:
    """The outbox gauges in the text exposition format (appended to ``render_metrics``'s);
    plain metric families, not ``Gauge`` objects: nothing is written to the multi-process
    files, the figure is the database's."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Outbox(depth, oldest_age_seconds))
    return generate_latest(registry)


def multiprocess_child_exit(pid: int) -> None:
    """Bookkeeping when worker ``pid`` exits (drops its live-gauge files); no-op otherwise."""
    if is_multiprocess():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
