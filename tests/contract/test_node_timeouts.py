"""Node timeouts: ``ServiceActivity(timeout=seconds)`` on a clock the tests move by hand.

The deadline is a stored timer set when the node starts running and dropped when
it stops; it fires in memory, from storage while the run is parked, and after a
restart, and never on an attempt that ended in time.
"""

from __future__ import annotations

import random
from typing import Any

import anyio
import pytest

from aiobamboo import api
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
from aiobamboo.exceptions import InvalidTreeError
from aiobamboo.testing import ManualClock

from .ops_helpers import (
    GRACE,
    act,
    histories,
    jitter,
    ok,
    outputs,
    place,
    refused,
    start,
    state_of,
    steps,
    wait_gate_entered,
    wait_outcome,
    wait_state,
    wait_until,
)
from .parking_helpers import in_memory, needs_shared_storage, opened, rest, wait_parked
from .timing_helpers import (
    MINUTE,
    clock,
    due_times,
    engine,
    settings,
    timed,
    timer_rows,
)

assert clock
assert engine


def _timed_out(found: dict[str, Any]) -> bool:
    return bool(found.get("_forced_failed")) and "timeout" in str(found.get("ex_data"))


# ======================================================================================
# a deadline fires when the clock reaches it, wherever the node is
# ======================================================================================


@pytest.mark.parametrize("where", ["top", "parallel", "subprocess"])
async def test_a_callback_node_that_outlives_its_timeout_is_forced_to_fail(
    engine: Any, clock: ManualClock, where: str
) -> None:
    waiter, after = timed("callback", timeout=60), act("echo")
    placed = place(where, steps(waiter, after))
    root = await start(engine, placed.tree)
    began = clock.now()
    found = await wait_state(engine, root, waiter.id, "RUNNING")
    await rest(engine, root)
    assert await due_times(engine, root, "timeout") == [began + MINUTE]

    clock.advance(MINUTE - 1)
    await anyio.sleep(GRACE)
    assert await state_of(engine, root, waiter.id) == "RUNNING"

    clock.advance(1)
    await wait_state(engine, root, waiter.id, "FAILED")
    assert await wait_outcome(engine, root) == "FAILED"
    assert _timed_out(await outputs(engine, waiter.id))
    assert await state_of(engine, root, after.id) is None
    assert await timer_rows(engine, root) == []
    # The abandoned attempt takes no callback.
    refused(await api.callback(engine, waiter.id, found["version"], {}))


async def test_forced_fail_and_skip_goes_on_past_the_node(engine: Any, clock: ManualClock) -> None:
    waiter = timed("callback", timeout=60, timeout_action="forced_fail_and_skip")
    after = act("echo")
    start_ = EmptyStartEvent()
    start_.extend(waiter).extend(after).extend(EmptyEndEvent())
    tree = build_tree(start_)
    assert tree["activities"][waiter.id]["timeout_config"] == {
        "enable": True,
        "seconds": 60,
        "action": "forced_fail_and_skip",
    }
    root = await start(engine, tree)
    await wait_state(engine, root, waiter.id, "RUNNING")
    await rest(engine, root)
    clock.advance(MINUTE)
    await wait_outcome(engine, root, "FINISHED")
    found = await wait_state(engine, root, waiter.id, "FINISHED")
    assert found["skip"] is True
    assert _timed_out(await outputs(engine, waiter.id))
    assert await state_of(engine, root, after.id) == "FINISHED"
    # As an operator's skip: one history row, of the failed attempt.
    assert len(await histories(engine, waiter.id)) == 1


async def test_an_unskippable_node_is_only_failed(engine: Any, clock: ManualClock) -> None:
    waiter = timed("callback", timeout=60, timeout_action="forced_fail_and_skip", skippable=False)
    root = await start(engine, _linear(waiter))
    await wait_state(engine, root, waiter.id, "RUNNING")
    await rest(engine, root)
    clock.advance(MINUTE)
    assert await wait_outcome(engine, root) == "FAILED"


