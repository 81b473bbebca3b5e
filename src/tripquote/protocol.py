"""The HTTP/1.1 protocol ``tripquote serve`` runs: uvicorn's httptools protocol, whose answer
to bytes that are no HTTP request (a malformed request line, ``Content-Length: abc``) is the
error envelope with a correlation ID, as every other refusal (BRIEF "Errors: one contract"),
not uvicorn's plain text; logged as one line. A request head (request line and header fields)
larger than ``MAX_HEAD_BYTES`` is refused the same way, with 431 (RFC 6585 §5): httptools
sets no bound, so one unfinished 40 MB header held 40 MB of the worker's memory."""

from __future__ import annotations

import structlog
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from tripquote.errors import QuoteValidationFailed, TripquoteError, field_error
from tripquote.json import dumps
from tripquote.observability.context import new_correlation_id
from tripquote.rendering import error_envelope

_logger = structlog.get_logger("tripquote.access")

MAX_HEAD_BYTES = 65_536
"""The largest request head taken, in bytes (a request's is about 1 KB: a bearer token, an
If-Match, an Idempotency-Key; h11's default bound is 16 KiB, nginx's 32 KiB)."""


_TOO_LARGE = "request head too large"


class _HeadTooLarge(Exception):
    """Raised in the parser's callback to stop it: the head is past the bound."""


def _head_refusal() -> QuoteValidationFailed:
    return QuoteValidationFailed(
        f"The request's header fields exceed {MAX_HEAD_BYTES} bytes.",
        details={"maxHeadBytes": MAX_HEAD_BYTES},
        http_status=431,
    )


LINGER_SECONDS = 2.0
"""After a refusal, how long the rest of the client's request is read and dropped before the
connection is closed (a lingering close, as nginx's ``lingering_timeout``)."""


class EnvelopeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; its 400 for an unparsable request is the envelope,
    ``QUOTE_VALIDATION_FAILED``, the connection then closed (as uvicorn's own); a head past
    ``MAX_HEAD_BYTES`` is a 431 with the same envelope, its connection closed."""

    _in_head = False
    """Between a request's first byte and the end of its header fields."""
    _head_bytes = 0
    """Bytes of the chunks received whole inside the unfinished head (the chunk it began in,
    which may hold the previous request's body, is not counted: at most one chunk less)."""
    _chunk = 0
    """The size of the chunk being parsed."""
    _began_here = False
    """The head that is being parsed began in this chunk."""

    def on_message_begin(self) -> None:
        """A request's first byte: its head starts."""
        self._in_head, self._head_bytes, self._began_here = True, 0, True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """Its head ended: the request runs, unless the head (its URL and fields, each field
        counted with its ": " and CRLF) is past the bound, arrived in one chunk or several."""
        self._in_head = False
        # Counted only when the bytes it came in could hold more (a request's head and body
        # usually come in one chunk of a few KB: nothing to add up).
        if self._began_here and self._chunk <= MAX_HEAD_BYTES:
            super().on_headers_complete()
            return
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > MAX_HEAD_BYTES:
            self._too_large = True
            raise _HeadTooLarge  # the parser stops: uvicorn answers with send_400_response
        super().on_headers_complete()

    _too_large = False
    """The head that just ended is past the bound."""
    _refused = False
    """A refusal was answered: what the client still sends is dropped until it closes."""

    def data_received(self, data: bytes) -> None:
        """Parse ``data``; refuse the request once its unfinished head passes the bound."""
        if self._refused:
            return
        self._chunk, self._began_here, within = len(data), False, self._in_head
        super().data_received(data)
        if self._in_head and within and not self.transport.is_closing():
            self._head_bytes += len(data)  # the whole chunk is the unfinished head's
            if self._head_bytes > MAX_HEAD_BYTES:
                self._refuse(_head_refusal(), _TOO_LARGE)

    def send_400_response(self, msg: str) -> None:
        """Write the envelope for ``msg`` (uvicorn's reason) and close the connection; 431 for
        a head past the bound (``on_headers_complete`` stopped the parser)."""
        if self._too_large:
            self._refuse(_head_refusal(), _TOO_LARGE)
            return
        error = QuoteValidationFailed(
            "The request is not valid HTTP/1.1 (RFC 9112).",
            details={"errors": [field_error("", "http_invalid", msg)]},
        )
        self._refuse(error, msg)

    def _refuse(self, error: TripquoteError, reason: str) -> None:
        """Answer ``error``'s envelope and close the connection; one log line with ``reason``."""
        correlation_id = new_correlation_id()
        body = dumps(error_envelope(error, correlation_id=correlation_id))
        head = [STATUS_LINE[error.status]]
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
        # A lingering close: closed at once with the rest of the client's bytes unread, the
        # socket would be reset, and the reset can discard the answer before the client reads
        # it. So the answer is followed by the end of the stream, what comes next is dropped,
        # and the connection is closed when the client closes it, or LINGER_SECONDS later.
        self._refused = True
        if self.cycle is not None and not self.cycle.response_complete:
            # An earlier request of the connection (pipelined) is still being answered: its
            # answer cannot follow the end of the stream. Closed at once, as uvicorn does.
            self.transport.close()
            return
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
        client = f"{self.client[0]}:{self.client[1]}" if self.client else None
        _logger.info(
            "http_request", correlation_id=correlation_id, client_addr=client,
            status=error.status, error_code=error.code, reason=reason,
        )  # fmt: skip
