"""Pure ASGI middleware: HEAD as GET, the request body size limit, the last-resort error
envelope and empty query parameters as absent ones."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote_plus

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tripquote.errors import (
    QUERY_INVALID,
    InternalError,
    PayloadTooLarge,
    QuoteValidationFailed,
    TripquoteError,
    field_error,
)
from tripquote.observability.context import get_correlation_id
from tripquote.rendering import error_response

logger = logging.getLogger("tripquote.errors")

Refusal = Callable[[Scope, TripquoteError], Response]
"""How a refusal made outside the routes is answered (``app.refusal``: the JSON envelope, or a
page on a proposal link's path)."""


def envelope(scope: Scope, error: TripquoteError) -> Response:
    """The error envelope (``rendering.error_response``) for ``error``."""
    return error_response(error, correlation_id=get_correlation_id())


HEAD_AS_GET = "tripquote.head_as_get"
"""Scope key set on a HEAD request answered as its GET (the access line still says HEAD)."""


class HeadMiddleware:
    """Answer a HEAD request as its GET, with the GET's status and header fields
    (``Content-Length`` and ``ETag`` included) but no content: RFC 9110 §9.3.2.

    Every route that answers GET thus answers HEAD; a path without GET keeps its 404 or 405
    (whose ``Allow`` names HEAD wherever GET is). Outermost, so the access line says HEAD.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_without_content(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET", HEAD_AS_GET: True}, receive, send_without_content)


def drop_empty_parameters(query: bytes) -> bytes:
    """``query`` without its empty parameters (``x=`` or a bare ``x``) nor empty ``&&``; every
    other byte as sent, in order."""
    return b"&".join(part for part in query.split(b"&") if part.partition(b"=")[2])


def repeated_parameters(query: bytes) -> list[str]:
    """The names (decoded) of the parameters ``query`` gives more than once, in order."""
    counts = Counter(
        unquote_plus(part.partition(b"=")[0].decode("latin-1")) for part in query.split(b"&")
    )
    return [name for name, count in counts.items() if count > 1]


class EmptyQueryMiddleware:
    """A query parameter with an empty value is an absent one: ``?status=`` (or ``?status``)
    is answered exactly as no ``status``, on every route, whatever the parameter's type — the
    one rule, here, before any route reads its parameters (``?status=&status=SENT`` is
    ``?status=SENT``). One given twice with values is a QUOTE_VALIDATION_FAILED at its name:
    every parameter takes one value, and which of the two was meant only the client knows
    (``?status=SENT&status=DRAFT`` listed the DRAFT quotes). The access line, written outside,
    keeps the query as sent."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query: bytes = scope.get("query_string", b"")
            kept = drop_empty_parameters(query)
            if b"&" in kept:
                _refuse_repeated(kept)
            if kept != query:
                scope = {**scope, "query_string": kept}
        await self.app(scope, receive, send)


def _refuse_repeated(query: bytes) -> None:
    repeated = repeated_parameters(query)
    if repeated:
        raise QuoteValidationFailed(
            QUERY_INVALID,
            details={
                "errors": [
                    field_error(name, "repeated", f"{name} is given more than once: give it once.")
                    for name in repeated
                ]
            },
        )


class BodyLimitMiddleware:
    """Refuse bodies over ``max_bytes`` with 413 PAYLOAD_TOO_LARGE, by Content-Length at once
    or while streaming (chunked bodies), before the route reads them whole."""

    def __init__(
        self, app: ASGIApp, *, max_bytes: int, on_error: Any = None, respond: Refusal = envelope
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.on_error = on_error  # counts and logs a refusal made before any route ran
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(scope, receive, send)
                    return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise PayloadTooLarge(details={"maxBytes": self.max_bytes})
            return message

        await self.app(scope, limited_receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(details={"maxBytes": self.max_bytes})
        if self.on_error is not None:
            self.on_error(error)
        response = self.respond(scope, error)
        response.headers["Connection"] = "close"
        await response(scope, receive, send)


class CatchAllMiddleware:
    """Whatever escapes the app becomes the INTERNAL_ERROR envelope (logged with its traceback
    server-side only), so no client ever sees a plain-text 500. A client that disconnected
    mid-body gets nothing (it is gone) and raises no error."""

    def __init__(self, app: ASGIApp, *, on_error: Any = None, respond: Refusal = envelope) -> None:
        self.app = app
        self.on_error = on_error
        self.respond = respond

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except ClientDisconnect:
            return  # the client left while sending its body: no one to answer, nothing broke
        except Exception as exc:
            error = exc if isinstance(exc, TripquoteError) else InternalError()
            if not isinstance(exc, TripquoteError):
                logger.exception("unhandled exception", exc_info=exc)
            if self.on_error is not None:
                self.on_error(error)
            if started:
                raise
            await self.respond(scope, error)(scope, receive, send)
