"""Small helpers every route uses: reading JSON exactly, writing JSON fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from tripquote.errors import UnsupportedMediaType
from tripquote.json import dumps, loads

if TYPE_CHECKING:
    from tripquote.config import Settings
    from tripquote.db.transaction import TransactionRunner
    from tripquote.idempotency import IdempotencyStore
    from tripquote.observability.operations import Observer
    from tripquote.ratelimit import WriteRateLimiter


@dataclass(frozen=True, slots=True)
class Services:
    """What the app factory builds once and every request uses."""

    settings: Settings
    runner: TransactionRunner
    observer: Observer
    limiter: WriteRateLimiter
    idempotency: IdempotencyStore


def services(request: Request) -> Services:
    """The app's shared services."""
    svc: Services = request.app.state.services
    return svc


async def read_json(request: Request) -> Any:
    """The request body parsed with numbers as Decimal; UNSUPPORTED_MEDIA_TYPE unless it is
    declared JSON (``application/json`` or a ``+json`` type, RFC 6839); QUOTE_VALIDATION_FAILED
    if malformed."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != "application/json" and not (
        media_type.startswith("application/") and media_type.endswith("+json")
    ):
        raise UnsupportedMediaType(details={"contentType": media_type or None})
    return loads(await request.body())


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response; Decimals as strings, datetimes as ISO 8601 UTC."""
    return Response(
        content=dumps(body), status_code=status, media_type="application/json", headers=headers
    )
