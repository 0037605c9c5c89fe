"""The records a write batch carries: values compared and hashed by their fields."""

from __future__ import annotations

import attrs
import pytest

from aiobamboo.runtime import (
    CallbackRow,
    ContextRow,
    EventRow,
    ExecutionDataRow,
    HistoryRow,
    NodeDataRow,
    ProcessRow,
    RunRow,
    ScheduleRow,
    StateRow,
    TimerRow,
)

RECORDS = [
    RunRow("p", "{}", "{}", "active", 1.0),
    StateRow("a", "p", "p", "", "RUNNING", "v1", 1, 1, 0, False, False, 1.0, 2.0, None),
    ExecutionDataRow("a", "p", "{}", "{}"),
    NodeDataRow("a", "p", "{}"),
    ContextRow("p", "${k}", "p", 1, '"v"', None),
    ProcessRow("c", "p", None, "a", None, ("p",), "running", None, (), ()),
    ScheduleRow("s", "p", "a", "v1", 1, "c", False, False, 0),
    CallbackRow("k", "p", "a", "v1", "{}", False, 1.0),
    HistoryRow("h", "p", "a", 1.0, 2.0, 1, False, 0, "v1", "{}", "{}", 3.0),
    TimerRow("t", "p", "a", "v1", "poll", 5.0),
    EventRow("p", "a", "state", "RUNNING", "{}", 1.0),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_a_record_equals_and_hashes_like_a_copy_of_it(record: object) -> None:
    copy = attrs.evolve(record)  # type: ignore[misc]
    assert copy is not record
    assert copy == record
    assert hash(copy) == hash(record)
    assert len({record, copy}) == 1
    first = attrs.fields(type(record))[0].name
    other = attrs.evolve(record, **{first: "else"})  # type: ignore[misc]
    assert other != record


def test_flags_read_as_integers_are_made_booleans() -> None:
    """SQLite gives its 0 and 1 back: the records hold True and False all the same."""
    state = StateRow("a", "p", "p", "", "FINISHED", "v1", 1, 1, 0, 1, 0)
    assert (state.skip, state.error_ignored) == (True, False)
    schedule = ScheduleRow("s", "p", "a", "v1", 1, "c", 0, 1)
    assert (schedule.finished, schedule.expired) == (False, True)
    assert CallbackRow("k", "p", "a", "v1", "{}", 1).consumed is True
    assert HistoryRow("h", "p", "a", None, None, 1, 1).skip is True
