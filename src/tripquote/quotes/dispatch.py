"""The quote routes dispatched straight to their endpoint functions (pure ASGI).

The endpoints in ``routes.py`` take only the request and the path's ids, so the framework's
per-request layers in front of them (Starlette's error middleware, route table scan,
dependency solving, exit stack, exception middleware and wrappers around every ``send``) add
nothing but time on the save path. The app (``app.TripquoteAPI``) sends these routes through
the app's own middleware only (the correlation ID, the catch-all and the body limit), with
``QuoteDispatch`` innermost answering them itself:

=======  ==============================================  ==================
method   path                                            endpoint
=======  ==============================================  ==================
POST     ``/api/agents/quotes``                          ``create_quote``
GET      ``/api/agents/quotes/{id}``                     ``read_quote``
PATCH    ``/api/agents/quotes/{id}``                     ``update_quote``
DELETE   ``/api/agents/quotes/{id}``                     ``delete_quote``
POST     ``/api/agents/quotes/{id}/send|accept|reject``  the transition
GET      ``/api/agents/quotes/{id}/revisions``           ``list_revisions``
=======  ==============================================  ==================

Anything else (other methods, the list with its query parameters, one revision by version,
OpenAPI, 404/405) goes to FastAPI, which also keeps documenting every route. A
``TripquoteError`` becomes the envelope through the app's renderer, exactly as the app's
exception handler would; anything else reaches the catch-all as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tripquote.errors import TripquoteError
from tripquote.quotes import routes

PREFIX = "/api/agents/quotes"

Endpoint = Callable[..., Awaitable[Response]]

_ON_QUOTE: dict[str, Endpoint] = {
    "GET": routes.read_quote,
    "PATCH": routes.update_quote,
    "DELETE": routes.delete_quote,
}
_ON_ACTION: dict[tuple[str, str], Endpoint] = {
    ("POST", "send"): routes.send_quote,
    ("POST", "accept"): routes.accept_quote,
    ("POST", "reject"): routes.reject_quote,
    ("GET", "revisions"): routes.list_revisions,
}


def match(method: str, path: str) -> tuple[Endpoint, tuple[str, ...]] | None:
    """The endpoint and path arguments for ``method path``, or None (FastAPI's route then)."""
    if not path.startswith(PREFIX):
        return None
    rest = path[len(PREFIX) :]
    if not rest:
        return (routes.create_quote, ()) if method == "POST" else None
    if rest[0] != "/":
        return None
    parts = rest[1:].split("/")
    if not parts[0]:
        return None
    if len(parts) == 1:
        endpoint = _ON_QUOTE.get(method)
    elif len(parts) == 2:
        endpoint = _ON_ACTION.get((method, parts[1]))
    else:
        return None
    return (endpoint, (parts[0],)) if endpoint is not None else None


ROUTE = "tripquote.quote_route"
"""Scope key under which the app puts ``match``'s result for ``QuoteDispatch``."""


class QuoteDispatch:
    """Pure ASGI app answering the quote route the app found (``scope[ROUTE]``, from
    ``match``); ``render(request, error)`` is the app's envelope renderer."""

    def __init__(self, *, render: Callable[[Request, TripquoteError], Any]) -> None:
        self.render = render

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry point."""
        endpoint, args = scope[ROUTE]
        request = Request(scope, receive)
        try:
            response = await endpoint(request, *args)
        except TripquoteError as error:
            response = self.render(request, error)
        await response(scope, receive, send)
