"""Operation tracking: one structured event, metrics, a record and alerts per operation.

``Observer.track`` wraps one operation (``routing.TrackedRoute``: every API request). Its side
effects (log event, metrics, the rolling window, the operation-record queue, the alert queue)
are synchronous, O(1) and individually guarded: a failure there is logged and swallowed, never
slowing or failing the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from starlette.requests import ClientDisconnect

from tripquote.errors import InternalError, Severity, TripquoteError
from tripquote.observability import metrics
from tripquote.observability.alerts import Alert, AlertDispatcher
from tripquote.observability.context import (
    correlation_id_var,
    new_correlation_id,
    request_log_var,
    request_started_var,
)
from tripquote.observability.oprecords import OpRecordWriter
from tripquote.observability.summary import (
    CONFLICT_CODE,
    ROLLBACK_OPERATION,
    OperationRecord,
    RollingWindow,
)

if TYPE_CHECKING:
    from sqlalchemy import Table
    from sqlalchemy.ext.asyncio import AsyncEngine

    from tripquote.config import Settings

logger = structlog.get_logger("tripquote.operations")

_OBSERVED = "_tripquote_observed"
"""Attribute set on an exception once counted, so the error handler does not count it again."""

UNTRACKED_OPERATION = "request"
"""Operation name for error responses raised outside ``track`` (unknown routes, bodies refused by
their Content-Length, routes that name no operation)."""


@dataclass
class OperationScope:
    """What is known about one operation while it runs; ids are added as they are learnt."""

    operation: str
    agent_id: str | None = None
    quote_id: str | None = None
    started: float = field(default_factory=time.perf_counter)
    extra: dict[str, Any] = field(default_factory=dict)
    http_status: int | None = None
    """Status of a successful response (default 200; the route's response sets it)."""
    answered: TripquoteError | None = None
    """The error a route answered with a response of its own (a form shown again with its
    errors) instead of raising it: recorded as the operation's error all the same."""


_current_scope: ContextVar[OperationScope | None] = ContextVar(
    "tripquote_operation_scope", default=None
)


def current_operation() -> OperationScope | None:
    """The operation the current request runs, if it is tracked (to add the ids it learns)."""
    return _current_scope.get()


class Tracked:
    """``async with observer.track(...) as scope``: a plain class, not a generator, since it
    wraps every API request (``routing.TrackedRoute``)."""

    __slots__ = ("_observer", "_scope", "_token")

    def __init__(self, observer: Observer, scope: OperationScope) -> None:
        self._observer = observer
        self._scope = scope
        self._token: Token[OperationScope | None] | None = None

    async def __aenter__(self) -> OperationScope:
        self._token = _current_scope.set(self._scope)
        return self._scope

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        scope, observer = self._scope, self._observer
        try:
            if exc is None:
                observer._finish(scope, scope.answered)
            elif isinstance(exc, TripquoteError):
                observer._finish(scope, exc)
            elif isinstance(exc, (asyncio.CancelledError, ClientDisconnect)):
                # The client went away (mid-body, or the server cancelled the request): nobody
                # gets an answer, and it is no fault of the service's.
                observer._finish(scope, None, outcome="cancelled")
            elif isinstance(exc, Exception):
                _guarded("log", _log_unhandled, scope, exc)
                error = InternalError()
                observer._finish(scope, error)
                raise error from exc
        finally:
            if self._token is not None:
                with contextlib.suppress(ValueError):  # closed from another context: harmless
                    _current_scope.reset(self._token)


def _current_correlation_id() -> str:
    # Read now, on the request path, so queued work carries the request's id.
    return correlation_id_var.get() or new_correlation_id()


class Observer:
    """Per-process hub: tracks operations, feeds metrics, the op-record writer and alerts."""

    def __init__(
        self,
        settings: Settings,
        *,
        records_table: Table | None = None,
        alert_backoff_seconds: float = 0.5,
        drain_timeout_seconds: float = 5.0,
    ) -> None:
        self.settings = settings
        self.window = RollingWindow()
        self.records = OpRecordWriter(
            queue_size=settings.oprecord_queue_size,
            batch_size=settings.oprecord_batch_size,
            linger_seconds=settings.oprecord_linger_seconds,
            table=records_table,
        )
        self.alerts = AlertDispatcher(settings, backoff_seconds=alert_backoff_seconds)
        self._drain_timeout = drain_timeout_seconds
        self._pid = os.getpid()

    async def start(self, engine: AsyncEngine) -> None:
        """Start background workers (operation-record writer, alert sender)."""
        self._pid = os.getpid()  # a worker may have been forked after __init__
        await self.records.start(engine)
        await self.alerts.start()

    async def stop(self) -> None:
        """Drain the operation-record queue and pending alerts, then stop the workers."""
        results = await asyncio.gather(
            self.records.stop(timeout_seconds=self._drain_timeout),
            self.alerts.stop(timeout_seconds=self._drain_timeout),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, Exception):
                logger.error("observer_stop_failed", exc_info=result)

    def track(
        self, operation: str, *, agent_id: str | None = None, quote_id: str | None = None
    ) -> Tracked:
        """Track one operation: success if the block returns, its code if it raises."""
        return Tracked(self, OperationScope(operation, agent_id=agent_id, quote_id=quote_id))

    def error_rendered(self, error: TripquoteError, *, operation: str | None = None) -> None:
        """Called by the error handler for every error response (alerts CRITICAL ones once)."""
        if getattr(error, _OBSERVED, False):
            return
        started = request_started_var.get()
        scope = OperationScope(
            operation=operation or UNTRACKED_OPERATION,
            started=started if started is not None else time.perf_counter(),
        )
        self._finish(scope, error)

    def db_retry(self) -> None:
        """Count one retried transaction attempt."""
        _guarded("db_retry", metrics.DB_RETRIES.inc)

    def db_rollback(self, reason: str) -> None:
        """Count one rolled-back transaction; ``reason`` is the error code."""
        scope = _current_scope.get()
        record = OperationRecord(
            recorded_at=datetime.now(UTC),
            correlation_id=_current_correlation_id(),
            operation=ROLLBACK_OPERATION,
            outcome="rollback",
            duration_ms=0.0,
            pid=self._pid,
            agent_id=scope.agent_id if scope else None,
            quote_id=scope.quote_id if scope else None,
            error_code=reason,
        )
        _guarded("db_rollback", metrics.DB_ROLLBACKS.labels(reason=reason).inc)
        _guarded("window", self.window.add_rollback, record.recorded_at, record.agent_id)
        _guarded("oprecord", self.records.enqueue, record)

    def summary(self) -> dict[str, Any]:
        """The ``/api/ops/summary`` body for this process's last 1,000 operations."""
        return self.window.summary()

    def _finish(
        self, scope: OperationScope, error: TripquoteError | None, *, outcome: str | None = None
    ) -> None:
        try:
            if error is not None:
                setattr(error, _OBSERVED, True)
            record = OperationRecord(
                recorded_at=datetime.now(UTC),
                correlation_id=_current_correlation_id(),
                operation=scope.operation,
                outcome=outcome or ("success" if error is None else "error"),
                duration_ms=(time.perf_counter() - scope.started) * 1000,
                pid=self._pid,
                agent_id=scope.agent_id,
                quote_id=scope.quote_id,
                error_code=error.code if error else None,
                http_status=error.status if error else _success_status(scope, outcome),
                severity=str(error.severity) if error else None,
            )
        except Exception:
            logger.exception("operation_record_failed", operation=scope.operation)
            return
        _guarded("log", _log_operation, record, scope.extra)
        _guarded("metrics", _observe_metrics, record)
        _guarded("window", self.window.add, record)
        _guarded("oprecord", self.records.enqueue, record)
        if error is not None and error.severity == Severity.CRITICAL:
            _guarded("alert", self.alerts.submit, _alert_for(record, error))


def _success_status(scope: OperationScope, outcome: str | None) -> int | None:
    return None if outcome == "cancelled" else (scope.http_status or 200)


def _guarded(step: str, fn: Callable[..., object], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        with contextlib.suppress(Exception):  # logging itself failed: nothing more to do
            logger.exception("observability_step_failed", step=step)


def _log_unhandled(scope: OperationScope, exc: Exception) -> None:
    # Server-side only: the client gets INTERNAL_ERROR and this line's correlation id.
    logger.error(
        "unhandled_exception",
        operation=scope.operation,
        agent_id=scope.agent_id,
        quote_id=scope.quote_id,
        exc_info=exc,
    )


def _log_operation(record: OperationRecord, extra: dict[str, Any]) -> None:
    if record.error_code is None:
        log = logger.info
    else:
        log = logger.error if record.severity == Severity.CRITICAL else logger.warning
    fields = {key: value for key, value in extra.items() if key != "event"} | {
        "correlation_id": record.correlation_id,
        "operation": record.operation,
        "agent_id": record.agent_id,
        "quote_id": record.quote_id,
        "outcome": record.outcome,
        "error_code": record.error_code,
        "duration_ms": round(record.duration_ms, 3),
        "http_status": record.http_status,
        "severity": record.severity,
    }
    pending = request_log_var.get()
    if pending is not None and "fields" not in pending:
        # Inside an HTTP request: the request's one line carries it (CorrelationMiddleware).
        pending["log"] = log
        pending["fields"] = fields
        return
    log("operation", **fields)


_CHILDREN: dict[tuple[str, str, str], tuple[Any, Any]] = {}
"""The labelled counter and histogram of each (operation, outcome, error code): ``labels()``
takes a lock and rebuilds its key on every call. Bounded: operations and codes are fixed
sets."""


def _observe_metrics(record: OperationRecord) -> None:
    key = (record.operation, record.outcome, record.error_code or "")
    children = _CHILDREN.get(key)
    if children is None:
        children = (
            metrics.OPERATIONS.labels(operation=key[0], outcome=key[1], error_code=key[2]),
            metrics.OPERATION_DURATION.labels(operation=key[0], outcome=key[1]),
        )
        if len(_CHILDREN) < 4096:
            _CHILDREN[key] = children
    children[0].inc()
    children[1].observe(record.duration_ms / 1000)
    if record.error_code == CONFLICT_CODE:
        metrics.VERSION_CONFLICTS.inc()


def _alert_for(record: OperationRecord, error: TripquoteError) -> Alert:
    # The class's fixed message, never the instance's: instance messages may echo client input.
    return Alert(
        error_code=error.code,
        severity=str(error.severity),
        message=type(error).default_message,
        correlation_id=record.correlation_id,
        occurred_at=record.recorded_at,
        operation=record.operation,
        agent_id=record.agent_id,
        quote_id=record.quote_id,
    )
