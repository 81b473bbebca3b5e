"""``tripquote webhooks …``: the delivery worker, replay and the retention purge."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer

webhooks_app = typer.Typer(help="Webhook deliveries (Standard Webhooks).")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]

PURGE_EVERY_SECONDS = 3600.0
"""How often a running worker purges delivered rows past their retention."""


@webhooks_app.callback()
def _webhooks() -> None:
    """Webhook deliveries (Standard Webhooks)."""


def _instant(value: str, option: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(
            f"{option}: an ISO 8601 instant, e.g. 2026-12-05T10:00:00Z"
        ) from None
    if parsed.tzinfo is None:
        raise typer.BadParameter(f"{option}: give the offset, e.g. Z or +01:00")
    return parsed


@webhooks_app.command("run")
def run(
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, max=64, help="Delivery tasks (TRIPQUOTE_WEBHOOK_WORKER_CONCURRENCY)."),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(min=1, max=65535, help="Serve this worker's metrics on 127.0.0.1:PORT."),
    ] = None,
) -> None:
    """Deliver pending webhooks until SIGTERM or SIGINT (any number of workers, on any number
    of hosts, may run at once); delivered rows past TRIPQUOTE_WEBHOOK_RETENTION_HOURS are
    purged once an hour."""
    from tripquote.cli import _with_runner, cli_settings
    from tripquote.observability.logging import configure_logging
    from tripquote.webhooks.sql import WORKER_APPLICATION
    from tripquote.webhooks.worker import DeliveryWorker, http_client

    settings = cli_settings().model_copy(update={"db_application_name": WORKER_APPLICATION})
    if concurrency is not None:  # the HTTP client's connections follow it
        settings = settings.model_copy(update={"webhook_worker_concurrency": concurrency})
    configure_logging(settings)  # one JSON line per attempt, as a serving process logs
    if metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1")

    async def use(runner: Any) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with http_client(settings) as client:
            worker = DeliveryWorker(runner=runner, settings=settings, client=client)
            purger = asyncio.create_task(_purge_hourly(runner, settings, stop))
            try:
                await worker.run(stop)
            finally:
                purger.cancel()

    _with_runner(settings, use)


async def _purge_hourly(runner: Any, settings: Any, stop: asyncio.Event) -> None:
    from tripquote.errors import TripquoteError

    while not stop.is_set():
        with contextlib.suppress(TripquoteError):  # the next hour tries again
            await purge_expired(runner, settings)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), PURGE_EVERY_SECONDS)


async def purge_expired(runner: Any, settings: Any, batch_size: int = 5000) -> tuple[int, int]:
    """Delete delivered deliveries older than the retention, and the events older than it
    that have no delivery left, in batches; (deliveries, events) deleted."""
    from sqlalchemy.ext.asyncio import AsyncConnection

    from tripquote.webhooks import repository

    before = datetime.now(UTC) - timedelta(hours=settings.webhook_retention_hours)
    total = [0, 0]
    while True:

        async def work(conn: AsyncConnection) -> tuple[int, int]:
            return await repository.purge(conn, before=before, batch_size=batch_size)

        deliveries, events = await runner.run(work)
        total[0] += deliveries
        total[1] += events
        if deliveries < batch_size and events < batch_size:
            return total[0], total[1]


@webhooks_app.command("purge")
def purge(as_json: JsonFlag = False) -> None:
    """Delete delivered webhooks (and their events) older than TRIPQUOTE_WEBHOOK_RETENTION_HOURS."""
    from tripquote.cli import _emit, _with_runner, cli_settings

    settings = cli_settings()
    deliveries, events = _with_runner(settings, lambda runner: purge_expired(runner, settings))
    _emit(
        {"purgedDeliveries": deliveries, "purgedEvents": events},
        as_json,
        f"purged {deliveries} deliveries and {events} events",
    )


@webhooks_app.command("replay")
def replay(
    webhook_id: Annotated[str, typer.Argument(help="The subscription's id.")],
    since: Annotated[str, typer.Option(help="Deliveries created from this instant (ISO 8601).")],
    until: Annotated[str | None, typer.Option(help="... and before this one.")] = None,
    include_delivered: Annotated[
        bool, typer.Option(help="Also those delivered already (else dead-lettered only).")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """Send again a subscription's dead-lettered deliveries (same events, same webhook-id)."""
    from sqlalchemy.ext.asyncio import AsyncConnection

    from tripquote.cli import _emit, _refuse, _with_runner, cli_settings
    from tripquote.webhooks import repository

    start = _instant(since, "--since")
    end = _instant(until, "--until") if until is not None else None
    settings = cli_settings()

    async def use(runner: Any) -> int | None:
        async def work(conn: AsyncConnection) -> int | None:
            from sqlalchemy import select

            from tripquote.db.tables import webhook_subscriptions as S

            found = await conn.execute(select(S.c.id).where(S.c.id == webhook_id))
            if found.first() is None:
                return None
            return await repository.replay(
                conn,
                subscription_id=webhook_id,
                since=start,
                until=end,
                include_delivered=include_delivered,
                now=datetime.now(UTC),
            )

        replayed: int | None = await runner.run(work)
        return replayed

    count = _with_runner(settings, use)
    if count is None:
        _refuse("webhook_not_found", f"No webhook subscription {json.dumps(webhook_id)}.")
    _emit({"webhookId": webhook_id, "replayed": count}, as_json, f"replayed {count} deliveries")
