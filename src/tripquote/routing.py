"""The API route class: each request to a route that names its operation is one tracked
operation (metrics, the ``operation`` log line, the operation record, alerts), and a route
whose dependencies read a JSON body documents that body's model.

A route names its operation once, in its decorator: ``openapi_extra=operation("quote.create")``
(also shown in the OpenAPI document as ``x-operation``). The names are the metrics' and
dashboards' labels: they never change.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from tripquote.agents.auth import remember_refusal
from tripquote.deps import JsonBody
from tripquote.errors import QUERY_INVALID, QuoteValidationFailed, TripquoteError
from tripquote.observability.context import get_correlation_id
from tripquote.observability.operations import Observer
from tripquote.rendering import error_response
from tripquote.validation import is_uuid, json_path

OPERATION = "x-operation"
"""The ``openapi_extra`` key naming a route's operation."""


def operation(name: str) -> dict[str, Any]:
    """``openapi_extra`` naming the route's operation, e.g. ``quote.create``."""
    return {OPERATION: name}


def validation_failed(exc: RequestValidationError) -> QuoteValidationFailed:
    """FastAPI's refusal of path or query parameters as QUOTE_VALIDATION_FAILED, each listed."""
    errors: list[dict[str, Any]] = []
    in_query = True
    for err in exc.errors():
        in_query = in_query and err.get("loc", ("body",))[0] == "query"
        loc = [p for p in err.get("loc", ()) if p not in ("query", "path", "header", "body")]
        errors.append(
            {"path": json_path(loc), "code": err.get("type", "invalid"), "message": err["msg"]}
        )
    message = QUERY_INVALID if in_query and errors else None
    return QuoteValidationFailed(message, details={"errors": errors})


class TrackedRoute(APIRoute):
    """An ``APIRoute`` tracking each request as the operation its ``openapi_extra`` names
    (its agent from authentication, its quote from the path, its outcome, error code,
    duration and status), and documenting the model of a ``JsonBody`` dependency as its
    request body (``body_schemas`` holds the components it refers to)."""

    body_schemas: dict[str, Any]

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        self.body_schemas = {}
        body = next(_json_bodies(self.dependant), None)
        documented = body.openapi() if body is not None else None
        if documented is not None:
            request_body, self.body_schemas = documented
            self.openapi_extra = {"requestBody": request_body, **(self.openapi_extra or {})}
        headers = [h for call in _calls(self.dependant) for h in _documented_headers(call)]
        if headers:
            extra = self.openapi_extra or {}
            self.openapi_extra = {**extra, "parameters": [*extra.get("parameters", ()), *headers]}

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler (dependencies, endpoint), inside the route's tracked operation."""
        handler = super().get_route_handler()
        name = (self.openapi_extra or {}).get(OPERATION)
        if name is None:
            return handler

        async def tracked(request: Request) -> Response:
            observer: Observer = request.app.state.observer
            quote_id = request.path_params.get("quote_id")
            if quote_id is not None and not is_uuid(quote_id):
                quote_id = None  # no quote has it; it may be anything (a link's token) or huge
            try:
                async with observer.track(name, quote_id=quote_id) as op:
                    try:
                        response = await handler(request)
                    except RequestValidationError as exc:
                        raise validation_failed(exc) from None
                    op.http_status = response.status_code
                    return response
            except TripquoteError as error:
                # Counted by ``track``; rendered here as the app's handler would, without
                # unwinding the framework's layers first.
                remember_refusal(request, error)
                return error_response(error, correlation_id=get_correlation_id())

        return tracked


def _calls(dependant: Dependant) -> Iterator[Any]:
    # Every dependency of the route, depth first.
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _documented_headers(call: Any) -> tuple[dict[str, Any], ...]:
    # The header parameters a dependency reads itself (``deps.documents``).
    headers: tuple[dict[str, Any], ...] = getattr(call, "documented_headers", ())
    return headers


def _json_bodies(dependant: Dependant) -> Iterator[JsonBody]:
    # A JsonBody dependency, or a dependency reading one as its ``body`` (deps.QuoteCreate…).
    for sub in dependant.dependencies:
        body = sub.call if isinstance(sub.call, JsonBody) else getattr(sub.call, "body", None)
        if isinstance(body, JsonBody):
            yield body
        yield from _json_bodies(sub)
