"""Bounds on text a client controls (URL, query, headers, ids taken from the URL).

Applied once, where log lines (``logging.bound_fields``), operation records
(``OperationRecord``) and alerts (``Alert``) are built, never at call sites: a value longer than
its bound keeps its first characters and ends with ``…[cut N chars]``, N the characters dropped,
in at most the bound.
"""

from __future__ import annotations

from collections.abc import Iterable

FIELD_CHARS = 1024
"""Bound of any text field of a log line (a URL with its query, a header, a message)."""

ID_CHARS = 64
"""Bound of an id or a name in an operation record or an alert (ours are at most 36)."""

CORRELATION_CHARS = 128
"""Bound of a correlation ID (a client's is accepted only if 1-128 characters)."""


def marker(dropped: int) -> str:
    """The mark a cut text ends with: ``…[cut N chars]``."""
    return f"…[cut {dropped:,} chars]"


def cut(value: str, limit: int) -> str:
    """``value`` when at most ``limit`` characters, else its head and ``…[cut N chars]`` (N the
    characters dropped, e.g. ``…[cut 59,872 chars]``) in ``limit`` characters (so cutting twice
    changes nothing)."""
    if len(value) <= limit:
        return value
    keep = max(limit - len(marker(len(value))), 0)
    return value[:keep] + marker(len(value) - keep)


def cut_tail(value: str, limit: int) -> str:
    """Like ``cut`` but keeping the tail (a stack trace's end says most): ``[cut N chars]…``
    and the tail."""
    if len(value) <= limit:
        return value
    keep = max(limit - len(marker(len(value))), 0)
    return f"[cut {len(value) - keep:,} chars]…" + value[len(value) - keep :]


def bound_attributes(instance: object, limits: Iterable[tuple[str, int]]) -> None:
    """Cut each named text attribute of ``instance`` (a frozen dataclass, in its
    ``__post_init__``) to its limit."""
    for name, limit in limits:
        value = getattr(instance, name)
        if value is not None and len(value) > limit:
            object.__setattr__(instance, name, cut(value, limit))
