"""A rate-limit storage that accepts connections and never answers (a hung Redis) costs one
write per pause the storage timeout; the writes in between skip it and follow the fail-open /
fail-closed policy at once. The hung Redis is a real TCP server on loopback that records what
it receives."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio

from tests.conftest import make_settings
from tripquote.errors import RateLimitExceeded
from tripquote.ratelimit import _STORAGE_PAUSE_SECONDS, WriteRateLimiter


class HungRedis:
    """Accepts, reads and records every byte, answers nothing."""

    def __init__(self) -> None:
        self.received = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(4096):
            self.received += len(chunk)
        writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()


@pytest_asyncio.fixture
async def hung() -> AsyncIterator[HungRedis]:
    server = HungRedis()
    await server.start()
    yield server
    await server.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("fail_open", [True, False])
async def test_a_hung_storage_is_paused_after_it_failed(hung: HungRedis, fail_open: bool) -> None:
    settings = make_settings(
        "postgresql+asyncpg://postgres@127.0.0.1:1/unused",  # the limiter never connects
        rate_limit="5/minute",
        rate_limit_storage=f"redis://127.0.0.1:{hung.port}/0",
        rate_limit_fail_open=fail_open,
    )
    clock = Clock()
    limiter = WriteRateLimiter(settings, clock=clock)

    async def write() -> str:
        try:
            await limiter.check("agent-1")
        except RateLimitExceeded as exc:
            assert exc.details == {"reason": "storage_unavailable"}
            return "refused"
        return "allowed"

    expected = "allowed" if fail_open else "refused"
    assert await write() == expected  # waited for the storage's timeout
    asked = hung.received
    assert asked > 0
    assert [await write() for _ in range(20)] == [expected] * 20  # the storage is paused
    assert hung.received == asked
    assert limiter.storage_errors == 21

    clock.now += _STORAGE_PAUSE_SECONDS  # the pause is over: the storage is asked again
    assert await write() == expected
    assert hung.received > asked
    assert limiter.storage_errors == 22

    # After the next pause, 20 writes at once: one asks the storage, the others do not wait.
    asked_storage: list[int] = []
    hit = limiter.limiter.hit

    async def counted_hit(*args: Any, **kwargs: Any) -> bool:
        asked_storage.append(1)
        return await hit(*args, **kwargs)

    limiter.limiter.hit = counted_hit  # type: ignore[method-assign]
    clock.now += _STORAGE_PAUSE_SECONDS
    assert await asyncio.gather(*(write() for _ in range(20))) == [expected] * 20
    assert asked_storage == [1]
    assert limiter.storage_errors == 42
