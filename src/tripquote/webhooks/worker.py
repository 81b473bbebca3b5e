"""The delivery worker: sends the outbox's events on the Standard Webhooks spec.

Each pass of a worker task: fan the committed events out to deliveries (``sql.FAN_OUT``, its
own statement: the saves write only their event), then one transaction
(``TransactionRunner.run_store``) that claims up to ``TRIPQUOTE_WEBHOOK_WORKER_BATCH_SIZE``
due deliveries (``sql.CLAIM``, ``FOR UPDATE SKIP LOCKED``, at most one per quote and
subscription), POSTs them all at once (the HTTP client keeps its connections alive) and
records every attempt in one statement (``sql.RECORD``). Before each pass a worker yields to
the database's other work (``yield_to_other_work``: while saves run, it waits, at most
``TRIPQUOTE_WEBHOOK_WORKER_YIELD_SECONDS`` in a row). Headers (standardwebhooks.com):
``webhook-id`` (the event id: the same on every attempt and replay, so receivers
de-duplicate), ``webhook-timestamp`` (the attempt, Unix seconds) and ``webhook-signature``
(``v1,<base64 HMAC-SHA256>`` by the PyPI ``standardwebhooks`` library; during a secret
rotation, space-separated signatures by both secrets).

A 2xx is delivered; 410 Gone disables the subscription (its deliveries wait until it is
enabled again); anything else — another status, a timeout, a refused connection, a URL no
longer allowed — is retried after ``retry_delay`` and dead-lettered after
``TRIPQUOTE_WEBHOOK_MAX_ATTEMPTS`` attempts. The response body is never read.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import structlog
from standardwebhooks import Webhook

from tripquote.config import Settings, webhook_attempt_seconds
from tripquote.db.transaction import TransactionRunner, Tx
from tripquote.errors import TripquoteError, WebhookUrlRefused
from tripquote.json import dumps
from tripquote.observability import metrics
from tripquote.quotes.serialize import fmt_instant
from tripquote.webhooks import sql, urls

_logger = structlog.get_logger("tripquote.webhooks")

IDLE_POLL_SECONDS = 0.5
"""How long a worker task waits before looking again when nothing was due."""

BUSY_CHECK_SECONDS = 0.1
"""How often a worker process looks whether the database is busy with other work."""

QUIET_SECONDS = 0.5
"""How long no other work must have been seen for the database to count as quiet again."""

BUSY_ACTIVE = 2
"""Other connections at work at once that make the database busy."""

CLAIM_WINDOW = 8
"""A claim looks for its batch among the first ``CLAIM_WINDOW`` times batch size due ones
(those other workers hold, or that wait behind their quote's earlier one, are passed over)."""

LINGER_SECONDS = 0.2
"""How long a worker task waits after a batch that was not full: what comes meanwhile goes in
the next batch (fewer, larger transactions beside a burst of saves; the lag grows by it)."""


def retry_delay(attempts: int, settings: Settings, jitter: float | None = None) -> float:
    """Seconds before the next attempt after ``attempts`` failed ones (1, 2, …):
    ``min(BASE * 4^(attempts-1), MAX)`` times a jitter in [0.8, 1.2) (``jitter``: that factor,
    else random). With the defaults (5 s, 10 h): 5 s, 20 s, 80 s, 5.3 min, 21 min, 85 min,
    5.7 h, then 10 h."""
    exponent = min(attempts - 1, 64)
    delay = min(
        settings.webhook_retry_base_seconds * 4**exponent, settings.webhook_retry_max_seconds
    )
    factor = jitter if jitter is not None else random.uniform(0.8, 1.2)  # noqa: S311 (not crypto)
    return float(delay * factor)


def payload(row: Any) -> bytes:
    """The request body of the event in ``row``: ``{type, timestamp, data: {eventId, agencyId,
    quoteId, version, actor, correlationId, quote}}``, ``quote`` the version's snapshot as
    stored (its text kept: amounts stay exact decimal strings)."""
    return dumps(
        {
            "type": row["type"],
            "timestamp": fmt_instant(row["occurred_at"]),
            "data": {
                "eventId": row["event_id"],
                "agencyId": row["agency_id"],
                "quoteId": row["quote_id"],
                "version": row["version"],
                "actor": row["actor"],
                "correlationId": row["correlation_id"],
                "quote": orjson.Fragment(row["data"]),
            },
        }
    )


def signature(row: Any, body: bytes, at: datetime) -> str:
    """``webhook-signature``: ``v1,<base64>`` by the secret, and by the previous one while
    its overlap lasts (space-separated, as the spec allows)."""
    signatures = [Webhook(row["secret"]).sign(row["event_id"], at, body)]
    previous, until = row["previous_secret"], row["previous_secret_expires_at"]
    if previous is not None and until is not None and at < until:
        signatures.append(Webhook(previous).sign(row["event_id"], at, body))
    return " ".join(signatures)


@dataclass(frozen=True, slots=True)
class Attempt:
    """What one attempt got: an HTTP status (None if none came) or the error's name."""

    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def delivered(self) -> bool:
        """A 2xx answer."""
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def gone(self) -> bool:
        """410 Gone: the endpoint is gone for good."""
        return self.status_code == 410


class DeliveryWorker:
    """Delivers pending webhooks; any number of these may run, in any number of processes."""

    def __init__(
        self,
        *,
        runner: TransactionRunner,
        settings: Settings,
        client: httpx.AsyncClient,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.runner = runner
        self.settings = settings
        self.client = client
        self.clock = clock or (lambda: datetime.now(UTC))
        self.production = settings.environment == "production"
        self._own_pids: set[int] = set()  # the connections this worker used
        self._checked_at = -1e9
        self._busy_at = -1e9
        self._yielding_since: float | None = None
        self._checking = asyncio.Lock()

    async def fan_out(self) -> int:
        """One fan-out pass (``sql.LOCK_SUBSCRIPTIONS``, then ``sql.FAN_OUT``, one
        transaction): the deliveries of the events committed since the last, for every enabled
        subscription no other worker is fanning out; how many deliveries it wrote."""

        async def work(tx: Tx) -> int:
            self._own_pids.add(tx.driver.get_server_pid())
            locked = await tx.fetch(sql.LOCK_SUBSCRIPTIONS, {})
            if not locked:
                return 0
            row = await tx.fetchrow(
                sql.FAN_OUT,
                {
                    "subscription_ids": [w["id"] for w in locked],
                    "low": min(w["fanned_out_to"] for w in locked),
                    "horizon": locked[0]["horizon"],
                    "now": self.clock(),
                },
            )
            return int(row["deliveries"])

        return await self.runner.run_store(work, atomic=True)

    async def deliver_batch(self) -> int:
        """Claim up to ``webhook_worker_batch_size`` due deliveries, send them at once and
        record their attempts, in one transaction; how many attempts (0: none was due)."""

        async def work(tx: Tx) -> int:
            self._own_pids.add(tx.driver.get_server_pid())
            rows = await tx.fetch(
                sql.CLAIM,
                {
                    "now": self.clock(),
                    "batch": self.settings.webhook_worker_batch_size,
                    "window": self.settings.webhook_worker_batch_size * CLAIM_WINDOW,
                },
            )
            if not rows:
                return 0
            attempts = await asyncio.gather(*(self._send(row) for row in rows))
            now = self.clock()
            recorded = await tx.fetch(
                sql.RECORD,
                {
                    "delivery_ids": [row["id"] for row in rows],
                    "created_ats": [row["created_at"] for row in rows],
                    "status_codes": [a.status_code for a in attempts],
                    "durations_ms": [round(a.duration_ms, 3) for a in attempts],  # to the µs
                    "errors": [a.error for a in attempts],
                    "delivered": [a.delivered for a in attempts],
                    "gone": [a.gone for a in attempts],
                    "next_attempts_at": [
                        now + timedelta(seconds=retry_delay(row["attempts"] + 1, self.settings))
                        for row in rows
                    ],
                    "now": now,
                    "max_attempts": self.settings.webhook_max_attempts,
                },
            )
            statuses = {r["id"]: r["status"] for r in recorded}
            for row, attempt in zip(rows, attempts, strict=True):
                self._observe(row, attempt, statuses[row["id"]], now)
            return len(rows)

        return await self.runner.run_store(work, atomic=True)

    async def _send(self, row: Any) -> Attempt:
        body = payload(row)
        started = time.perf_counter()
        at = self.clock()
        try:
            signed = signature(row, body, at)
        except (ValueError, RuntimeError):  # a secret that is not whsec_ base64 (edited by hand)
            return Attempt(None, "invalid_secret", _ms_since(started))
        try:
            # The whole attempt, the name's resolution included (production: a DNS server that
            # hangs would otherwise outlive the batch's transaction and nothing be recorded).
            async with asyncio.timeout(webhook_attempt_seconds(self.settings)):
                target = await urls.target(row["url"], production=self.production)
                headers = {
                    "content-type": "application/json",
                    "user-agent": "tripquote-webhooks",
                    "webhook-id": row["event_id"],
                    "webhook-timestamp": str(int(at.timestamp())),
                    "webhook-signature": signed,
                }
                if target.host_header is not None:
                    headers["host"] = target.host_header
                sni = target.sni_hostname
                extensions = {"sni_hostname": sni} if sni else None
                request = self.client.build_request(
                    "POST", target.url, content=body, headers=headers, extensions=extensions
                )
                response = await self.client.send(request, stream=True)  # body never read
                await response.aclose()
            return Attempt(response.status_code, None, _ms_since(started))
        except WebhookUrlRefused:
            return Attempt(None, "url_refused", _ms_since(started))
        except (httpx.TimeoutException, TimeoutError):
            return Attempt(None, "timeout", _ms_since(started))
        except httpx.HTTPError as error:
            return Attempt(None, type(error).__name__, _ms_since(started))

    def _observe(self, row: Any, attempt: Attempt, status: str, now: datetime) -> None:
        result = (
            "delivered"
            if attempt.delivered
            else "gone"
            if attempt.gone
            else "dead"
            if status == "dead"
            else "retry"
        )
        metrics.WEBHOOK_ATTEMPTS.labels(result=result).inc()
        if status != "pending":
            metrics.WEBHOOK_DELIVERIES.labels(result=status).inc()
        if attempt.delivered:
            lag = (now - row["occurred_at"]).total_seconds()
            metrics.WEBHOOK_LAG.observe(max(lag, 0.0))
        _logger.info(
            "webhook_attempt",
            delivery_id=row["id"],
            event_id=row["event_id"],
            subscription_id=row["subscription_id"],
            quote_id=row["quote_id"],
            version=row["version"],
            attempt=row["attempts"] + 1,
            result=result,
            status_code=attempt.status_code,
            error=attempt.error,
            duration_ms=round(attempt.duration_ms, 1),
        )

    async def run(self, stop: asyncio.Event, *, concurrency: int | None = None) -> None:
        """Deliver until ``stop`` is set, with ``concurrency`` tasks (default
        ``TRIPQUOTE_WEBHOOK_WORKER_CONCURRENCY``; one database connection each, each sending a
        batch at once; the first also fans out before each of its batches); a database error is
        logged and waited out."""
        tasks = [
            asyncio.create_task(self._loop(stop, fans_out=n == 0))
            for n in range(concurrency or self.settings.webhook_worker_concurrency)
        ]
        gathered = asyncio.gather(*tasks)
        stopped = asyncio.ensure_future(stop.wait())
        try:
            either: set[asyncio.Future[Any]] = {gathered, stopped}
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
            if not gathered.done():
                # Stopping: each task ends after what it is doing, at most one attempt's whole
                # time later; then it is cancelled (a claimed batch rolls back and is sent
                # again later: at least once). A database that does not answer (reconnects
                # retried for seconds) no longer holds the stop back: 19 s before.
                await asyncio.wait({gathered}, timeout=self.settings.webhook_timeout_seconds + 1)
            if gathered.done():
                gathered.result()  # a task's exception, raised
        finally:
            stopped.cancel()
            gathered.cancel()  # and each task
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await gathered  # retrieved: a task's exception was raised above already

    async def yield_to_other_work(self, stop: asyncio.Event) -> None:
        """Wait while the database is busy with other work (saves): at least ``BUSY_ACTIVE``
        connections that are not a delivery worker's running statements now or in the last
        half second (``sql.OTHERS_ACTIVE``), seen within ``QUIET_SECONDS``; at most
        ``webhook_worker_yield_seconds`` in a row (then deliveries go on beside it until it
        is quiet once). Deliveries are asynchronous: under a burst of saves their lag grows
        instead of the saves' time. ``0`` seconds: never waits."""
        limit = self.settings.webhook_worker_yield_seconds
        while limit > 0 and not stop.is_set():
            if not await self._busy():
                self._yielding_since = None
                return
            now = time.monotonic()
            if self._yielding_since is None:
                self._yielding_since = now
            if now - self._yielding_since >= limit:
                return  # waited long enough: deliver beside the load until it is quiet
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), BUSY_CHECK_SECONDS)

    async def _busy(self) -> bool:
        """Whether other work was seen running in the database within ``QUIET_SECONDS``."""
        async with self._checking:  # one look per process at a time, at most every 0.1 s
            now = time.monotonic()
            if now - self._checked_at >= BUSY_CHECK_SECONDS:
                self._checked_at = now

                async def work(tx: Tx) -> int:
                    self._own_pids.add(tx.driver.get_server_pid())
                    row = await tx.fetchrow(sql.OTHERS_ACTIVE, {"own": list(self._own_pids)})
                    return int(row["active"])

                if await self.runner.run_store(work, atomic=False, write=False) >= BUSY_ACTIVE:
                    self._busy_at = now
            return now - self._busy_at < QUIET_SECONDS

    async def _loop(self, stop: asyncio.Event, *, fans_out: bool) -> None:
        while not stop.is_set():
            try:
                await self.yield_to_other_work(stop)
                if fans_out:  # one task of each process: the others would find them locked
                    await self.fan_out()
                sent = await self.deliver_batch()
            except TripquoteError as error:
                _logger.warning("webhook_worker_database_error", error_code=error.code)
                sent = 0
            except Exception:  # a bug: logged, and this task goes on with the next batch
                _logger.exception("webhook_worker_error")
                sent = 0
            if sent >= self.settings.webhook_worker_batch_size:
                continue  # more may be due now
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), LINGER_SECONDS if sent else IDLE_POLL_SECONDS)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def http_client(settings: Settings) -> httpx.AsyncClient:
    """The worker's HTTP client: ``webhook_attempt_seconds`` for connect, each read and write
    (and for the whole attempt, ``DeliveryWorker._send``), no redirects followed (a 3xx is a
    failed attempt), no proxies from the environment; as many connections, kept alive, as the
    process has requests in flight (its tasks times the batch size)."""
    in_flight = settings.webhook_worker_concurrency * settings.webhook_worker_batch_size
    return httpx.AsyncClient(
        timeout=httpx.Timeout(webhook_attempt_seconds(settings)),
        limits=httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight),
        follow_redirects=False,
        trust_env=False,
    )
