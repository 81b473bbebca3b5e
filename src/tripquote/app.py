"""``create_app(settings)``: wiring only. The engine is built in the lifespan, never at import."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope

from tripquote import __version__
from tripquote.agents.auth import remember_refusal
from tripquote.clients.routes import router as clients_router
from tripquote.config import Settings
from tripquote.db.engine import PoolerMisconfigured, check_pooler, create_engine, warm_pool
from tripquote.db.transaction import TransactionRunner
from tripquote.errors import (
    InternalError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    QuoteValidationFailed,
    TripquoteError,
)
from tripquote.health import router as health_router
from tripquote.idempotency import IdempotencyStore
from tripquote.middleware import (
    BodyLimitMiddleware,
    CatchAllMiddleware,
    EmptyQueryMiddleware,
    HeadMiddleware,
)
from tripquote.observability.context import get_correlation_id
from tripquote.observability.correlation import CorrelationMiddleware
from tripquote.observability.logging import configure_logging, flush_logs
from tripquote.observability.operations import Observer
from tripquote.observability.routes import router as observability_router
from tripquote.openapi import complete
from tripquote.proposals.board import Board
from tripquote.proposals.bulkhead import PublicBulkhead
from tripquote.proposals.links import LinkKeys
from tripquote.proposals.public import is_link_path, refusal_page
from tripquote.proposals.public import router as public_router
from tripquote.proposals.routes import router as proposals_router
from tripquote.proposals.service import ProposalService
from tripquote.proposals.store import ProposalStore
from tripquote.quotes.routes import router as quotes_router
from tripquote.quotes.rules import Limits
from tripquote.quotes.service import QuoteService
from tripquote.quotes.store import QuoteStore, prepare_statements
from tripquote.ratelimit import WriteRateLimiter
from tripquote.rendering import error_response
from tripquote.routing import validation_failed
from tripquote.runtime import tune_gc
from tripquote.webhooks.routes import router as webhooks_router

ROUTERS = (
    quotes_router,
    public_router,
    proposals_router,
    clients_router,
    webhooks_router,
    health_router,
    observability_router,
)
"""In matching order (each request is matched against the routes one by one): the quote
routes, the most requested, first; then the client's pages, the public path with the most
requests (a view matched past the 24 agent routes cost 30 µs more)."""


def refusal(scope: Scope, error: TripquoteError) -> Response:
    """A refusal made outside the routes' own handling: a page on a proposal link's path
    (``proposals/public.py``: the client reads it in a browser), else the error envelope."""
    if is_link_path(scope["path"]):
        return refusal_page(Request(scope), error)
    return error_response(error, correlation_id=get_correlation_id())


def allowed_methods(app: FastAPI, scope: Scope) -> str:
    """The ``Allow`` value of a 405: every method of every route whose path matches (RFC 9110
    §15.5.6), HEAD wherever GET is (§9.3.2); the framework names only the first route's."""
    allowed = {
        method
        for method in _METHODS
        if any(
            route.matches({**scope, "type": "http", "method": method})[0] is Match.FULL
            for route in app.router.routes
        )
    }
    if "GET" in allowed:
        allowed.add("HEAD")
    return ", ".join(method for method in _METHODS if method in allowed)


_logger = structlog.get_logger("tripquote.app")

_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")

DOCS_URL = "/docs"
"""Swagger UI: the page and every file it loads are served by this app."""


def _start_delivery_worker(
    runner: TransactionRunner, settings: Settings
) -> Callable[[], Awaitable[None]] | None:
    """With ``TRIPQUOTE_WEBHOOK_WORKER_IN_SERVE``, a webhook delivery worker in this process
    (``webhooks/worker.py``); the function that stops it (its in-flight deliveries finish)."""
    if not settings.webhook_worker_in_serve:
        return None
    from tripquote.webhooks.worker import DeliveryWorker, http_client

    stop = asyncio.Event()
    client = http_client(settings)
    worker = DeliveryWorker(runner=runner, settings=settings, client=client)
    task = asyncio.create_task(worker.run(stop))

    async def stopped() -> None:
        stop.set()
        with contextlib.suppress(Exception):
            await task
        await client.aclose()

    return stopped


