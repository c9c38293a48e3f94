"""The collector set-up `baton serve` applies once start-up is over."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from baton.server.app import GC_THRESHOLDS, tune_gc


@pytest.fixture
def restored_gc() -> Iterator[None]:
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


@pytest.mark.usefixtures("restored_gc")
def test_start_up_objects_are_frozen_and_young_collections_are_rarer() -> None:
    gc.unfreeze()
    survivor = [object()]  # made before the freeze: no collection looks at it again
    tune_gc()
    assert gc.get_freeze_count() > 0
    assert not gc.is_tracked(survivor) or survivor not in gc.get_objects()
    assert gc.get_threshold() == GC_THRESHOLDS
    # Cycles are still collected.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
