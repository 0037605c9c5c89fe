"""Boundary timer events of an activity (the original's ``node_timer_event``), on a manual clock.

Each event is armed when its node starts running and dropped when it stops: an ISO
8601 date fires once at that date, a duration once after it, a cycle (``R3/PT10S``,
``R/P1D``) every interval, so many times or without end. Each firing runs its action:
forced fail, forced fail and skip, or a registered ``TimerEventAction``.
"""

from __future__ import annotations

import datetime
from typing import Any

import anyio
import pytest

from aiobamboo import api
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
from aiobamboo.exceptions import InvalidTreeError
from aiobamboo.testing import ManualClock
from aiobamboo.timing import TimerEvent

from . import components_time
from .components_time import notified
from .ops_helpers import (
    GRACE,
    act,
    histories,
    ok,
    outputs,
    refused,
    start,
    state_of,
    wait_outcome,
    wait_state,
    wait_until,
)
from .parking_helpers import needs_shared_storage, opened, rest, wait_parked
from .timing_helpers import MINUTE, clock, due_times, engine, settings, timed, timer_rows

assert clock
assert engine
assert components_time

DAY = 86400.0


def _linear(*elems: Any) -> dict[str, Any]:
    start_ = EmptyStartEvent()
    current: Any = start_
    for elem in elems:
        current = current.extend(elem)
    current.extend(EmptyEndEvent())
    return build_tree(start_)


async def notifications(node_id: str, count: int) -> list[Any]:
    async def check() -> list[Any] | None:
        got = notified(node_id)
        assert len(got) <= count, f"{node_id} notified {len(got)} times, not {count}"
        return got if len(got) == count else None

    return await wait_until(check, f"notification {count} of {node_id}")


async def quiet(node_id: str, count: int) -> None:
    await anyio.sleep(GRACE)
    assert len(notified(node_id)) == count


async def running(runtime: Any, root: str, node_id: str) -> dict[str, Any]:
    found = await wait_state(runtime, root, node_id, "RUNNING")
    await rest(runtime, root)
    return found


# ======================================================================================
# durations and dates, with the built-in actions
# ======================================================================================


async def test_a_duration_event_forces_the_node_to_fail(engine: Any, clock: ManualClock) -> None:
    waiter = timed("callback", timer_events=[TimerEvent("time_duration", "PT10M")])
    root = await start(engine, _linear(waiter))
    await running(engine, root, waiter.id)
    assert await due_times(engine, root, "event") == [clock.now() + 10 * MINUTE]
    clock.advance(10 * MINUTE - 1)
    await anyio.sleep(GRACE)
    assert await state_of(engine, root, waiter.id) == "RUNNING"
    clock.advance(1)
    assert await wait_outcome(engine, root) == "FAILED"
    out = await outputs(engine, waiter.id)
    assert out["_forced_failed"] is True
    assert "timer event 1" in out["ex_data"]
    assert await timer_rows(engine, root) == []


async def test_a_date_event_with_the_originals_skip_action(engine: Any, clock: ManualClock) -> None:
    when = datetime.datetime.fromtimestamp(clock.now() + 3 * 3600, tz=datetime.UTC)
    event = TimerEvent("time_date", when.isoformat(), action="bamboo_engine_forced_fail_and_skip")
    waiter, after = timed("callback", timer_events=[event]), act("echo")
    root = await start(engine, _linear(waiter, after))
    await running(engine, root, waiter.id)
    clock.advance(3 * 3600 - 1)
    await anyio.sleep(GRACE)
    assert await state_of(engine, root, waiter.id) == "RUNNING"
    clock.advance(1.001)  # the date is read to the microsecond
    await wait_outcome(engine, root, "FINISHED")
    found = await wait_state(engine, root, waiter.id, "FINISHED")
    assert found["skip"] is True
    assert await state_of(engine, root, after.id) == "FINISHED"
    assert len(await histories(engine, waiter.id)) == 1


async def test_the_earlier_of_a_timeout_and_an_event_acts(engine: Any, clock: ManualClock) -> None:
    waiter = timed(
        "callback",
        timeout=3600,
        timer_events=[TimerEvent("time_duration", "PT30M", action="forced_fail_and_skip")],
    )
    root = await start(engine, _linear(waiter))
    await running(engine, root, waiter.id)
    clock.advance(30 * MINUTE)
    await wait_outcome(engine, root, "FINISHED")
    assert "timer event" in (await outputs(engine, waiter.id))["ex_data"]
    assert await timer_rows(engine, root) == []


async def test_an_event_of_a_node_that_finished_never_fires(
    engine: Any, clock: ManualClock
) -> None:
    waiter = timed("callback", timer_events=[TimerEvent("time_cycle", "R3/PT10S", "time_notify")])
    root = await start(engine, _linear(waiter))
    found = await running(engine, root, waiter.id)
    ok(await api.callback(engine, waiter.id, found["version"], {}))
    await wait_outcome(engine, root, "FINISHED")
    clock.advance(MINUTE)
    await quiet(waiter.id, 0)
    assert await timer_rows(engine, root) == []


