"""The correlation ID of the request being served, carried in a context variable."""

from __future__ import annotations

import re
import secrets
from contextvars import ContextVar
from typing import Any

_WELL_FORMED = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

correlation_id_var: ContextVar[str | None] = ContextVar("correlation_id", default=None)

request_started_var: ContextVar[float | None] = ContextVar("request_started", default=None)
"""``time.perf_counter()`` when the current request arrived (set by CorrelationMiddleware)."""

request_log_var: ContextVar[dict[str, Any] | None] = ContextVar("request_log", default=None)
"""The current HTTP request's pending log line (set by CorrelationMiddleware): the operation
event parks its fields here, and the middleware writes ONE line per request, the operation's
fields plus the access fields (method, path, status), once the response has been sent."""


def new_correlation_id() -> str:
    """A fresh correlation ID, ``REQ-`` followed by 20 upper-case hex characters."""
    return "REQ-" + secrets.token_hex(10).upper()


def accept_correlation_id(value: str | None) -> str | None:
    """``value`` if it is well-formed (1-128 chars of ``A-Z a-z 0-9 . _ : -``), else None."""
    # fullmatch, not match + ``$``: ``$`` also matches before a trailing newline.
    if value is not None and _WELL_FORMED.fullmatch(value):
        return value
    return None


def get_correlation_id() -> str:
    """The current request's correlation ID, or a new one outside a request."""
    value = correlation_id_var.get()
    if value is None:
        value = new_correlation_id()
        correlation_id_var.set(value)
    return value
