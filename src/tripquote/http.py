"""Writing JSON fast."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from tripquote.json import dumps


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response; Decimals as strings, datetimes as ISO 8601 UTC."""
    return Response(
        content=dumps(body), status_code=status, media_type="application/json", headers=headers
    )