# ======================================================================================
# cycles and user-defined actions
# ======================================================================================


async def test_a_cycle_fires_its_action_so_many_times(engine: Any, clock: ManualClock) -> None:
    waiter = timed("callback", timer_events=[TimerEvent("time_cycle", "R3/PT10S", "time_notify")])
    root = await start(engine, _linear(waiter))
    found = await running(engine, root, waiter.id)
    for fired in (1, 2, 3):
        await quiet(waiter.id, fired - 1)
        clock.advance(10)
        got = await notifications(waiter.id, fired)
        await rest(engine, root)
    assert got[0][1] == found["version"]
    assert got[0][2]["waiting"] is True  # the action sees the node's execution data
    # Spent, but kept while the attempt runs: a reload does not arm it again.
    assert [t.due_time for t in await timer_rows(engine, root, "event")] == [1e300]
    clock.advance(10 * MINUTE)
    await quiet(waiter.id, 3)
    # The node itself is untouched by a user action: it still waits.
    assert await state_of(engine, root, waiter.id) == "RUNNING"
    ok(await api.callback(engine, waiter.id, found["version"], {}))
    await wait_outcome(engine, root, "FINISHED")
    assert await timer_rows(engine, root) == []


async def test_an_endless_cycle_fires_every_interval(engine: Any, clock: ManualClock) -> None:
    waiter = timed("callback", timer_events=[TimerEvent("time_cycle", "R/P1D", "time_notify")])
    root = await start(engine, _linear(waiter))
    await running(engine, root, waiter.id)
    for fired in range(1, 5):
        clock.advance(DAY)
        await notifications(waiter.id, fired)
        await rest(engine, root)
        assert await due_times(engine, root, "event") == [clock.now() + DAY]


async def test_an_action_that_raises_changes_nothing_else(engine: Any, clock: ManualClock) -> None:
    waiter = timed(
        "callback",
        timer_events=[
            TimerEvent("time_cycle", "R2/PT10S", "time_broken"),
            TimerEvent("time_cycle", "R2/PT10S", "time_notify"),
            TimerEvent("time_duration", "PT10S", "not_registered"),
        ],
    )
    root = await start(engine, _linear(waiter))
    found = await running(engine, root, waiter.id)
    clock.advance(10)
    await notifications(waiter.id, 1)
    await rest(engine, root)
    clock.advance(10)
    await notifications(waiter.id, 2)
    assert await state_of(engine, root, waiter.id) == "RUNNING"
    ok(await api.callback(engine, waiter.id, found["version"], {}))
    await wait_outcome(engine, root, "FINISHED")


@pytest.mark.parametrize("park_after", [0.0, None], ids=["parked", "in-memory"])
async def test_a_cycle_keeps_its_count_across_a_restart(
    runtime_factory: Any, clock: ManualClock, park_after: float | None
) -> None:
    needs_shared_storage(runtime_factory.kind)
    if park_after is None and runtime_factory.kind == "sqlite-parking":
        pytest.skip("this runtime kind parks every run")
    waiter = timed("callback", timer_events=[TimerEvent("time_cycle", "R3/PT1H", "time_notify")])
    async with opened(runtime_factory, settings=settings(clock, park_after)) as rt:
        root = await start(rt, _linear(waiter))
        await running(rt, root, waiter.id)
        clock.advance(3600)
        await notifications(waiter.id, 1)
        await rest(rt, root)
        if park_after is not None:
            await wait_parked(rt, root)
        else:
            await wait_until(lambda: _event_stored(rt, root, 1), "the first firing to be stored")
    async with opened(runtime_factory, settings=settings(clock, park_after)) as rt:
        await quiet(waiter.id, 1)
        clock.advance(3600)
        await notifications(waiter.id, 2)
        await rest(rt, root)
        clock.advance(3600)
        await notifications(waiter.id, 3)
        await rest(rt, root)
        clock.advance(3600)
        await quiet(waiter.id, 3)
        assert await state_of(rt, root, waiter.id) == "RUNNING"


async def _event_stored(runtime: Any, root: str, fired: int) -> bool:
    rows = await timer_rows(runtime, root, "event")
    return any(row.kind.endswith(f":{fired}") for row in rows)


async def test_a_malformed_expression_is_refused_naming_the_node(runtime: Any) -> None:
    bad = ServiceActivity(
        component_code="callback", timer_events=[TimerEvent("time_duration", "ten minutes")]
    )
    res = await api.run_pipeline(runtime, _linear(bad))
    refused(res, "ten minutes", bad.id)
    assert isinstance(res.exc, InvalidTreeError)
    assert bad.id in res.exc.node_ids
