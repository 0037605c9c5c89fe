"""An activity's time fields read from its tree: timeouts, retry policies, timer events."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
from aiobamboo.exceptions import InvalidTreeError
from aiobamboo.timing import (
    FORCED_FAIL,
    FORCED_FAIL_AND_SKIP,
    RetryPolicy,
    TimerEvent,
    TimingError,
    parse_timing,
)
from aiobamboo.validator import validate_and_process_pipeline

NOW = datetime.datetime(2026, 1, 31, 12, 0, tzinfo=datetime.UTC).timestamp()


def test_a_node_without_time_fields_has_no_timing() -> None:
    assert parse_timing({"timeout": None}) is None
    assert parse_timing({"timeout": 0}) is None  # how some exported trees say "none"


def test_timeout_and_its_action() -> None:
    timing = parse_timing({"timeout": 30})
    assert timing is not None
    assert (timing.timeout, timing.timeout_action) == (30.0, FORCED_FAIL)
    config = {"enable": True, "seconds": 10, "action": FORCED_FAIL_AND_SKIP}
    timing = parse_timing({"timeout": 30, "timeout_config": config})
    assert timing is not None
    assert (timing.timeout, timing.timeout_action) == (10.0, FORCED_FAIL_AND_SKIP)
    # A disabled config falls back to the plain field.
    timing = parse_timing({"timeout": 30, "timeout_config": {**config, "enable": False}})
    assert timing is not None
    assert (timing.timeout, timing.timeout_action) == (30.0, FORCED_FAIL)


@pytest.mark.parametrize(
    "raw",
    [
        {"timeout": -1},
        {"timeout": True},
        {"timeout": float("nan")},
        {"timeout_config": {"enable": True, "seconds": 0}},
        {"timeout_config": {"enable": True, "seconds": 5, "action": "ignore"}},
        {"timeout_config": "soon"},
    ],
)
def test_bad_timeouts_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(TimingError):
        parse_timing(raw)


def test_retry_delays_fixed_and_exponential_with_a_cap() -> None:
    fixed = RetryPolicy(max_attempts=4, delay=5)
    assert [fixed.delay_before(n) for n in (1, 2, 3)] == [5, 5, 5]
    exp = RetryPolicy(max_attempts=10, delay=2, backoff="exponential", max_delay=10)
    assert [exp.delay_before(n) for n in (1, 2, 3, 4, 5)] == [2, 4, 8, 10, 10]
    huge = RetryPolicy(max_attempts=5000, delay=1, backoff="exponential")
    assert huge.delay_before(4000) > 1e300  # no overflow
    assert RetryPolicy.from_dict(exp.to_dict()) == exp


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"max_attempts": 1.5},
        {"max_attempts": 2, "delay": -1},
        {"max_attempts": 2, "backoff": "linear"},
        {"max_attempts": 2, "max_delay": "1m"},
    ],
)
def test_bad_retry_policies_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(TimingError):
        RetryPolicy(**kwargs)


def test_retry_policy_dict_must_be_complete_and_known() -> None:
    with pytest.raises(TimingError, match="max_attempts"):
        parse_timing({"retry_policy": {"delay": 1}})
    with pytest.raises(TimingError, match="unknown"):
        parse_timing({"retry_policy": {"max_attempts": 2, "jitter": True}})


def _events(*events: TimerEvent) -> dict[str, Any]:
    return {"events": {"timer_events": [e.to_dict() for e in events]}}


def test_timer_events_date_duration_and_cycles() -> None:
    timing = parse_timing(
        _events(
            TimerEvent("time_date", "2026-02-01T12:00:00Z"),
            TimerEvent("time_duration", "PT1H30M", action="bamboo_engine_forced_fail_and_skip"),
            TimerEvent("time_cycle", "R5/PT10S", action="notify"),
            TimerEvent("time_cycle", "R/P1D", action="notify"),
            TimerEvent("time_duration", "P1M", enable=False),
        )
    )
    assert timing is not None
    date, duration, five, forever = timing.events
    assert date.due_after(NOW) == NOW + 24 * 3600
    assert duration.due_after(NOW) == NOW + 5400
    assert duration.action == FORCED_FAIL_AND_SKIP  # the original's name, read as ours
    assert (five.repetitions, five.due_after(NOW)) == (5, NOW + 10)
    assert (forever.repetitions, forever.due_after(NOW)) == (None, NOW + 86400)
    assert [e.index for e in timing.events] == [1, 2, 3, 4]


def test_a_calendar_duration_counts_months() -> None:
    timing = parse_timing(_events(TimerEvent("time_duration", "P1M")))
    assert timing is not None
    due = datetime.datetime.fromtimestamp(timing.events[0].due_after(NOW), tz=datetime.UTC)
    assert (due.month, due.day) == (2, 28)  # isodate clamps the 31st into February


@pytest.mark.parametrize(
    ("event", "fragment"),
    [
        (TimerEvent("time_duration", "10 minutes"), "not an ISO 8601 duration"),
        (TimerEvent("time_duration", "PT0S"), "not a positive duration"),
        (TimerEvent("time_date", "tomorrow"), "not an ISO 8601 date"),
        (TimerEvent("time_date", "2026-02-01T12:00:00"), "no time zone"),
        (TimerEvent("time_cycle", "PT10S"), "not an ISO 8601 cycle"),
        (TimerEvent("time_cycle", "R0/PT10S"), "zero times"),
        (TimerEvent("time_cycle", "R3/soon"), "not an ISO 8601 duration"),
        (TimerEvent("sometimes", "PT1S"), "'timer_type'"),  # type: ignore[arg-type]
        (TimerEvent("time_duration", "PT1S", action=""), "'action'"),
    ],
)
def test_malformed_timer_events_are_refused(event: TimerEvent, fragment: str) -> None:
    with pytest.raises(TimingError, match=fragment):
        parse_timing(_events(event))


def test_the_validator_names_the_node_of_a_malformed_expression() -> None:
    start = EmptyStartEvent()
    bad = ServiceActivity(
        component_code="echo", timer_events=[TimerEvent("time_cycle", "R2/every minute")]
    )
    start.extend(bad).extend(EmptyEndEvent())
    tree = build_tree(start)
    with pytest.raises(InvalidTreeError) as caught:
        validate_and_process_pipeline(tree)
    assert bad.id in caught.value.node_ids
    assert "every minute" in str(caught.value)


def test_the_builder_writes_the_original_shapes() -> None:
    start = EmptyStartEvent()
    node = ServiceActivity(
        component_code="echo",
        timeout=60,
        timeout_action=FORCED_FAIL_AND_SKIP,
        retry_policy=RetryPolicy(max_attempts=3, delay=1, backoff="exponential"),
        timer_events=[TimerEvent("time_cycle", "R5/PT10S", action="notify")],
    )
    start.extend(node).extend(EmptyEndEvent())
    raw = build_tree(start)["activities"][node.id]
    assert raw["timeout"] == 60
    assert raw["timeout_config"] == {"enable": True, "seconds": 60, "action": FORCED_FAIL_AND_SKIP}
    assert raw["retry_policy"] == {
        "max_attempts": 3,
        "delay": 1,
        "backoff": "exponential",
        "max_delay": None,
    }
    assert raw["events"] == {
        "timer_events": [
            {"enable": True, "timer_type": "time_cycle", "defined": "R5/PT10S", "action": "notify"}
        ]
    }
    timing = parse_timing(raw)
    assert timing is not None
    assert timing.retry == RetryPolicy(max_attempts=3, delay=1, backoff="exponential")
