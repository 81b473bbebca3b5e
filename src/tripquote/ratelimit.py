"""Per-agent write rate limit (the ``limits`` library): memory storage by default, Redis when
``TRIPQUOTE_RATE_LIMIT_STORAGE=redis://…`` so every process shares one limit.

Refusals carry ``Retry-After`` (RFC 9110 §10.2.3) and the IETF RateLimit headers
(draft-ietf-httpapi-ratelimit-headers: ``RateLimit-Policy``, ``RateLimit``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import storage_from_string

from tripquote.config import Settings
from tripquote.errors import RateLimitExceeded

logger = logging.getLogger("tripquote.ratelimit")

_STORAGE_TIMEOUT_SECONDS = 1.0
_STORAGE_PAUSE_SECONDS = 5.0
"""After the storage failed, writes skip it this long (and fail open or closed at once), then
one write at a time asks it again while the others keep skipping it: a hung Redis costs one
write per pause the 1 s timeout, not every write."""


SWEEP_SECONDS = 1.0
"""The in-process storage drops the keys whose window has passed at most this often."""


class SweptMemoryStorage(MemoryStorage):
    """limits' in-process storage (``memory://``), its sweep of expired keys run at most once
    every ``SWEEP_SECONDS``.

    limits (5.8) starts a sweep of every key after each increment that finds the last sweep
    done, which it is whenever the event loop ran between two requests: each request paid
    for every key of the last two windows (every agent that wrote, every link and client IP
    that was read). Measured per hit, the loop run between hits: 36 µs with 2 keys, 101 µs
    with 400, 360 µs with 2,000. Here each hit costs the same whatever the number of keys.
    A key whose window passed still reads as 0 at once (``get`` drops it); the sweep only
    frees the memory of keys no one asks for again, up to ``SWEEP_SECONDS`` later.
    ``clock``: seconds, monotonic."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._clock = clock
        self._next_sweep = 0.0

    async def _MemoryStorage__schedule_expiry(self) -> None:  # the library's hook, renamed
        now = self._clock()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_SECONDS
        await MemoryStorage._MemoryStorage__schedule_expiry(self)  # type: ignore[attr-defined]


def _storage(uri: str) -> Storage:
    """The limits storage of ``uri``: ``memory://`` in this process, else limits' own async
    storage of the scheme (``redis://`` …)."""
    if uri.startswith("memory://"):
        return SweptMemoryStorage()
    storage = storage_from_string(uri if uri.startswith("async+") else f"async+{uri}")
    assert isinstance(storage, Storage)  # an async+ scheme gives limits' async storage
    return storage


class WriteRateLimiter:
    """``check(agent_id)`` counts one write and raises RATE_LIMIT_EXCEEDED past the limit.

    ``rate`` and ``namespace`` make another limit on the same storage (the proposal pages':
    ``settings.public_rate_limit``, namespace ``public``, keyed by client IP and by link)."""

    def __init__(
        self,
        settings: Settings,
        *,
        clock: Callable[[], float] = time.monotonic,
        rate: str | None = None,
        namespace: str = "writes",
    ) -> None:
        self.item: RateLimitItem = parse(rate or settings.rate_limit)
        self.namespace = namespace
        self._clock = clock
        self._skip_until = 0.0
        self._probing = False
        self.fail_open = settings.rate_limit_fail_open
        self.storage = _storage(settings.rate_limit_storage)
        # Only a remote store can hang; in memory a deadline would only measure a busy loop.
        self.timeout: float | None = (
            None if settings.rate_limit_storage.startswith("memory") else _STORAGE_TIMEOUT_SECONDS
        )
        # Sliding-window counter: two counters per agent, no per-event lists to expire (the
        # moving window keeps one entry per write and expires them on worker threads).
        self.limiter = SlidingWindowCounterRateLimiter(self.storage)
        self.storage_errors = 0
        self._last_warning = 0.0

    async def check(self, agent_id: str) -> None:
        """Count a write by ``agent_id``; RATE_LIMIT_EXCEEDED (429) when over the limit.

        If the storage is unreachable, the write is allowed (fail open, logged and counted)
        or refused with RATE_LIMIT_EXCEEDED (fail closed), as configured.
        """
        probe = False
        if self._skip_until:  # the storage failed: paused, then asked by one write at a time
            if self._probing or self._clock() < self._skip_until:
                self._without_storage(None)  # do not wait on it again meanwhile
                return
            self._probing = probe = True
        try:
            async with asyncio.timeout(self.timeout):
                allowed = await self.limiter.hit(self.item, self.namespace, agent_id)
                if allowed:
                    self._skip_until = 0.0
                    return
                stats = await self.limiter.get_window_stats(self.item, self.namespace, agent_id)
        except Exception as exc:  # storage down: redis errors, timeouts, refused connections
            if self.timeout is not None:  # a remote store: pause it
                self._skip_until = self._clock() + _STORAGE_PAUSE_SECONDS
            self._without_storage(exc)
            return
        finally:
            if probe:
                self._probing = False
        self._skip_until = 0.0
        reset = max(1, math.ceil(stats.reset_time - time.time()))
        amount, window = self.item.amount, self.item.get_expiry()
        raise RateLimitExceeded(
            details={"limit": amount, "windowSeconds": window, "retryAfterSeconds": reset},
            headers={
                "Retry-After": str(reset),
                "RateLimit-Policy": f"{amount};w={window}",
                "RateLimit": f"limit={amount}, remaining=0, reset={reset}",
            },
        )

    def _without_storage(self, exc: BaseException | None) -> None:
        """A write the storage could not count: counted as a storage error, then let through
        (fail open) or refused with RATE_LIMIT_EXCEEDED, reason ``storage_unavailable``."""
        self._storage_failed(exc)
        if self.fail_open:
            return
        raise RateLimitExceeded(
            "The rate-limit store is unavailable; writes are refused until it is back.",
            headers={"Retry-After": "5"},
            details={"reason": "storage_unavailable"},
        ) from exc

    def _storage_failed(self, exc: BaseException | None) -> None:
        from tripquote.observability.metrics import RATE_LIMIT_STORAGE_ERRORS

        self.storage_errors += 1
        RATE_LIMIT_STORAGE_ERRORS.inc()
        now = time.monotonic()
        if exc is not None and now - self._last_warning > 10:
            self._last_warning = now
            logger.warning(
                "rate-limit storage unavailable; failing %s",
                "open" if self.fail_open else "closed",
                exc_info=exc,
            )
