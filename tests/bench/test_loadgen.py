"""The load generator's batch runner: the collector is paused for the batch, and only then."""

from __future__ import annotations

import asyncio
import gc

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
