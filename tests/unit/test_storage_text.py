"""The storage core's text of a row: json.dumps's text of ids, times to the microsecond."""

from __future__ import annotations

import json
import math
import random
import time
from decimal import Decimal
from typing import Any

import pytest

from aiobamboo.storage import ids_json, micros, time_json


@pytest.mark.parametrize(
    "ids",
    [
        (),
        ["c1f0"],
        ("p0", "a1", "a2"),
        ["节点", 'quote"d', "back\\slash", "new\nline", "\x00", "\ud800"],
        [1, None, "mixed"],  # not all str: json.dumps decides
    ],
)
def test_ids_read_back_as_json_dumps_writes_them(ids: Any) -> None:
    text = ids_json(ids)
    assert text == json.dumps(ids)
    assert json.loads(text) == list(ids)


def _times() -> list[float]:
    rnd = random.Random(7)
    now = time.time()
    return [
        now,
        1.0,
        1.5,
        1_000_000.000_000_5,
        999_999_999_999.999_9,
        *(now + rnd.uniform(-1e8, 1e8) for _ in range(2000)),
        *(rnd.uniform(1.0, 100.0) for _ in range(200)),
    ]


@pytest.mark.parametrize("t", _times()[:5])
def test_a_time_is_json_of_the_nearest_microsecond(t: float) -> None:
    text = time_json(t)
    assert text == f"{Decimal(round(t * 1_000_000)) / 1_000_000:.6f}"
    assert isinstance(json.loads(text), float)


def test_times_read_back_within_half_a_microsecond_and_in_order() -> None:
    times = sorted(_times())
    read = [json.loads(time_json(t)) for t in times]
    for t, back in zip(times, read, strict=True):
        assert abs(back - t) <= 0.5e-6 + 1e-15 * t
    assert read == sorted(read)  # rounding keeps their order


@pytest.mark.parametrize("t", [0.0, 0.25, -3.5, 1e12, 1e300, -math.inf, math.inf])
def test_a_time_outside_the_engine_range_is_written_as_repr(t: float) -> None:
    assert time_json(t) == repr(t)


def test_microseconds_divided_by_a_million_are_the_time_json_writes() -> None:
    # Postgres reads micros(t) / 1e6; SQLite reads time_json(t): the same float.
    for t in _times():
        us = micros(t)
        assert isinstance(us, int)
        assert us / 1_000_000 == json.loads(time_json(t))


def test_micros_keeps_none_and_times_no_store_can_take() -> None:
    assert micros(None) is None
    assert micros(math.inf) == math.inf
    assert math.isnan(micros(math.nan))  # type: ignore[arg-type]
    assert micros(1e303) == math.inf  # its microseconds overflow: refused as inf
    with pytest.raises(ValueError):  # the stores' encoders refuse them, as before
        json.dumps([micros(math.inf)], allow_nan=False)