async def test_a_component_call_that_outlives_its_timeout_is_abandoned(
    engine: Any, clock: ManualClock
) -> None:
    gate = timed("gate", timeout=5)
    root = await start(engine, _linear(gate))
    await wait_gate_entered(engine, root, gate.id)
    # A component call in flight keeps the run in memory: the timer fires there.
    assert in_memory(engine, root)
    clock.advance(5)
    await wait_state(engine, root, gate.id, "FAILED")
    out = await outputs(engine, gate.id)
    assert _timed_out(out)
    assert "passed" not in out
    assert await wait_outcome(engine, root) == "FAILED"


# ======================================================================================
# a node that ends in time keeps no deadline
# ======================================================================================


async def test_a_node_that_finished_in_time_never_times_out(
    engine: Any, clock: ManualClock
) -> None:
    waiter, after = timed("callback", timeout=60), act("echo")
    root = await start(engine, _linear(waiter, after))
    found = await wait_state(engine, root, waiter.id, "RUNNING")
    await rest(engine, root)
    clock.advance(MINUTE - 1)
    ok(await api.callback(engine, waiter.id, found["version"], {"in": "time"}))
    await wait_outcome(engine, root, "FINISHED")
    assert await timer_rows(engine, root) == []
    clock.advance(10 * MINUTE)
    await anyio.sleep(GRACE)
    assert await state_of(engine, root, waiter.id) == "FINISHED"
    assert not _timed_out(await outputs(engine, waiter.id))


@pytest.mark.parametrize("seed", range(6))
async def test_a_timeout_racing_a_callback_either_fails_the_node_or_lets_it_finish(
    engine: Any, clock: ManualClock, seed: int
) -> None:
    rng = random.Random(seed)
    waiter, after = timed("callback", timeout=60), act("echo")
    root = await start(engine, _linear(waiter, after))
    found = await wait_state(engine, root, waiter.id, "RUNNING")
    await rest(engine, root)
    answers: list[Any] = []

    async def deliver() -> None:
        await jitter(rng)
        answers.append(await api.callback(engine, waiter.id, found["version"], {"n": seed}))

    async def expire() -> None:
        await jitter(rng)
        clock.advance(MINUTE)

    async with anyio.create_task_group() as tg:
        tg.start_soon(deliver)
        tg.start_soon(expire)
    outcome = await wait_outcome(engine, root)
    out = await outputs(engine, waiter.id)
    if outcome == "FINISHED":
        assert not _timed_out(out), out
        assert await state_of(engine, root, after.id) == "FINISHED"
        assert answers[0].result
    else:
        assert outcome == "FAILED"
        assert _timed_out(out), out
        assert await state_of(engine, root, waiter.id) == "FAILED"
        assert await state_of(engine, root, after.id) is None
    assert await timer_rows(engine, root) == []


async def test_each_attempt_has_its_own_deadline(engine: Any, clock: ManualClock) -> None:
    waiter = timed("callback", timeout=60)
    root = await start(engine, _linear(waiter))
    await wait_state(engine, root, waiter.id, "RUNNING")
    await rest(engine, root)
    clock.advance(MINUTE)
    await wait_state(engine, root, waiter.id, "FAILED")
    await rest(engine, root)

    clock.advance(10 * MINUTE)
    retried = clock.now()
    ok(await api.retry_node(engine, waiter.id))
    found = await wait_state(engine, root, waiter.id, "RUNNING")
    await rest(engine, root)
    assert await due_times(engine, root, "timeout") == [retried + MINUTE]
    ok(await api.callback(engine, waiter.id, found["version"], {}))
    await wait_outcome(engine, root, "FINISHED")
    assert await timer_rows(engine, root) == []


async def test_an_operator_forced_fail_drops_the_deadline(engine: Any, clock: ManualClock) -> None:
    waiter = timed("callback", timeout=60)
    root = await start(engine, _linear(waiter))
    await wait_state(engine, root, waiter.id, "RUNNING")
    await rest(engine, root)
    ok(await api.forced_fail_activity(engine, waiter.id, "by hand"))
    await wait_outcome(engine, root, "FAILED")
    await rest(engine, root)
    assert await timer_rows(engine, root) == []
    clock.advance(MINUTE)
    await anyio.sleep(GRACE)
    assert (await outputs(engine, waiter.id))["ex_data"] == "by hand"


# ======================================================================================
# a deadline outlives its worker
# ======================================================================================


