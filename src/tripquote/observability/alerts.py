"""Alerts for CRITICAL errors the system caused: a generic JSON webhook and Telegram, sent off
the request path.

``submit`` (called from the request path) only filters, de-duplicates and enqueues. It drops
the codes whose class does not ``alerts_each`` (errors.py): CRITICAL codes a caller causes at
will (QUOTE_ALREADY_SENT, ITEMS_INCONSISTENT) are counted in ``tripquote_operations_total`` and
alert by rate through Prometheus (ops/prometheus/alerts.yml), never one by one. A background task
delivers each alert to every configured channel with retries (exponential backoff, full jitter,
at most ``settings.alert_max_attempts`` attempts). Repeats of one error code within
``settings.alert_dedup_window_seconds`` are suppressed and their count rides on the next alert;
an alert that no channel took (every attempt failed) suppresses nothing: the next repeat of its
code is sent, counting the undelivered one and what it carried. De-duplication is per process:
with ``serve --workers N`` each worker sends the first alert of a code in a window.
Alerts carry codes, ids and fixed messages only: no secrets, no client personal data.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import httpx
import structlog
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from tripquote.errors import ERRORS_BY_CODE
from tripquote.observability import metrics
from tripquote.observability.bounds import (
    CORRELATION_CHARS,
    FIELD_CHARS,
    ID_CHARS,
    bound_attributes,
)

if TYPE_CHECKING:
    from tripquote.config import Settings

logger = structlog.get_logger("tripquote.alerts")

SIGNATURE_HEADER = "X-Tripquote-Signature"
TIMESTAMP_HEADER = "X-Tripquote-Timestamp"


@dataclass(frozen=True, slots=True)
class Alert:
    """One CRITICAL error, as captured on the request path (ids, never payloads; bounded)."""

    error_code: str
    severity: str
    message: str
    correlation_id: str
    occurred_at: datetime
    operation: str | None = None
    agent_id: str | None = None
    quote_id: str | None = None
    suppressed_since_last: int = 0

    def __post_init__(self) -> None:
        # Ids may come from the URL: bounded here, once, for every channel and log line.
        bound_attributes(self, _BOUNDS)


_BOUNDS = (
    ("error_code", ID_CHARS),
    ("severity", ID_CHARS),
    ("message", FIELD_CHARS),
    ("correlation_id", CORRELATION_CHARS),
    ("operation", ID_CHARS),
    ("agent_id", ID_CHARS),
    ("quote_id", ID_CHARS),
)


class DeliveryFailed(Exception):
    """A channel refused an alert; ``retryable`` for 429/5xx, not for other statuses."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retryable = status == 429 or status >= 500


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, DeliveryFailed):
        return exc.retryable
    return isinstance(exc, httpx.TransportError)


def _raise_for_status(response: httpx.Response) -> None:
    # Not response.raise_for_status(): its message holds the URL (the Telegram one has the token).
    if not response.is_success:
        raise DeliveryFailed(response.status_code)


