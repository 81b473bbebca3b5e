"""The in-process rate-limit storage (``memory://``, the default): a write's hit does not
sweep every key; expired keys are swept at most once every ``SWEEP_SECONDS``, and a key whose
window passed reads as 0 at once, swept or not."""

from __future__ import annotations

import asyncio

import pytest
from limits.aio.storage import MemoryStorage

from tests.conftest import StillClock, make_settings
from tripquote.errors import RateLimitExceeded
from tripquote.ratelimit import SWEEP_SECONDS, SweptMemoryStorage, WriteRateLimiter

_GONE = 0.001
"""A key's expiry in the tests, in seconds: passed by the time the next line runs."""


async def _loop_runs() -> None:
    """What happens between two requests of a server: the event loop runs its other tasks
    (the storage's sweep, once started, among them)."""
    for _ in range(10):
        await asyncio.sleep(0)


async def _expired_keys(storage: MemoryStorage, count: int) -> None:
    for n in range(count):
        await storage.incr(f"old-{n}", _GONE)
    await asyncio.sleep(10 * _GONE)  # their windows pass


async def test_the_librarys_storage_sweeps_every_key_after_each_hit() -> None:
    # What SweptMemoryStorage changes (limits 5.8): if this fails, limits no longer sweeps
    # on each hit, and the override below may be dropped.
    storage = MemoryStorage()
    await _expired_keys(storage, 50)
    await _loop_runs()
    await storage.incr("fresh", 60)
    await _loop_runs()
    assert set(storage.expirations) == {"fresh"}


async def test_expired_keys_are_swept_at_most_once_a_sweep_interval() -> None:
    clock = StillClock(100.0)
    storage = SweptMemoryStorage(clock=clock)
    await storage.incr("first", 60)  # the first hit sweeps
    await _loop_runs()
    await _expired_keys(storage, 50)
    clock.now += SWEEP_SECONDS / 2
    for n in range(20):  # hits, the loop running between them: no sweep
        await storage.incr(f"fresh-{n}", 60)
        await _loop_runs()
    assert len(storage.expirations) == 1 + 50 + 20
    # A key whose window passed counts as nothing, swept or not.
    assert await storage.get("old-7") == 0
    clock.now += SWEEP_SECONDS / 2  # an interval since the last sweep: the next hit sweeps
    await storage.incr("fresh-0", 60)
    await _loop_runs()
    assert set(storage.expirations) == {"first"} | {f"fresh-{n}" for n in range(20)}


async def test_the_default_storage_is_the_swept_one_and_still_limits() -> None:
    settings = make_settings("postgresql+asyncpg://unused/none", rate_limit="3/minute")
    limiter = WriteRateLimiter(settings)
    assert isinstance(limiter.storage, SweptMemoryStorage)
    for _ in range(3):
        await limiter.check("agent-1")
    with pytest.raises(RateLimitExceeded):  # the fourth write in the minute
        await limiter.check("agent-1")
    await limiter.check("agent-2")  # another agent's count is its own
