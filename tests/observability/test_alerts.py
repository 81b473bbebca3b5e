"""Alerts against a real HTTP server: body, signature, Telegram, dedup, retries, never blocking."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from prometheus_client import REGISTRY

from tripquote.errors import QuoteConflictVersion, QuotePersistenceFailed
from tripquote.observability.alerts import Alert, AlertDispatcher
from tripquote.observability.context import correlation_id_var
from tripquote.observability.operations import Observer

TELEGRAM_TOKEN = "123456789:AAE_telegram-test-token-0123456789abcdef"


def sent(channel: str, result: str) -> float:
    return (
        REGISTRY.get_sample_value("tripquote_alerts_total", {"channel": channel, "result": result})
        or 0.0
    )


def make_alert(
    code: str = "QUOTE_PERSISTENCE_FAILED", correlation_id: str = "REQ-ALERT-1"
) -> Alert:
    return Alert(
        error_code=code,
        severity="CRITICAL",
        message="The quote could not be saved.",
        correlation_id=correlation_id,
        occurred_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        operation="quote.update",
        agent_id="agent-1",
        quote_id="quote-1",
    )


class FakeClock:
    """A monotonic clock the test moves by hand (the dedup window without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_webhook_body_and_hmac_signature(
    settings_factory: Any, http_recorder: Any, until: Any
) -> None:
    settings = settings_factory(
        alert_webhook_url=f"{http_recorder.url}/hook",
        alert_webhook_secret="hook-secret",
        environment="development",
    )
    dispatcher = AlertDispatcher(settings, backoff_seconds=0.01)
    before = sent("webhook", "sent")
    await dispatcher.start()
    try:
        dispatcher.submit(make_alert())
        await until(lambda: sent("webhook", "sent") == before + 1)
    finally:
        await dispatcher.stop()

    [request] = http_recorder.requests
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.headers["content-type"] == "application/json"
    timestamp = request.headers["x-tripquote-timestamp"]
    assert timestamp.isdigit()
    # What a receiver computes (README): HMAC-SHA256 of "<timestamp>.<body>" with the secret.
    signed = timestamp.encode() + b"." + request.body
    expected = "sha256=" + hmac.new(b"hook-secret", signed, hashlib.sha256).hexdigest()
    assert request.headers["x-tripquote-signature"] == expected
    assert json.loads(request.body) == {
        "errorCode": "QUOTE_PERSISTENCE_FAILED",
        "severity": "CRITICAL",
        "message": "The quote could not be saved.",
        "correlationId": "REQ-ALERT-1",
        "operation": "quote.update",
        "agentId": "agent-1",
        "quoteId": "quote-1",
        "occurredAt": "2025-01-02T03:04:05+00:00",
        "suppressedSinceLast": 0,
        "service": "tripquote",
        "environment": "development",
    }


async def test_webhook_without_secret_is_unsigned(
    settings_factory: Any, http_recorder: Any, until: Any
) -> None:
    dispatcher = AlertDispatcher(settings_factory(alert_webhook_url=http_recorder.url + "/h"))
    await dispatcher.start()
    dispatcher.submit(make_alert())
    await dispatcher.stop()  # stop() flushes: the alert is delivered before it returns
    [request] = http_recorder.requests
    assert "x-tripquote-signature" not in request.headers


async def test_telegram_send_message(settings_factory: Any, http_recorder: Any, until: Any) -> None:
    settings = settings_factory(
        telegram_bot_token=TELEGRAM_TOKEN,
        telegram_chat_id="-10042",
        telegram_api_base=http_recorder.url,
    )
    dispatcher = AlertDispatcher(settings)
    before = sent("telegram", "sent")
    await dispatcher.start()
    dispatcher.submit(make_alert(code="INTERNAL_ERROR", correlation_id="REQ-TG-7"))
    await until(lambda: sent("telegram", "sent") == before + 1)
    await dispatcher.stop()

    [request] = http_recorder.requests
    assert request.path == f"/bot{TELEGRAM_TOKEN}/sendMessage"
    body = json.loads(request.body)
    assert body["chat_id"] == "-10042"
    assert "INTERNAL_ERROR" in body["text"]
    assert "REQ-TG-7" in body["text"]
    assert "quote.update" in body["text"]
    assert TELEGRAM_TOKEN not in body["text"]


async def test_dedup_suppresses_repeats_and_reports_them_with_the_next_alert(
    settings_factory: Any, http_recorder: Any, until: Any
) -> None:
    clock = FakeClock()
    settings = settings_factory(
        alert_webhook_url=http_recorder.url + "/h", alert_dedup_window_seconds=60
    )
    dispatcher = AlertDispatcher(settings, clock=clock)
    suppressed_before = sent("webhook", "suppressed")
    await dispatcher.start()
    try:
        dispatcher.submit(make_alert(code="DATABASE_TRANSACTION_ABORTED"))
        for _ in range(3):
            clock.now += 10
            dispatcher.submit(make_alert(code="DATABASE_TRANSACTION_ABORTED"))
        dispatcher.submit(make_alert(code="INTERNAL_ERROR"))  # another code: its own window
        await until(lambda: len(http_recorder.requests) == 2)
        assert sent("webhook", "suppressed") == suppressed_before + 3

        clock.now += 60  # the window has passed
        dispatcher.submit(make_alert(code="DATABASE_TRANSACTION_ABORTED"))
        await until(lambda: len(http_recorder.requests) == 3)
    finally:
        await dispatcher.stop()

    bodies = [json.loads(r.body) for r in http_recorder.requests]
    assert [(b["errorCode"], b["suppressedSinceLast"]) for b in bodies] == [
        ("DATABASE_TRANSACTION_ABORTED", 0),
        ("INTERNAL_ERROR", 0),
        ("DATABASE_TRANSACTION_ABORTED", 3),
    ]


async def test_an_alert_no_channel_took_suppresses_nothing_after_it(
    settings_factory: Any, http_recorder: Any, until: Any
) -> None:
    # Both attempts of the first alert fail; a repeat sent meanwhile is suppressed. Once the
    # first has failed, the next repeat within the window is sent, and it counts both the
    # undelivered first one and the suppressed repeat.
    http_recorder.statuses.extend([500, 500])
    settings = settings_factory(
        alert_webhook_url=http_recorder.url + "/h",
        alert_dedup_window_seconds=300,
        alert_max_attempts=2,
    )
    dispatcher = AlertDispatcher(settings, backoff_seconds=0.01, clock=FakeClock())
    before_failed, before_sent = sent("webhook", "failed"), sent("webhook", "sent")
    await dispatcher.start()
    try:
        dispatcher.submit(make_alert(correlation_id="REQ-LOST-1"))
        dispatcher.submit(make_alert(correlation_id="REQ-LOST-2"))  # suppressed
        await until(lambda: sent("webhook", "failed") == before_failed + 1)
        dispatcher.submit(make_alert(correlation_id="REQ-AFTER-1"))  # same window, same clock
        await until(lambda: sent("webhook", "sent") == before_sent + 1)
        dispatcher.submit(make_alert(correlation_id="REQ-AFTER-2"))  # the window holds again
    finally:
        await dispatcher.stop()
    bodies = [json.loads(r.body) for r in http_recorder.requests]
    assert [(b["correlationId"], b["suppressedSinceLast"]) for b in bodies] == [
        ("REQ-LOST-1", 0),
        ("REQ-LOST-1", 0),
        ("REQ-AFTER-1", 2),
    ]


async def test_retries_5xx_with_backoff_then_succeeds(
    settings_factory: Any, http_recorder: Any, until: Any
) -> None:
    http_recorder.statuses.extend([500, 503, 502])
    settings = settings_factory(alert_webhook_url=http_recorder.url + "/h", alert_max_attempts=5)
    dispatcher = AlertDispatcher(settings, backoff_seconds=0.01)
    before_sent, before_failed = sent("webhook", "sent"), sent("webhook", "failed")
    await dispatcher.start()
    dispatcher.submit(make_alert())
    await until(lambda: sent("webhook", "sent") == before_sent + 1)
    await dispatcher.stop()
    assert len(http_recorder.requests) == 4
    assert len({r.body for r in http_recorder.requests}) == 1  # the same alert each attempt
    assert sent("webhook", "failed") == before_failed


async def test_gives_up_after_max_attempts(
    settings_factory: Any, http_recorder: Any, until: Any
) -> None:
    http_recorder.statuses.extend([500] * 10)
    settings = settings_factory(alert_webhook_url=http_recorder.url + "/h", alert_max_attempts=3)
    dispatcher = AlertDispatcher(settings, backoff_seconds=0.01)
    before = sent("webhook", "failed")
    await dispatcher.start()
    dispatcher.submit(make_alert())
    await until(lambda: sent("webhook", "failed") == before + 1)
    await dispatcher.stop()
    assert len(http_recorder.requests) == 3


async def test_client_error_is_not_retried(
    settings_factory: Any, http_recorder: Any, until: Any
) -> None:
    http_recorder.statuses.extend([400, 200])
    dispatcher = AlertDispatcher(
        settings_factory(alert_webhook_url=http_recorder.url + "/h"), backoff_seconds=0.01
    )
    before = sent("webhook", "failed")
    await dispatcher.start()
    dispatcher.submit(make_alert())
    await until(lambda: sent("webhook", "failed") == before + 1)
    await dispatcher.stop()
    assert len(http_recorder.requests) == 1


async def test_track_returns_before_the_hanging_channel_answers(
    settings_factory: Any, http_recorder: Any, until: Any
) -> None:
    """The request path never waits for a channel: the server is still holding the alert."""
    http_recorder.gate = asyncio.Event()
    settings = settings_factory(
        alert_webhook_url=http_recorder.url + "/h",
        telegram_bot_token=TELEGRAM_TOKEN,
        telegram_chat_id="1",
        telegram_api_base=http_recorder.url,
    )
    observer = Observer(settings)
    await observer.alerts.start()
    before = sent("webhook", "sent")
    token = correlation_id_var.set("REQ-HANGING-1")
    try:
        with pytest.raises(QuotePersistenceFailed):
            async with observer.track("quote.update", agent_id="a-1") as scope:
                scope.quote_id = "q-1"
                raise QuotePersistenceFailed()
        http_recorder.events.append("track_returned")
    finally:
        correlation_id_var.reset(token)

    await until(lambda: len(http_recorder.requests) == 2)  # both channels reached, both held
    assert http_recorder.events == ["track_returned", "server_received", "server_received"]
    assert sent("webhook", "sent") == before
    http_recorder.gate.set()
    await until(lambda: sent("webhook", "sent") == before + 1)
    await observer.alerts.stop()
    webhook = next(r for r in http_recorder.requests if r.path == "/h")
    body = json.loads(webhook.body)
    assert (body["correlationId"], body["quoteId"], body["agentId"]) == (
        "REQ-HANGING-1",
        "q-1",
        "a-1",
    )


async def test_track_returns_while_the_channel_is_down(
    settings_factory: Any, closed_port: int, until: Any
) -> None:
    settings = settings_factory(
        alert_webhook_url=f"http://127.0.0.1:{closed_port}/h", alert_max_attempts=3
    )
    observer = Observer(settings, alert_backoff_seconds=0.01)
    await observer.alerts.start()
    before, suppressed = sent("webhook", "failed"), sent("webhook", "suppressed")
    done: list[str] = []
    for _ in range(2):
        with pytest.raises(QuotePersistenceFailed):
            async with observer.track("quote.send"):
                raise QuotePersistenceFailed()
        done.append("track_returned")
    assert done == ["track_returned", "track_returned"]
    assert sent("webhook", "failed") == before  # nothing attempted yet: still queued
    assert sent("webhook", "suppressed") == suppressed + 1  # the repeat, within the window
    await until(lambda: sent("webhook", "failed") == before + 1)
    await observer.alerts.stop()


async def test_non_critical_errors_do_not_alert(settings_factory: Any, http_recorder: Any) -> None:
    observer = Observer(settings_factory(alert_webhook_url=http_recorder.url + "/h"))
    await observer.alerts.start()
    with pytest.raises(QuoteConflictVersion):
        async with observer.track("quote.update"):
            raise QuoteConflictVersion()
    await observer.alerts.stop()
    assert http_recorder.requests == []


async def test_no_channels_configured_is_a_no_op(settings_factory: Any) -> None:
    dispatcher = AlertDispatcher(settings_factory())
    await dispatcher.start()
    dispatcher.submit(make_alert())
    await dispatcher.stop()
    assert dispatcher.channels == []
