"""Correlation IDs: a pure ASGI middleware that binds one ID per request and returns it.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses and background tasks are untouched.
Background tasks of the request inherit the context variable (asyncio copies the context when a
task is created); queued work (alerts, operation records) captures the ID at enqueue time.
"""

from __future__ import annotations

import time

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tripquote.observability.context import (
    accept_correlation_id,
    correlation_id_var,
    new_correlation_id,
    request_started_var,
)

HEADER = "X-Correlation-ID"
ALTERNATE_HEADERS = ("x-correlation-id", "x-request-id")


def correlation_id_from_headers(headers: Headers) -> str:
    """The first well-formed of X-Correlation-ID / X-Request-ID, else a new ``REQ-…`` id."""
    for name in ALTERNATE_HEADERS:
        accepted = accept_correlation_id(headers.get(name))
        if accepted is not None:
            return accepted
    return new_correlation_id()


class CorrelationMiddleware:
    """Sets the correlation ID for each HTTP/WebSocket request and adds it to every response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        correlation_id = correlation_id_from_headers(Headers(scope=scope))
        started = request_started_var.set(time.perf_counter())
        token = correlation_id_var.set(correlation_id)
        bound = structlog.contextvars.bind_contextvars(correlation_id=correlation_id)

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[HEADER] = correlation_id  # replaces, never doubles
            await send(message)

        await self.app(scope, receive, send_with_header)
        # Reset only on a normal return: when the app raises, the outermost error handler
        # (Starlette's ServerErrorMiddleware, outside this one) still needs the request's ID.
        structlog.contextvars.reset_contextvars(**bound)
        correlation_id_var.reset(token)
        request_started_var.reset(started)
