"""``tripquote webhooks …``: the delivery worker and replay (old deliveries and events go a
day at a time with ``tripquote maintenance``)."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import UTC, datetime
from typing import Annotated, Any

import typer

webhooks_app = typer.Typer(help="Webhook deliveries (Standard Webhooks).")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]


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
    of hosts, may run at once)."""
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

        try:
            start_http_server(metrics_port, addr="127.0.0.1")
        except OSError as exc:  # not the database's fault: said so, before any delivery
            event = {"level": "error", "event": "metrics_port_unavailable"}
            event["error"] = f"--metrics-port {metrics_port}: {exc.strerror or exc}"
            typer.echo(json.dumps(event), err=True)
            raise typer.Exit(1) from None

    async def use(runner: Any) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        async with http_client(settings) as client:
            worker = DeliveryWorker(runner=runner, settings=settings, client=client)
            await worker.run(stop)

    _with_runner(settings, use)


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
    if end is not None and end <= start:  # as POST …/replay refuses it (date_order)
        raise typer.BadParameter("--until: must be after --since")
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
