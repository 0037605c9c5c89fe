"""Durable poll timers, on a clock the tests move by hand (``ManualClock``).

A polling activity's next poll is a stored due time: it fires when the engine's
clock reaches it, whether the run waits in memory, is parked, or was handed back
by a worker that closed, and never before. An attempt that is failed or revoked
leaves no timer behind.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import anyio
import pytest

from aiobamboo import api
from aiobamboo.testing import ManualClock
from conftest import PG_DSN, require_postgres

from . import components_timers
from .components_timers import HOUR, POLLS
from .ops_helpers import act, linear, ok, start, state_of, wait_outcome, wait_state, wait_until
from .parking_helpers import ClaimSpy, in_memory, needs_shared_storage, opened, rest, wait_parked
from .timing_helpers import clock, engine, settings

assert components_timers  # registers the hourly poll
assert clock  # fixtures of the timer suites
assert engine

#: Longer than a few claim rounds: a timer that should not fire would have by then.
QUIET = 0.4


async def polled(node_id: str, times: int, limit: float = 15.0) -> float:
    """Wait until ``node_id`` polled ``times`` times; the seconds it took."""
    began = time.monotonic()

    async def check() -> bool:
        assert POLLS[node_id] <= times, f"{node_id} polled {POLLS[node_id]} times, not {times}"
        return POLLS[node_id] == times

    await wait_until(check, f"poll {times} of {node_id}", limit)
    return time.monotonic() - began


async def quiet(runtime: Any, node_id: str, times: int, root: str | None = None) -> None:
    """Nothing fires for a while: still ``times`` polls, and a parked run stays parked."""
    await anyio.sleep(QUIET)
    assert POLLS[node_id] == times, f"{node_id} polled early"
    if root is not None and runtime.scheduler.settings.park_after is not None:
        assert not in_memory(runtime, root), "a timer not due loaded the run"


async def due_timers(runtime: Any, root: str) -> list[float]:
    snap = await runtime.store.load_run(root)
    return [] if snap is None else [t.due_time for t in snap.timers if t.due_time is not None]


# ======================================================================================
# an hour-long poll interval, on a clock moved by hand
# ======================================================================================


async def test_an_hourly_poll_fires_only_once_the_clock_moved_an_hour(
    engine: Any, clock: ManualClock
) -> None:
    poller, after = act("timer_hourly_poll", polls=3), act("echo")
    root = await start(engine, linear(poller, after))
    first = clock.now()
    await polled(poller.id, 1)  # the first poll comes at once
    await rest(engine, root)
    assert await due_timers(engine, root) == [first + HOUR]
    await quiet(engine, poller.id, 1, root)

    clock.advance(HOUR - 1)
    await quiet(engine, poller.id, 1, root)
    spy = ClaimSpy(engine)
    clock.advance(1)
    took = await polled(poller.id, 2)
    # A parked run is loaded by the claim round that finds its timer due.
    assert took < 1.5, f"the due timer fired after {took:.2f} s"
    if engine.scheduler.settings.park_after is not None:
        assert spy.count(root) == 1, spy.claimed
    else:
        assert spy.count(root) == 0, spy.claimed
    await rest(engine, root)
    assert await due_timers(engine, root) == [first + 2 * HOUR]

    clock.advance(HOUR)
    await polled(poller.id, 3)
    await wait_outcome(engine, root, "FINISHED")
    assert ok(await api.get_execution_data_outputs(engine, poller.id))["polls"] == 3
    assert await state_of(engine, root, after.id) == "FINISHED"
    assert await due_timers(engine, root) == []


async def test_a_callback_to_a_parked_polling_node_polls_early_and_keeps_the_schedule(
    engine: Any, clock: ManualClock
) -> None:
    poller = act("timer_hourly_poll", polls=3)
    root = await start(engine, linear(poller))
    first = clock.now()
    found = await wait_state(engine, root, poller.id, "RUNNING")
    await polled(poller.id, 1)
    await rest(engine, root)

    ok(await api.callback(engine, poller.id, found["version"], {"early": True}))
    await polled(poller.id, 2)
    await rest(engine, root)
    outputs = ok(await api.get_execution_data_outputs(engine, poller.id))
    assert outputs["callback_data"] == {"early": True}
    # The poll that the callback made is counted: the next comes an hour after it.
    assert await due_timers(engine, root) == [first + HOUR]
    await quiet(engine, poller.id, 2, root)
    clock.advance(HOUR)
    await polled(poller.id, 3)
    await wait_outcome(engine, root, "FINISHED")


# ======================================================================================
# a timer outlives its worker
# ======================================================================================


@pytest.mark.parametrize("park_after", [0.0, None], ids=["parked", "in-memory"])
@pytest.mark.parametrize("moved", [False, True], ids=["moved-after", "moved-while-closed"])
async def test_a_timer_keeps_its_due_time_across_a_restart(
    runtime_factory: Any, clock: ManualClock, park_after: float | None, moved: bool
) -> None:
    needs_shared_storage(runtime_factory.kind)
    if park_after is None and runtime_factory.kind == "sqlite-parking":
        pytest.skip("this runtime kind parks every run")
    poller = act("timer_hourly_poll", polls=2)
    first = clock.now()
    async with opened(runtime_factory, settings=settings(clock, park_after)) as rt:
        root = await start(rt, linear(poller))
        await polled(poller.id, 1)
        if park_after is not None:
            await wait_parked(rt, root)
        else:
            await wait_until(lambda: _has_timer(rt, root), "the timer to be stored")
    if moved:
        clock.advance(HOUR)
    async with opened(runtime_factory, settings=settings(clock, park_after)) as rt:
        assert await due_timers(rt, root) == [first + HOUR]
        if not moved:
            await quiet(rt, poller.id, 1)
            clock.advance(HOUR / 2)
            await quiet(rt, poller.id, 1)
            clock.advance(HOUR / 2)
        await polled(poller.id, 2)
        await wait_outcome(rt, root, "FINISHED")
        assert await due_timers(rt, root) == []


async def _has_timer(runtime: Any, root: str) -> bool:
    return bool(await due_timers(runtime, root))


# ======================================================================================
# an attempt that ends leaves no timer behind
# ======================================================================================


@pytest.mark.parametrize("operation", ["forced_fail", "revoke"])
async def test_an_ended_polling_attempt_leaves_no_timer(
    engine: Any, clock: ManualClock, operation: str
) -> None:
    poller = act("timer_hourly_poll", polls=2)
    root = await start(engine, linear(poller))
    await polled(poller.id, 1)
    await rest(engine, root)
    assert await due_timers(engine, root) != []

    if operation == "forced_fail":
        ok(await api.forced_fail_activity(engine, poller.id, "stop polling"))
        assert await wait_outcome(engine, root) == "FAILED"
    else:
        ok(await api.revoke_pipeline(engine, root))
        assert await wait_outcome(engine, root) == "REVOKED"
    if operation == "forced_fail":
        await rest(engine, root)
    assert await due_timers(engine, root) == []

    spy = ClaimSpy(engine)
    clock.advance(10 * HOUR)
    await quiet(engine, poller.id, 1, root)
    assert spy.count(root) == 0, "a timer of the ended attempt woke the run"
    if operation == "forced_fail":
        # A retry is a new attempt, which polls at once and then on its own schedule.
        retried = clock.now()
        ok(await api.retry_node(engine, poller.id))
        await polled(poller.id, 2)
        await rest(engine, root)
        assert await due_timers(engine, root) == [retried + HOUR]
        clock.advance(HOUR)
        await polled(poller.id, 3)
        await wait_outcome(engine, root, "FINISHED")
        assert await due_timers(engine, root) == []


# ======================================================================================
# takeover between two Postgres workers
# ======================================================================================


@pytest.mark.postgres
async def test_the_timer_of_a_run_parked_by_a_closed_worker_fires_in_another() -> None:
    await require_postgres()
    from aiobamboo_postgres import PostgresRuntime

    clock = ManualClock()
    schema = "t_" + uuid.uuid4().hex[:12]
    poller = act("timer_hourly_poll", polls=3)
    a = PostgresRuntime(PG_DSN, schema=schema, settings=settings(clock, 0.0))
    b = PostgresRuntime(PG_DSN, schema=schema, settings=settings(clock, 0.0))
    try:
        async with b:
            async with a:
                root = await start(a, linear(poller))
                await polled(poller.id, 1)
                await wait_parked(a, root)
                spy = ClaimSpy(b)
            assert not in_memory(b, root)
            await quiet(b, poller.id, 1, root)
            clock.advance(HOUR)
            took = await polled(poller.id, 2)
            assert took < 1.5, f"the due timer fired after {took:.2f} s"
            assert spy.count(root) == 1, spy.claimed
            await wait_parked(b, root)
            clock.advance(HOUR)
            await polled(poller.id, 3)
            await wait_outcome(b, root, "FINISHED")
    finally:
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()
