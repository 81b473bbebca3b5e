"""Correlation IDs: a pure ASGI middleware that binds one ID per request and returns it.

Pure ASGI (not BaseHTTPMiddleware) so streaming responses and background tasks are untouched.
Background tasks of the request inherit the context variable (asyncio copies the context when a
task is created); queued work (alerts, operation records) captures the ID at enqueue time.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tripquote.middleware import HEAD_AS_GET
from tripquote.observability.context import (
    accept_correlation_id,
    correlation_id_var,
    new_correlation_id,
    request_log_var,
    request_started_var,
)
from tripquote.observability.logging import redact_target

HEADER = "X-Correlation-ID"
ALTERNATE_HEADERS = ("x-correlation-id", "x-request-id")


def correlation_id_from_headers(headers: Headers) -> str:
    """The first well-formed of X-Correlation-ID / X-Request-ID, else a new ``REQ-…`` id."""
    for name in ALTERNATE_HEADERS:
        accepted = accept_correlation_id(headers.get(name))
        if accepted is not None:
            return accepted
    return new_correlation_id()


access_logger = structlog.get_logger("tripquote.access")


def _log_request(scope: Scope, status: int, seconds: float, pending: dict[str, Any]) -> None:
    """The request's one JSON line (uvicorn's access line is off under ``tripquote serve``):
    the ``operation`` event its use case parked in ``pending``, with the access fields added,
    or a plain ``http_request`` access line when no operation ran (health, metrics, 404)."""
    client = scope.get("client")
    query = scope.get("query_string", b"")
    access = {
        "client_addr": f"{client[0]}:{client[1]}" if client else None,
        "method": "HEAD" if scope.get(HEAD_AS_GET) else scope["method"],
        "path": redact_target(scope["path"] + ("?" + query.decode("latin-1") if query else "")),
        "http_version": scope.get("http_version"),
        "status": status,
        "request_ms": round(seconds * 1000, 3),
    }
    fields = pending.get("fields")
    if fields is None:
        access["duration_ms"] = access.pop("request_ms")
        access_logger.info("http_request", **access)
    else:
        pending["log"]("operation", **fields, **access)


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

        status = 0
        pending: dict[str, Any] = {}
        log_token = request_log_var.set(pending)

        async def send_with_header(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = correlation_id  # replaces, never doubles
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:  # also when cancelled (client gone): the operation's line is never lost
            request_log_var.reset(log_token)
            if scope["type"] == "http":
                began = request_started_var.get()
                _log_request(scope, status, time.perf_counter() - began if began else 0.0, pending)
            pending.setdefault("fields", None)  # a task outliving the request logs on its own
        # Reset only on a normal return: when the app raises, the outermost error handler
        # (Starlette's ServerErrorMiddleware, outside this one) still needs the request's ID.
        structlog.contextvars.reset_contextvars(**bound)
        correlation_id_var.reset(token)
        request_started_var.reset(started)
