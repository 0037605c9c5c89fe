"""Rollback, as the original's contrib app: TOKEN and ANY modes, skipped nodes, a failing hook.

The pipeline goes back from a FAILED node to a FINISHED one before it: in TOKEN
mode each activity's ``rollback`` hook is called on the way back, the last one
run first; then the pipeline runs again from the target.
"""

from __future__ import annotations

from typing import Any

import anyio

from aiobamboo import api
from aiobamboo.builder import (
    ConvergeGateway,
    EmptyEndEvent,
    EmptyStartEvent,
    ParallelGateway,
    build_tree,
)

from . import components_time
from .components_time import ATTEMPTS, UNDO_FAILURES, UNDO_GATES, UNDONE, undone
from .ops_helpers import (
    act,
    histories,
    ok,
    refused,
    start,
    state_of,
    wait_outcome,
    wait_state,
    wait_until,
)
from .parking_helpers import needs_shared_storage, opened

assert components_time


def _chain() -> tuple[dict[str, Any], Any, Any, Any]:
    """start -> a -> b -> c (fails once) -> end."""
    a, b = act("time_undoable"), act("time_undoable")
    c = act("time_fail_times", failures=1)
    s = EmptyStartEvent()
    s.extend(a).extend(b).extend(c).extend(EmptyEndEvent())
    return build_tree(s), a, b, c


async def _failed_chain(runtime: Any) -> tuple[str, Any, Any, Any]:
    tree, a, b, c = _chain()
    root = await start(runtime, tree)
    assert await wait_outcome(runtime, root) == "FAILED"
    return root, a, b, c


async def test_token_rollback_undoes_each_node_last_first_then_runs_again(runtime: Any) -> None:
    root, a, b, c = await _failed_chain(runtime)
    assert ok(await api.get_allowed_rollback_node_id_list(runtime, root, c.id)) == sorted(
        [a.id, b.id]
    )
    ok(await api.rollback(runtime, root, c.id, a.id))
    await wait_outcome(runtime, root, "FINISHED")
    # The failed start has nothing to undo; then b, then a.
    assert undone(a.id, b.id, c.id) == [b.id, a.id]
    assert (ATTEMPTS[a.id], ATTEMPTS[b.id], ATTEMPTS[c.id]) == (2, 2, 2)
    found = await wait_state(runtime, root, a.id, "FINISHED")
    assert found["retry"] == 1
    assert len(await histories(runtime, a.id)) == 1


async def test_skip_rollback_nodes_are_not_undone(runtime: Any) -> None:
    root, a, b, c = await _failed_chain(runtime)
    ok(await api.rollback(runtime, root, c.id, a.id, skip_rollback_nodes=[b.id]))
    await wait_outcome(runtime, root, "FINISHED")
    assert undone(a.id, b.id) == [a.id]


async def test_a_failing_hook_stops_the_rollback_until_it_is_retried(runtime: Any) -> None:
    root, a, b, c = await _failed_chain(runtime)
    UNDO_FAILURES[b.id] = 1
    ok(await api.rollback(runtime, root, c.id, a.id))
    res = await api.wait_pipeline(runtime, root, timeout=15)
    assert res.data == "ROLL_BACK_FAILED", res.message
    assert res.message == f"rollback failed at: {b.id}"
    assert await state_of(runtime, root, b.id) == "ROLL_BACK_FAILED"
    assert await state_of(runtime, root, a.id) == "ROLLING_BACK"
    assert await state_of(runtime, root, root) == "ROLL_BACK_FAILED"
    assert undone(a.id, b.id) == [b.id]

    refused(await api.retry_rollback_failed_node(runtime, root, a.id), "not ROLL_BACK_FAILED")
    ok(await api.retry_rollback_failed_node(runtime, root, b.id, {"try": 2}))
    await wait_outcome(runtime, root, "FINISHED")
    assert undone(a.id, b.id) == [b.id, b.id, a.id]
    assert (b.id, {"try": 2}) in UNDONE
    assert ATTEMPTS[c.id] == 2