def create_app(
    settings: Settings | None = None, *, clock: Callable[[], datetime] | None = None
) -> FastAPI:
    """The ASGI app for ``settings`` (read from the environment when None); ``clock`` (aware
    UTC ``datetime``s, default the system's) is the quote service's "now": expiry, "today" in
    the agency's zone for a send, and every stored instant of a quote."""
    settings = settings or Settings()
    configure_logging(settings)
    observer = Observer(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        runner = TransactionRunner(engine=engine, settings=settings, observer=observer)
        app.state.engine = engine
        app.state.probe_engine = create_engine(settings, pooled=False)
        app.state.runner = runner
        app.state.limiter = WriteRateLimiter(settings)
        app.state.idempotency = IdempotencyStore(
            runner=runner,
            ttl=timedelta(hours=settings.idempotency_ttl_hours),
            abandon_after=timedelta(seconds=3 * settings.tx_timeout_seconds),
        )
        links = LinkKeys(settings.jwt_secret.get_secret_value())
        app.state.quotes = QuoteService(
            store=QuoteStore(runner, open_limit=settings.max_open_quotes_per_agent),
            limits=Limits.from_settings(settings),
            links=links,
            clock=clock,
        )
        app.state.proposals = ProposalService(
            store=ProposalStore(runner), links=links, settings=settings, clock=clock
        )
        app.state.public_limiter = WriteRateLimiter(
            settings, rate=settings.public_rate_limit, namespace="public"
        )
        warm_up = prepare_statements if runner.pooling.keeps_prepared_statements else None
        failure = await warm_pool(engine, settings.db_pool_size, prepare=warm_up)
        if failure is not None:
            try:
                await check_pooler(engine, settings, failure)
            except PoolerMisconfigured as error:
                _logger.error("configuration_error", error=str(error))
                await engine.dispose()
                await app.state.probe_engine.dispose()
                raise
        await observer.start(engine)
        deliveries = _start_delivery_worker(runner, settings)
        tune_gc(settings)
        try:
            yield
        finally:
            if deliveries is not None:
                await deliveries()
            await app.state.idempotency.stop()
            await observer.stop()
            await engine.dispose()
            await app.state.probe_engine.dispose()
            flush_logs()

    # /docs from the Swagger UI files of the installed fastapi-offline package (under
    # /static-offline-docs), never a CDN: the page works on a host without Internet access.
    # No online validator badge (an image from validator.swagger.io); no ReDoc page.
    app = FastAPIOffline(
        title="tripquote",
        version=__version__,
        description="Travel quotes saved completely and exactly once, or refused precisely.",
        lifespan=lifespan,
        docs_url=DOCS_URL,
        redoc_url=None,
        swagger_ui_parameters={"validatorUrl": None},
        redirect_slashes=False,  # /api/agents/quotes/ is a 404 envelope, not a bare 307
        # Our own Prometheus metrics and JSON logs cover this; FastAPI's OpenTelemetry hooks
        # cost an environment lookup per request for providers nobody configured.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        # The routes themselves, not the routers: an included router is matched through
        # FastAPI's per-request include layer (about 25 us a request measured; the routers
        # set their prefix, tags and route class on each route already).
        routes=[route for router in ROUTERS for route in router.routes],
    )
    app.state.settings = settings
    app.state.observer = observer

    def render(request: Request, error: TripquoteError) -> Response:
        observer.error_rendered(error)
        remember_refusal(request, error)
        return refusal(request.scope, error)

    async def on_tripquote_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, TripquoteError)
        return render(request, exc)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        error: TripquoteError
        if exc.status_code == 405:
            error = MethodNotAllowed(headers={"Allow": allowed_methods(app, request.scope)})
        elif exc.status_code == 404:
            error = NotFound()
        elif exc.status_code == 413:
            error = PayloadTooLarge()
        elif exc.status_code < 500:
            error = QuoteValidationFailed(str(exc.detail), http_status=exc.status_code)
        else:
            error = InternalError(http_status=exc.status_code)
        return render(request, error)

    async def on_request_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        return render(request, validation_failed(exc))

    def openapi() -> dict[str, Any]:
        """FastAPI's document (built once, then cached by FastAPI), completed once."""
        built = app.openapi_schema is not None
        document = FastAPI.openapi(app)
        if not built:
            complete(
                document,
                routes=[route for router in ROUTERS for route in router.routes],
                currencies=settings.currencies,
            )
        return document

    app.openapi = openapi  # type: ignore[method-assign]

    app.add_exception_handler(TripquoteError, on_tripquote_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_request_validation)

    # Outermost last: the client's pages' bulkhead, HEAD as GET, the correlation ID, the
    # catch-all, the body limit, then empty query parameters dropped (the access line keeps
    # the query as sent).
    app.add_middleware(EmptyQueryMiddleware)
    app.add_middleware(
        BodyLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        on_error=observer.error_rendered,
        respond=refusal,
    )
    app.add_middleware(CatchAllMiddleware, on_error=observer.error_rendered, respond=refusal)
    app.add_middleware(CorrelationMiddleware)
    app.add_middleware(HeadMiddleware)
    app.add_middleware(
        PublicBulkhead,
        limit=settings.public_concurrency,
        queue=settings.public_queue,
        busy=settings.public_defer_at,
        max_wait=settings.public_defer_max_seconds,
        rate=settings.public_burst_rate,
        board=Board(Path(settings.worker_board)) if settings.worker_board else None,
    )
    return app
