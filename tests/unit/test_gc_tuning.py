"""aiobamboo.tune_gc: the collector's settings for a process that mostly runs the engine."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

import aiobamboo
from aiobamboo import tune_gc


@pytest.fixture(autouse=True)
def restored_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    gc.unfreeze()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


def test_freezes_what_is_alive_and_collects_the_young_less_often() -> None:
    assert gc.get_freeze_count() == 0
    tune_gc()
    assert gc.get_threshold() == (aiobamboo._gc.ENGINE_GC_THRESHOLD, 10, 10)
    assert gc.get_threshold()[0] > 700
    assert gc.get_freeze_count() > 0


def test_takes_a_threshold_of_its_own() -> None:
    tune_gc(5_000)
    assert gc.get_threshold() == (5_000, 10, 10)


@pytest.mark.parametrize("threshold", [0, -1, True, 1.5, "700"])
def test_refuses_a_threshold_that_is_not_a_positive_int(threshold: object) -> None:
    with pytest.raises(ValueError, match="positive int"):
        tune_gc(threshold)  # type: ignore[arg-type]
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
