"""``GET /metrics`` (Prometheus exposition) and ``GET /api/ops/summary`` (admin only)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from tripquote.errors import (
    AgentNotFound,
    AuthenticationFailed,
    AuthorizationFailed,
)
from tripquote.etags import field_value
from tripquote.observability.metrics import outbox_exposition, render_metrics
from tripquote.observability.summary import is_operator, scoped_summary
from tripquote.openapi import DATABASE, responses

if TYPE_CHECKING:
    from tripquote.observability.operations import Observer

router = APIRouter()


def _observer(request: Request) -> Observer:
    observer: Observer = request.app.state.observer
    return observer


def _check_metrics_token(request: Request) -> None:
    token = _observer(request).settings.metrics_token
    if token is not None and not is_operator(token, field_value(request.headers, "authorization")):
        raise AuthenticationFailed("A valid metrics token is required.")


@router.get("/metrics", include_in_schema=False)
async def metrics_endpoint(request: Request) -> Response:
    """Prometheus text exposition of every worker; Bearer ``metrics_token`` when one is set."""
    _check_metrics_token(request)
    # Off the event loop: multi-process collection reads one file per worker.
    body, content_type = await run_in_threadpool(render_metrics)
    return Response(content=body + await _outbox(request), media_type=content_type)


OUTBOX_READ_SECONDS = 2.0
"""How long a scrape waits for the outbox gauges: the counters must reach Prometheus (its
scrape timeout: 10 s, ops/prometheus) when the database is slow or its tables are locked."""


async def _outbox(request: Request) -> bytes:
    """The outbox gauges, read from the database now (nothing when it cannot be read within
    ``OUTBOX_READ_SECONDS``: the scrape still answers, and ``absent()`` shows the gap)."""
    from sqlalchemy.ext.asyncio import AsyncConnection

    from tripquote.errors import TripquoteError
    from tripquote.health import within
    from tripquote.webhooks.repository import outbox_backlog

    async def work(conn: AsyncConnection) -> tuple[int, float]:
        return await outbox_backlog(conn, now=datetime.now(UTC))

    runner = getattr(request.app.state, "runner", None)
    if runner is None:  # the app not started (no database): nothing to read
        return b""
    try:
        depth, oldest = await within(OUTBOX_READ_SECONDS, runner.run(work, write=False))
    except (TripquoteError, TimeoutError):
        return b""
    return outbox_exposition(depth, oldest)


@router.get(
    "/api/ops/summary",
    tags=["ops"],
    responses=responses(
        None,
        errors=(AuthenticationFailed, AgentNotFound, AuthorizationFailed, *DATABASE),
    ),
)
async def ops_summary(request: Request) -> dict[str, Any]:
    """Save latency (avg/P95/P99 ms) and error, conflict and rollback rates of this process:
    of the caller's agency for an admin, of everyone for the operator (the metrics token)."""
    from tripquote.agents.auth import authenticate_admin  # lazy: keeps app imports acyclic

    observer, authorization = _observer(request), field_value(request.headers, "authorization")
    operator = is_operator(observer.settings.metrics_token, authorization)
    agency_id = None if operator else (await authenticate_admin(request)).agency_id
    return await scoped_summary(observer.window, request.app.state.engine, agency_id=agency_id)
