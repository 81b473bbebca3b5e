"""The HTTP/1.1 protocol ``tripquote serve`` runs: uvicorn's httptools protocol, whose answer
to bytes that are no HTTP request (a malformed request line, ``Content-Length: abc``) is the
error envelope with a correlation ID, as every other refusal (BRIEF "Errors: one contract"),
not uvicorn's plain text; logged as one line."""

from __future__ import annotations

import structlog
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from tripquote.errors import QuoteValidationFailed, field_error
from tripquote.json import dumps
from tripquote.observability.context import new_correlation_id
from tripquote.rendering import error_envelope

_logger = structlog.get_logger("tripquote.access")


class EnvelopeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; its 400 for an unparsable request is the envelope,
    ``QUOTE_VALIDATION_FAILED``, the connection then closed (as uvicorn's own)."""

    def send_400_response(self, msg: str) -> None:
        """Write the envelope for ``msg`` (uvicorn's reason) and close the connection."""
        correlation_id = new_correlation_id()
        error = QuoteValidationFailed(
            "The request is not valid HTTP/1.1 (RFC 9112).",
            details={"errors": [field_error("", "http_invalid", msg)]},
        )
        body = dumps(error_envelope(error, correlation_id=correlation_id))
        head = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            head.extend([name, b": ", value, b"\r\n"])
        head.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"x-correlation-id: " + correlation_id.encode("ascii") + b"\r\n",
                b"connection: close\r\n\r\n",
            ]
        )
        self.transport.write(b"".join(head) + body)
        self.transport.close()
        client = f"{self.client[0]}:{self.client[1]}" if self.client else None
        _logger.info(
            "http_request", correlation_id=correlation_id, client_addr=client, status=400,
            error_code=error.code, reason=msg,
        )  # fmt: skip