async def test_any_mode_jumps_without_hooks(runtime: Any) -> None:
    root, a, b, c = await _failed_chain(runtime)
    refused(await api.retry_rollback_failed_node(runtime, root, b.id, mode="ANY"), "TOKEN mode")
    ok(await api.rollback(runtime, root, c.id, b.id, mode="ANY"))
    await wait_outcome(runtime, root, "FINISHED")
    assert undone(a.id, b.id, c.id) == []
    assert (ATTEMPTS[a.id], ATTEMPTS[b.id], ATTEMPTS[c.id]) == (1, 2, 2)


async def test_rollbacks_that_do_not_apply_are_refused(runtime: Any) -> None:
    root, a, b, c = await _failed_chain(runtime)
    refused(await api.rollback(runtime, root, a.id, c.id), "not FAILED")
    refused(await api.rollback(runtime, root, c.id, "e" + "0" * 32), "not a service activity")
    refused(await api.rollback(runtime, root, c.id, a.id, mode="SOME"), "mode")
    refused(await api.rollback(runtime, a.id, c.id, a.id), "not a root pipeline")
    refused(await api.reserve_rollback(runtime, root, c.id, a.id), "not supported")
    refused(await api.cancel_reserved_rollback(runtime, root, c.id, a.id), "not supported")
    # Nothing changed: the pipeline still waits at its failed node.
    assert await wait_outcome(runtime, root) == "FAILED"
    assert UNDONE == [] or undone(a.id, b.id, c.id) == []


async def test_token_mode_stays_in_a_parallel_branch(runtime: Any) -> None:
    s, pg, cg = EmptyStartEvent(), ParallelGateway(), ConvergeGateway()
    before = act("time_undoable")
    left_a, left_b = act("time_undoable"), act("time_fail_times", failures=1)
    right = act("time_undoable")
    s.extend(before).extend(pg)
    pg.extend(left_a).extend(left_b).extend(cg)
    pg.extend(right).extend(cg)
    cg.extend(EmptyEndEvent())
    root = await start(runtime, build_tree(s))
    assert await wait_outcome(runtime, root) == "FAILED"
    allowed = ok(await api.get_allowed_rollback_node_id_list(runtime, root, left_b.id))
    assert allowed == [left_a.id]
    everything = ok(
        await api.get_allowed_rollback_node_id_list(
            runtime, root, left_b.id, mode="ANY", skip_check_token=True
        )
    )
    assert everything == sorted([before.id, left_a.id, right.id])
    refused(await api.rollback(runtime, root, left_b.id, before.id), "different rollback tokens")
    refused(
        await api.rollback(runtime, root, left_b.id, before.id, mode="ANY", skip_check_token=True),
        "outside the parallel branch",
    )
    ok(await api.rollback(runtime, root, left_b.id, left_a.id))
    await wait_outcome(runtime, root, "FINISHED")
    assert undone(before.id, left_a.id, right.id) == [left_a.id]
    assert (ATTEMPTS[before.id], ATTEMPTS[left_a.id], ATTEMPTS[right.id]) == (1, 2, 1)


async def test_a_rollback_interrupted_by_a_restart_is_taken_up_again(runtime_factory: Any) -> None:
    needs_shared_storage(runtime_factory.kind)
    tree, a, b, c = _chain()
    UNDO_GATES[b.id] = anyio.Event()  # never set: b's hook is in flight when the worker stops
    async with opened(runtime_factory) as rt:
        root = await start(rt, tree)
        assert await wait_outcome(rt, root) == "FAILED"
        async with anyio.create_task_group() as tg:
            tg.start_soon(api.rollback, rt, root, c.id, a.id)

            async def hook_entered() -> bool:
                return undone(b.id) == [b.id]

            await wait_until(hook_entered, "b's rollback hook to start")
            tg.cancel_scope.cancel()
    del UNDO_GATES[b.id]
    async with opened(runtime_factory) as rt:
        assert await state_of(rt, root, root) == "ROLLING_BACK"
        assert await state_of(rt, root, b.id) == "ROLLING_BACK"
        refused(await api.retry_rollback_failed_node(rt, root, c.id), "not ROLLING_BACK")
        ok(await api.retry_rollback_failed_node(rt, root, b.id))
        await wait_outcome(rt, root, "FINISHED")
        assert undone(a.id, b.id) == [b.id, b.id, a.id]
        assert ATTEMPTS[c.id] == 2
