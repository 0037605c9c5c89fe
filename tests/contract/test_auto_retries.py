"""Automatic retries: ``ServiceActivity(retry_policy=RetryPolicy(...))`` on a clock moved by hand.

A failed attempt is retried after its back-off by a stored timer; each attempt
is a normal retry (a history row, a new version); an operator's retry or skip
cancels the pending one, and an operator's forced fail schedules none.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from aiobamboo import api
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, build_tree
from aiobamboo.testing import ManualClock
from aiobamboo.timing import RetryPolicy

from . import components_time
from .components_time import ATTEMPTS
from .ops_helpers import (
    GRACE,
    act,
    entry,
    histories,
    ok,
    outputs,
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


def _linear(*elems: Any) -> dict[str, Any]:
    start_ = EmptyStartEvent()
    current: Any = start_
    for elem in elems:
        current = current.extend(elem)
    current.extend(EmptyEndEvent())
    return build_tree(start_)


async def attempts(node_id: str, count: int) -> None:
    async def check() -> bool:
        assert ATTEMPTS[node_id] <= count, f"{node_id} ran {ATTEMPTS[node_id]} times"
        return ATTEMPTS[node_id] == count

    await wait_until(check, f"attempt {count} of {node_id}")


async def failed_at(runtime: Any, root: str, node_id: str, retry: int) -> dict[str, Any]:
    """Wait until the node is FAILED with ``retry`` retries behind it, the run resting."""

    async def check() -> dict[str, Any] | None:
        found = await entry(runtime, root, node_id)
        if found is not None and found["state"] == "FAILED" and found["retry"] == retry:
            return found
        return None

    found = await wait_until(check, f"{node_id} to fail after {retry} retries")
    await rest(runtime, root)
    return found


async def test_a_failed_node_is_retried_after_a_fixed_delay_until_it_succeeds(
    engine: Any, clock: ManualClock
) -> None:
    flaky = timed(
        "time_fail_times",
        inputs={"failures": 2},
        retry_policy=RetryPolicy(max_attempts=3, delay=MINUTE),
    )
    after = act("echo")
    root = await start(engine, _linear(flaky, after))
    await failed_at(engine, root, flaky.id, 0)
    assert await due_times(engine, root, "retry") == [clock.now() + MINUTE]

    clock.advance(MINUTE - 1)
    await anyio.sleep(GRACE)
    assert ATTEMPTS[flaky.id] == 1
    clock.advance(1)
    await attempts(flaky.id, 2)
    await failed_at(engine, root, flaky.id, 1)
    assert await due_times(engine, root, "retry") == [clock.now() + MINUTE]

    clock.advance(MINUTE)
    await wait_outcome(engine, root, "FINISHED")
    assert ATTEMPTS[flaky.id] == 3
    found = await wait_state(engine, root, flaky.id, "FINISHED")
    assert found["retry"] == 2
    # Each automatic attempt is a normal retry: a history row per failed attempt.
    rows = await histories(engine, flaky.id)
    assert [r["retry"] for r in rows] == [0, 1]
    assert len({r["version"] for r in rows} | {found["version"]}) == 3
    assert (await outputs(engine, flaky.id))["attempt"] == 3
    assert await state_of(engine, root, after.id) == "FINISHED"
    assert await timer_rows(engine, root) == []


async def test_retries_stop_after_max_attempts(engine: Any, clock: ManualClock) -> None:
    flaky = timed(
        "time_fail_times", inputs={"failures": 9}, retry_policy=RetryPolicy(max_attempts=2)
    )
    root = await start(engine, _linear(flaky))
    # A zero delay retries at once, with no clock to move.
    await attempts(flaky.id, 2)
    await failed_at(engine, root, flaky.id, 1)
    assert await wait_outcome(engine, root) == "FAILED"
    assert await timer_rows(engine, root) == []
    clock.advance(10 * MINUTE)
    await anyio.sleep(GRACE)
    assert ATTEMPTS[flaky.id] == 2


async def test_exponential_back_off_capped_by_max_delay(engine: Any, clock: ManualClock) -> None:
    policy = RetryPolicy(max_attempts=5, delay=10, backoff="exponential", max_delay=25)
    flaky = timed("time_fail_times", inputs={"failures": 9}, retry_policy=policy)
    root = await start(engine, _linear(flaky))
    waits = []
    for retry in range(4):
        await failed_at(engine, root, flaky.id, retry)
        [due] = await due_times(engine, root, "retry")
        waits.append(due - clock.now())
        clock.advance(waits[-1])
        await attempts(flaky.id, retry + 2)
    assert waits == [10, 20, 25, 25]
    await failed_at(engine, root, flaky.id, 4)
    assert await timer_rows(engine, root) == []
    assert await wait_outcome(engine, root) == "FAILED"


async def test_wait_pipeline_waits_for_a_pending_automatic_retry(
    engine: Any, clock: ManualClock
) -> None:
    flaky = timed(
        "time_fail_times", inputs={"failures": 1}, retry_policy=RetryPolicy(2, delay=MINUTE)
    )
    root = await start(engine, _linear(flaky))
    await failed_at(engine, root, flaky.id, 0)
    res = await api.wait_pipeline(engine, root, timeout=GRACE)
    assert not res.result, "a pipeline with a retry to come is not at rest"
    clock.advance(MINUTE)
    await wait_outcome(engine, root, "FINISHED")


@pytest.mark.parametrize("operation", ["retry_node", "skip_node"])
async def test_an_operators_retry_or_skip_cancels_the_pending_automatic_retry(
    engine: Any, clock: ManualClock, operation: str
) -> None:
    flaky = timed(
        "time_fail_times", inputs={"failures": 2}, retry_policy=RetryPolicy(3, delay=MINUTE)
    )
    root = await start(engine, _linear(flaky))
    await failed_at(engine, root, flaky.id, 0)
    ok(await getattr(api, operation)(engine, flaky.id))
    if operation == "skip_node":
        await wait_outcome(engine, root, "FINISHED")
        assert await timer_rows(engine, root) == []
        clock.advance(MINUTE)
        await anyio.sleep(GRACE)
        assert ATTEMPTS[flaky.id] == 1
        return
    # The operator's attempt fails too: it counts, and the next automatic one
    # is timed from its failure; the cancelled one never runs.
    await attempts(flaky.id, 2)
    await failed_at(engine, root, flaky.id, 1)
    failed = clock.now()
    assert await due_times(engine, root, "retry") == [failed + MINUTE]
    clock.advance(MINUTE)
    await wait_outcome(engine, root, "FINISHED")
    assert ATTEMPTS[flaky.id] == 3


async def test_an_operators_forced_fail_schedules_no_retry(engine: Any, clock: ManualClock) -> None:
    waiter = timed("callback", retry_policy=RetryPolicy(3))
    root = await start(engine, _linear(waiter))
    await wait_state(engine, root, waiter.id, "RUNNING")
    await rest(engine, root)
    ok(await api.forced_fail_activity(engine, waiter.id, "stop"))
    assert await wait_outcome(engine, root) == "FAILED"
    await rest(engine, root)
    assert await timer_rows(engine, root) == []
    found = await entry(engine, root, waiter.id)
    assert found is not None
    assert found["retry"] == 0


async def test_a_node_that_timed_out_is_retried_by_its_policy(
    engine: Any, clock: ManualClock
) -> None:
    waiter = timed("callback", timeout=60, retry_policy=RetryPolicy(2, delay=MINUTE))
    root = await start(engine, _linear(waiter))
    await wait_state(engine, root, waiter.id, "RUNNING")
    await rest(engine, root)
    clock.advance(MINUTE)
    await failed_at(engine, root, waiter.id, 0)
    clock.advance(MINUTE)
    found = await wait_state(engine, root, waiter.id, "RUNNING")
    assert found["retry"] == 1
    await rest(engine, root)
    ok(await api.callback(engine, waiter.id, found["version"], {}))
    await wait_outcome(engine, root, "FINISHED")


async def test_a_node_that_may_not_be_retried_is_not(engine: Any, clock: ManualClock) -> None:
    flaky = timed(
        "time_fail_times", inputs={"failures": 1}, retryable=False, retry_policy=RetryPolicy(3)
    )
    root = await start(engine, _linear(flaky))
    await failed_at(engine, root, flaky.id, 0)
    assert await timer_rows(engine, root) == []
    assert await wait_outcome(engine, root) == "FAILED"


@pytest.mark.parametrize("park_after", [0.0, None], ids=["parked", "in-memory"])
async def test_a_pending_retry_survives_a_restart(
    runtime_factory: Any, clock: ManualClock, park_after: float | None
) -> None:
    needs_shared_storage(runtime_factory.kind)
    if park_after is None and runtime_factory.kind == "sqlite-parking":
        pytest.skip("this runtime kind parks every run")
    flaky = timed(
        "time_fail_times", inputs={"failures": 1}, retry_policy=RetryPolicy(2, delay=3600)
    )
    async with opened(runtime_factory, settings=settings(clock, park_after)) as rt:
        root = await start(rt, _linear(flaky))
        await failed_at(rt, root, flaky.id, 0)
        if park_after is not None:
            await wait_parked(rt, root)
    async with opened(runtime_factory, settings=settings(clock, park_after)) as rt:
        assert await due_times(rt, root, "retry") == [clock.now() + 3600]
        await anyio.sleep(GRACE)
        assert ATTEMPTS[flaky.id] == 1
        clock.advance(3600)
        await wait_outcome(rt, root, "FINISHED")
        assert ATTEMPTS[flaky.id] == 2
        assert len(await histories(rt, flaky.id)) == 1