@pytest.mark.parametrize("park_after", [0.0, None], ids=["parked", "in-memory"])
@pytest.mark.parametrize("moved", [False, True], ids=["moved-after", "moved-while-closed"])
async def test_a_deadline_fires_after_a_restart(
    runtime_factory: Any, clock: ManualClock, park_after: float | None, moved: bool
) -> None:
    needs_shared_storage(runtime_factory.kind)
    if park_after is None and runtime_factory.kind == "sqlite-parking":
        pytest.skip("this runtime kind parks every run")
    waiter, after = timed("callback", timeout=3600), act("echo")
    began = clock.now()
    async with opened(runtime_factory, settings=settings(clock, park_after)) as rt:
        root = await start(rt, _linear(waiter, after))
        await wait_state(rt, root, waiter.id, "RUNNING")
        if park_after is not None:
            await wait_parked(rt, root)
        else:
            await wait_until(lambda: _has_deadline(rt, root), "the deadline to be stored")
    if moved:
        clock.advance(3600)
    async with opened(runtime_factory, settings=settings(clock, park_after)) as rt:
        assert await due_times(rt, root, "timeout") == [began + 3600]
        if not moved:
            await anyio.sleep(GRACE)
            assert await state_of(rt, root, waiter.id) == "RUNNING"
            clock.advance(3600)
        await wait_state(rt, root, waiter.id, "FAILED")
        assert await wait_outcome(rt, root) == "FAILED"
        assert _timed_out(await outputs(rt, waiter.id))
        # Fired once: the attempt failed once, and no deadline is left.
        assert await timer_rows(rt, root) == []
        assert await histories(rt, waiter.id) == []


async def _has_deadline(runtime: Any, root: str) -> bool:
    return bool(await timer_rows(runtime, root, "timeout"))


@pytest.mark.postgres
async def test_the_deadline_of_a_run_parked_by_a_closed_worker_fires_in_another() -> None:
    import uuid

    from aiobamboo_postgres import PostgresRuntime
    from conftest import PG_DSN, require_postgres

    await require_postgres()
    clock = ManualClock()
    schema = "t_" + uuid.uuid4().hex[:12]
    waiter = timed("callback", timeout=3600)
    a = PostgresRuntime(PG_DSN, schema=schema, settings=settings(clock, 0.0))
    b = PostgresRuntime(PG_DSN, schema=schema, settings=settings(clock, 0.0))
    try:
        async with b:
            async with a:
                root = await start(a, _linear(waiter))
                await wait_state(a, root, waiter.id, "RUNNING")
                await wait_parked(a, root)
            assert not in_memory(b, root)
            clock.advance(3600)
            await wait_state(b, root, waiter.id, "FAILED")
            assert _timed_out(await outputs(b, waiter.id))
            assert await timer_rows(b, root) == []
    finally:
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


# ======================================================================================
# the tree says it, the validator checks it
# ======================================================================================


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"timeout": -5}, "'timeout' must be positive"),
        ({"timeout_config": {"enable": True, "seconds": 10, "action": "explode"}}, "explode"),
        ({"timeout_config": {"enable": True, "seconds": "soon"}}, "timeout seconds"),
    ],
)
async def test_a_bad_timeout_is_refused_naming_the_node(
    runtime: Any, fields: dict[str, Any], fragment: str
) -> None:
    node = ServiceActivity(component_code="echo")
    tree = _linear(node)
    tree["activities"][node.id].update(fields)
    res = await api.run_pipeline(runtime, tree)
    message = refused(res, fragment, node.id)
    assert isinstance(res.exc, InvalidTreeError), message
    assert node.id in res.exc.node_ids


async def test_a_disabled_timeout_config_leaves_the_node_untimed(
    engine: Any, clock: ManualClock
) -> None:
    waiter = timed("callback", timeout=None, timeout_action="forced_fail")
    root = await start(engine, _linear(waiter))
    await wait_state(engine, root, waiter.id, "RUNNING")
    await rest(engine, root)
    assert await timer_rows(engine, root) == []


def _linear(*elems: Any) -> dict[str, Any]:
    start_ = EmptyStartEvent()
    current: Any = start_
    for elem in elems:
        current = current.extend(elem)
    current.extend(EmptyEndEvent())
    return build_tree(start_)
