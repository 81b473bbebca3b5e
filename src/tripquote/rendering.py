"""The one place the error envelope is rendered."""

from __future__ import annotations

import time
from typing import Any

from starlette.responses import Response

from tripquote.errors import TripquoteError
from tripquote.json import dumps


def error_envelope(error: TripquoteError, *, correlation_id: str) -> dict[str, Any]:
    """``{success: false, errorCode, message, severity, retryable, correlationId, details,
    timestamp}``; timestamp in milliseconds since the Unix epoch."""
    return {
        "success": False,
        "errorCode": error.code,
        "message": error.message,
        "severity": error.severity.value,
        "retryable": error.retryable,
        "correlationId": correlation_id,
        "details": error.details,
        "timestamp": int(time.time() * 1000),
    }


def error_response(error: TripquoteError, *, correlation_id: str) -> Response:
    """The envelope as a response with the error's status and headers (Retry-After, ...)."""
    headers = {**error.headers, "X-Correlation-ID": correlation_id}
    return Response(
        content=dumps(error_envelope(error, correlation_id=correlation_id)),
        status_code=error.status,
        media_type="application/json",
        headers=headers,
    )