class Channel(Protocol):
    """Somewhere alerts go; ``deliver`` raises on failure."""

    name: str

    async def deliver(self, client: httpx.AsyncClient, alert: Alert) -> None: ...


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Tripquote-Signature`` header value: ``sha256=`` and the hex HMAC-SHA256 (RFC
    2104), keyed with the webhook secret, of ``<X-Tripquote-Timestamp>.<body bytes>``. The
    timestamp (Unix seconds) is signed with the body, so a receiver that refuses old ones
    refuses replays."""
    message = timestamp.encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


class WebhookChannel:
    """POST a JSON body to a URL, HMAC-signed when a secret is configured."""

    name = "webhook"

    def __init__(self, url: str, *, secret: str | None, environment: str) -> None:
        self.url = url
        self._secret = secret
        self._environment = environment

    def body(self, alert: Alert) -> bytes:
        """The exact JSON bytes sent (and signed)."""
        payload: dict[str, Any] = {
            "errorCode": alert.error_code,
            "severity": alert.severity,
            "message": alert.message,
            "correlationId": alert.correlation_id,
            "operation": alert.operation,
            "agentId": alert.agent_id,
            "quoteId": alert.quote_id,
            "occurredAt": alert.occurred_at.isoformat(),
            "suppressedSinceLast": alert.suppressed_since_last,
            "service": "tripquote",
            "environment": self._environment,
        }
        return json.dumps(payload, separators=(",", ":")).encode()

    async def deliver(self, client: httpx.AsyncClient, alert: Alert) -> None:
        """POST the alert; raises DeliveryFailed or httpx.TransportError."""
        body = self.body(alert)
        timestamp = str(int(time.time()))
        headers = {"Content-Type": "application/json", TIMESTAMP_HEADER: timestamp}
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, timestamp, body)
        _raise_for_status(await client.post(self.url, content=body, headers=headers))


class TelegramChannel:
    """Telegram Bot API ``sendMessage`` with a plain-text message."""

    name = "telegram"

    def __init__(self, api_base: str, *, token: str, chat_id: str, environment: str) -> None:
        self._url = f"{api_base.rstrip('/')}/bot{token}/sendMessage"
        self._chat_id = chat_id
        self._environment = environment

    def text(self, alert: Alert) -> str:
        """The message: code, severity, operation, ids, time and suppressed repeats."""
        lines = [
            f"[tripquote {self._environment}] {alert.severity} {alert.error_code}",
            alert.message,
            f"correlation id: {alert.correlation_id}",
            f"operation: {alert.operation or '-'}",
        ]
        if alert.quote_id or alert.agent_id:
            lines.append(f"quote: {alert.quote_id or '-'}  agent: {alert.agent_id or '-'}")
        lines.append(f"at: {alert.occurred_at.isoformat()}")
        if alert.suppressed_since_last:
            lines.append(f"repeats suppressed since last alert: {alert.suppressed_since_last}")
        return "\n".join(lines)

    async def deliver(self, client: httpx.AsyncClient, alert: Alert) -> None:
        """POST sendMessage; raises DeliveryFailed or httpx.TransportError."""
        body = {"chat_id": self._chat_id, "text": self.text(alert)}
        _raise_for_status(await client.post(self._url, json=body))


def channels_from_settings(settings: Settings) -> list[Channel]:
    """The channels configured in ``settings`` (webhook, Telegram), possibly none."""
    found: list[Channel] = []
    if settings.alert_webhook_url:
        secret = settings.alert_webhook_secret
        found.append(
            WebhookChannel(
                settings.alert_webhook_url.get_secret_value(),
                secret=secret.get_secret_value() if secret else None,
                environment=settings.environment,
            )
        )
    if settings.telegram_bot_token and settings.telegram_chat_id:
        found.append(
            TelegramChannel(
                settings.telegram_api_base,
                token=settings.telegram_bot_token.get_secret_value(),
                chat_id=settings.telegram_chat_id,
                environment=settings.environment,
            )
        )
    return found


def _alerts_each(error_code: str) -> bool:
    # An unknown code (none today) is sent: a missed page costs more than a needless one.
    error = ERRORS_BY_CODE.get(error_code)
    return error is None or error.alerts_each()


@dataclass
class _Dedup:
    sent_at: float
    alert: Alert | None = None  # the alert enqueued when the window opened
    suppressed: int = 0
    failed: int = 0  # channels of that alert that gave up


def _count(channel: str, result: str) -> None:
    with contextlib.suppress(Exception):
        metrics.ALERTS.labels(channel=channel, result=result).inc()


class AlertDispatcher:
    """De-duplicates CRITICAL errors per code and delivers them in the background."""

    def __init__(
        self,
        settings: Settings,
        *,
        channels: Sequence[Channel] | None = None,
        backoff_seconds: float = 0.5,
        max_backoff_seconds: float = 30.0,
        timeout_seconds: float = 5.0,
        queue_size: int = 1000,
        max_concurrency: int = 8,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.channels = list(channels) if channels is not None else channels_from_settings(settings)
        self._max_attempts = settings.alert_max_attempts
        self._dedup_window = settings.alert_dedup_window_seconds
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._timeout = timeout_seconds
        self._clock = clock
        self._queue: asyncio.Queue[Alert] = asyncio.Queue(queue_size)
        self._slots = asyncio.Semaphore(max_concurrency)
        self._dedup: dict[str, _Dedup] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None
        self._worker: asyncio.Task[None] | None = None

    def submit(self, alert: Alert) -> None:
        """Filter, de-duplicate and enqueue ``alert`` without waiting (request path; never
        raises)."""
        if not self.channels or not _alerts_each(alert.error_code):
            return
        now = self._clock()
        seen = self._dedup.get(alert.error_code)
        if seen is not None and now - seen.sent_at < self._dedup_window:
            seen.suppressed += 1
            for channel in self.channels:
                _count(channel.name, "suppressed")
            return
        suppressed = seen.suppressed if seen is not None else 0
        alert = replace(alert, suppressed_since_last=suppressed)
        self._dedup[alert.error_code] = _Dedup(sent_at=now, alert=alert)
        try:
            self._queue.put_nowait(alert)
        except asyncio.QueueFull:
            self._reopen(alert)
            for channel in self.channels:
                _count(channel.name, "failed")
            logger.warning("alert_queue_full", error_code=alert.error_code)

    def _reopen(self, alert: Alert, *, channel_failed: bool = False) -> None:
        """Close the dedup window ``alert`` opened when it reached none of the channels (every
        channel failed, or it was never queued). What it did not deliver is owed to the next
        one: itself, the repeats it carried and those suppressed in its window."""
        seen = self._dedup.get(alert.error_code)
        if seen is None or seen.alert is not alert:
            return  # a later alert of the code opened its own window since
        seen.failed += channel_failed
        if not channel_failed or seen.failed == len(self.channels):
            seen.sent_at = float("-inf")
            seen.alert = None
            seen.suppressed += alert.suppressed_since_last + 1

    async def start(self) -> None:
        """Open the HTTP client and start the delivery worker."""
        if not self.channels:
            return
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self._timeout, connect=min(self._timeout, 3.0)),
            follow_redirects=False,
        )
        self._worker = asyncio.create_task(self._run(self._client), name="tripquote-alerts")

    async def stop(self, *, timeout_seconds: float = 5.0) -> None:
        """Deliver pending alerts (at most ``timeout_seconds``), then close the client."""
        if self._worker is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout_seconds):
                    await self._queue.join()
                    while self._deliveries:
                        await asyncio.wait(set(self._deliveries))
            self._worker.cancel()
            for task in list(self._deliveries):
                task.cancel()
            await asyncio.gather(self._worker, *self._deliveries, return_exceptions=True)
            self._worker = None
        while not self._queue.empty():
            self._queue.get_nowait()
            self._queue.task_done()
            for channel in self.channels:
                _count(channel.name, "failed")
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _run(self, client: httpx.AsyncClient) -> None:
        while True:
            alert = await self._queue.get()
            try:
                for channel in self.channels:
                    await self._slots.acquire()
                    task = asyncio.create_task(self._deliver(client, channel, alert))
                    self._deliveries.add(task)
                    task.add_done_callback(self._deliveries.discard)
            finally:
                self._queue.task_done()

    async def _deliver(self, client: httpx.AsyncClient, channel: Channel, alert: Alert) -> None:
        fields = asdict(alert) | {"channel": channel.name}
        del fields["occurred_at"], fields["message"]
        try:
            retrying = AsyncRetrying(
                stop=stop_after_attempt(self._max_attempts),
                wait=wait_random_exponential(multiplier=self._backoff, max=self._max_backoff),
                retry=retry_if_exception(_is_retryable),
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    await channel.deliver(client, alert)
        except asyncio.CancelledError:
            _count(channel.name, "failed")
            logger.warning("alert_abandoned", **fields)
            raise
        except Exception as exc:
            _count(channel.name, "failed")
            self._reopen(alert, channel_failed=True)
            logger.warning(
                "alert_failed",
                error_type=type(exc).__name__,
                status=getattr(exc, "status", None),
                **fields,
            )
        else:
            _count(channel.name, "sent")
            logger.info("alert_sent", **fields)
        finally:
            self._slots.release()
