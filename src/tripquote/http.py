"""Writing JSON fast, a GET's conditional answer (RFC 9110 §13.1.2), and the preferences a
request states (RFC 7240)."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from tripquote.etags import Condition, none_match_fails
from tripquote.json import dumps


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A JSON response; Decimals as strings, datetimes as ISO 8601 UTC."""
    return Response(
        content=dumps(body), status_code=status, media_type="application/json", headers=headers
    )


def tagged_response(body: Any, *, etag: str, if_none_match: Condition | None) -> Response:
    """A GET's 200 JSON ``body`` with its ``ETag``, or 304 Not Modified with that ETag and no
    content when ``If-None-Match`` matches it (RFC 9110 §13.1.2, §15.4.5; also on HEAD, which
    is answered as its GET). The one rule for every GET that sends an ETag."""
    if none_match_fails(if_none_match, etag):
        return Response(status_code=304, headers={"ETag": etag})
    return json_response(body, headers={"ETag": etag})


def prefers(header: str | None, preference: str) -> bool:
    """Whether a ``Prefer`` header (RFC 7240 §2: comma-separated ``token [= value]`` each with
    optional ``;`` parameters; tokens compared without case) states ``preference``."""
    if not header:
        return False
    return any(
        part.split(";", 1)[0].split("=", 1)[0].strip().lower() == preference
        for part in header.split(",")
    )
