"""What the quote use cases run on, and writing JSON fast."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from tripquote.quotes.jsonbody import dumps

if TYPE_CHECKING:
    from tripquote.config import Settings
    from tripquote.db.transaction import TransactionRunner


@dataclass(frozen=True, slots=True)
class Services:
    """What the quote use cases need, built once at start-up and given to them by the routes
    (``deps.QuoteServices``): the settings (limits) and the transaction runner."""

    settings: Settings
    runner: TransactionRunner


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response; Decimals as strings, datetimes as ISO 8601 UTC."""
    return Response(
        content=dumps(body), status_code=status, media_type="application/json", headers=headers
    )
