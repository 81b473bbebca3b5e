"""``engine._connecting``: a checkout that fails to connect is tried again, within its delay,
only when a moment may cure the failure; the first try builds no retry controller."""

from __future__ import annotations

import pytest

from tripquote.db.engine import _connecting


class Acquire:
    """A checkout that fails with ``failure`` ``failures`` times, then returns ``"connection"``."""

    def __init__(self, failures: int, failure: BaseException) -> None:
        self.failures = failures
        self.failure = failure
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.failure
        return "connection"


async def test_a_refused_connection_is_tried_again_until_it_succeeds() -> None:
    acquire = Acquire(2, ConnectionRefusedError("refused"))
    assert await _connecting(acquire, 5.0) == "connection"
    assert acquire.calls == 3


async def test_the_first_success_is_the_only_try() -> None:
    acquire = Acquire(0, ConnectionRefusedError("refused"))
    assert await _connecting(acquire, 5.0) == "connection"
    assert acquire.calls == 1


async def test_a_failure_no_moment_cures_is_raised_at_once() -> None:
    acquire = Acquire(1, ValueError("not a connection failure"))
    with pytest.raises(ValueError, match="not a connection failure"):
        await _connecting(acquire, 5.0)
    assert acquire.calls == 1


async def test_without_a_delay_a_refused_connection_is_raised_at_once() -> None:
    acquire = Acquire(1, ConnectionRefusedError("refused"))
    with pytest.raises(ConnectionRefusedError):
        await _connecting(acquire, 0)
    assert acquire.calls == 1


async def test_a_refusal_that_lasts_past_the_delay_is_raised() -> None:
    acquire = Acquire(10**6, ConnectionRefusedError("refused"))
    with pytest.raises(ConnectionRefusedError):
        await _connecting(acquire, 0.2)
    assert 1 < acquire.calls < 10**6
