"""The load generator's batch runner: the collector is paused for the batch, and only then."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from bench.loadgen import Outcome, collector_paused, fire


def test_fire_runs_every_operation_with_the_collector_off_and_restores_it() -> None:
    seen: list[tuple[bool, int]] = []

    async def op() -> Outcome:
        seen.append((gc.isenabled(), gc.get_freeze_count()))
        await asyncio.sleep(0)
        return Outcome(200)

    assert gc.isenabled()
    burst = asyncio.run(fire([("read", op) for _ in range(50)]))

    assert [r.status for r in burst.results] == [200] * 50
    assert all(not enabled for enabled, _ in seen)
    assert all(frozen > 0 for _, frozen in seen)  # the heap before the batch is frozen
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_the_collector_comes_back_when_the_batch_raises() -> None:
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_cycles_made_during_the_batch_are_collected_after_it() -> None:
    class Node:
        def __init__(self) -> None:
            self.me = self

    with collector_paused():
        for _ in range(100):
            Node()
        alive = sum(isinstance(o, Node) for o in gc.get_objects())
        assert alive == 100  # nothing collects them while the collector is off
    assert not any(isinstance(o, Node) for o in gc.get_objects())


def test_a_bounded_run_times_each_operation_from_its_send_not_its_wait() -> None:
    release = asyncio.Event()
    order: list[int] = []

    def op(n: int) -> Callable[[], Awaitable[Outcome]]:
        async def call() -> Outcome:
            order.append(n)
            if n == 0:  # the first holds the one slot until the last has queued
                await release.wait()
            return Outcome(200)

        return call

    async def run() -> Any:
        async def let_go() -> None:
            while len(order) < 1:
                await asyncio.sleep(0)
            for _ in range(20):
                await asyncio.sleep(0.001)
            release.set()

        task = asyncio.create_task(let_go())
        burst = await fire([("read", op(n)) for n in range(3)], concurrency=1)
        await task
        return burst

    burst = asyncio.run(run())
    first, *queued = burst.results
    for waited in queued:  # waited for the slot as long as the first ran, then answered
        assert waited.lag >= first.latency  # at once: its latency is its own, not its wait
        assert waited.latency < waited.lag
