"""Observer.track and error_rendered: outcomes, one count per error, guarded side effects."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tripquote.errors import InternalError, NotFound, QuoteConflictVersion, QuoteValidationFailed
from tripquote.observability.context import correlation_id_var
from tripquote.observability.operations import Observer
from tripquote.observability.summary import ROLLBACK_OPERATION, OperationRecord, RollingWindow


def ops_total(operation: str, outcome: str, code: str = "") -> float:
    labels = {"operation": operation, "outcome": outcome, "error_code": code}
    return REGISTRY.get_sample_value("tripquote_operations_total", labels) or 0.0


def records(observer: Observer) -> list[OperationRecord]:
    return list(observer.window._records)


@pytest.fixture
def observer(settings_factory: Any) -> Observer:
    return Observer(settings_factory())


async def test_success_records_ids_learned_during_the_operation(observer: Observer) -> None:
    token = correlation_id_var.set("REQ-OPS-1")
    try:
        async with observer.track("ops_test_create", agent_id="agent-1") as scope:
            scope.quote_id = "quote-9"
            scope.http_status = 201
    finally:
        correlation_id_var.reset(token)
    [record] = records(observer)
    assert (record.operation, record.outcome, record.error_code) == (
        "ops_test_create",
        "success",
        None,
    )
    assert (record.agent_id, record.quote_id, record.http_status) == ("agent-1", "quote-9", 201)
    assert record.correlation_id == "REQ-OPS-1"
    assert record.duration_ms >= 0
    assert observer.records.pending == 1  # queued for the writer, which is not started here
    assert ops_total("ops_test_create", "success") >= 1


async def test_tripquote_error_is_reraised_unchanged_with_its_code(observer: Observer) -> None:
    before = ops_total("ops_test_update", "error", "QUOTE_CONFLICT_VERSION")
    conflicts = REGISTRY.get_sample_value("tripquote_version_conflicts_total") or 0.0
    error = QuoteConflictVersion(details={"quoteId": "q"})
    with pytest.raises(QuoteConflictVersion) as raised:
        async with observer.track("ops_test_update"):
            raise error
    assert raised.value is error
    [record] = records(observer)
    assert (record.outcome, record.error_code, record.http_status, record.severity) == (
        "error",
        "QUOTE_CONFLICT_VERSION",
        409,
        "HIGH",
    )
    assert ops_total("ops_test_update", "error", "QUOTE_CONFLICT_VERSION") == before + 1
    assert REGISTRY.get_sample_value("tripquote_version_conflicts_total") == conflicts + 1


async def test_unexpected_exception_becomes_internal_error_from_it(observer: Observer) -> None:
    with pytest.raises(InternalError) as raised:
        async with observer.track("ops_test_boom"):
            raise KeyError("secret internals")
    assert isinstance(raised.value.__cause__, KeyError)
    assert "secret internals" not in raised.value.message
    [record] = records(observer)
    assert (record.outcome, record.error_code, record.http_status) == (
        "error",
        "INTERNAL_ERROR",
        500,
    )


async def test_error_handler_does_not_count_a_tracked_error_twice(observer: Observer) -> None:
    before = ops_total("ops_test_twice", "error", "QUOTE_VALIDATION_FAILED")
    with pytest.raises(QuoteValidationFailed) as raised:
        async with observer.track("ops_test_twice"):
            raise QuoteValidationFailed()
    observer.error_rendered(raised.value)  # what the app's error handler does next
    assert ops_total("ops_test_twice", "error", "QUOTE_VALIDATION_FAILED") == before + 1
    assert len(records(observer)) == 1


async def test_error_handler_counts_untracked_errors_once(observer: Observer) -> None:
    before = ops_total("request", "error", "NOT_FOUND")
    error = NotFound()
    observer.error_rendered(error)
    observer.error_rendered(error)
    assert ops_total("request", "error", "NOT_FOUND") == before + 1
    [record] = records(observer)
    assert (record.operation, record.http_status, record.severity) == ("request", 404, "LOW")


async def test_cancellation_is_recorded_and_propagates(observer: Observer) -> None:
    started = asyncio.Event()

    async def slow() -> None:
        async with observer.track("ops_test_cancel"):
            started.set()
            await asyncio.Event().wait()

    task = asyncio.create_task(slow())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [record] = records(observer)
    assert (record.outcome, record.error_code) == ("cancelled", None)


class BrokenWindow(RollingWindow):
    def add(self, record: OperationRecord) -> None:
        raise RuntimeError("window broken")


async def test_a_failing_side_effect_never_fails_the_operation(observer: Observer) -> None:
    observer.window = BrokenWindow()
    before = ops_total("ops_test_guarded", "success")
    async with observer.track("ops_test_guarded"):
        pass
    assert ops_total("ops_test_guarded", "success") == before + 1  # later steps still ran
    assert observer.records.pending == 1


async def test_rollback_inside_a_save_is_attributed_and_rated(observer: Observer) -> None:
    before = (
        REGISTRY.get_sample_value("tripquote_db_rollbacks_total", {"reason": "DATABASE_TIMEOUT"})
        or 0.0
    )
    retries = REGISTRY.get_sample_value("tripquote_db_retries_total") or 0.0
    async with observer.track("quote.update", agent_id="agent-r") as scope:
        scope.quote_id = "quote-r"
        observer.db_rollback("DATABASE_TIMEOUT")
        observer.db_retry()
    async with observer.track("quote.update"):
        pass
    assert (
        REGISTRY.get_sample_value("tripquote_db_rollbacks_total", {"reason": "DATABASE_TIMEOUT"})
        == before + 1
    )
    assert REGISTRY.get_sample_value("tripquote_db_retries_total") == retries + 1
    rollback = observer.records._queue.get_nowait()
    assert (rollback.operation, rollback.outcome, rollback.error_code) == (
        ROLLBACK_OPERATION,
        "rollback",
        "DATABASE_TIMEOUT",
    )
    assert (rollback.agent_id, rollback.quote_id) == ("agent-r", "quote-r")
    summary = observer.summary()
    assert summary["saves"]["count"] == 2
    assert summary["rollbackRate"] == 0.5
    assert ROLLBACK_OPERATION not in summary["operations"]


async def test_window_keeps_the_last_thousand(observer: Observer) -> None:
    for _ in range(1005):
        async with observer.track("ops_test_many"):
            pass
    assert len(observer.window) == 1000
    assert observer.summary()["window"]["size"] == 1000
