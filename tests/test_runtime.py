"""Process tuning at start-up: the start-up heap frozen out of garbage collection and the
gen-0 threshold from the settings, applied by the app's lifespan."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import make_settings


@pytest.fixture
def restore_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restore_gc")
async def test_startup_freezes_the_heap_and_sets_the_threshold(
    db_url: str, world_factory: Any
) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    await world_factory(make_settings(db_url, gc_freeze_at_startup=True, gc_gen0_threshold=5000))
    assert gc.get_freeze_count() > 10_000  # modules, validators, routes: the start-up heap
    assert gc.get_threshold()[0] == 5000


@pytest.mark.usefixtures("restore_gc")
async def test_freeze_can_be_turned_off(db_url: str, world_factory: Any) -> None:
    gc.unfreeze()
    await world_factory(make_settings(db_url, gc_freeze_at_startup=False, gc_gen0_threshold=900))
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold()[0] == 900
