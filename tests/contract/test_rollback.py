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
from aiobamboo.engine import Settings

from . import components_time
from .components_time import ATTEMPTS, UNDO_FAILURES, UNDO_GATES, UNDONE, undone
from .ops_helpers import (
    TIMEOUT,
    act,
    entry,
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
    refused(await api.reserve_rollback(runtime, root, c.id, a.id), "start node", "not RUNNING")
    refused(await api.reserve_rollback(runtime, root, b.id, a.id), "start node", "not RUNNING")
    refused(await api.reserve_rollback(runtime, root, c.id, a.id, mode="SOME"), "mode")
    # As the original: nothing reserved at the node is nothing to cancel, not an error.
    ok(await api.cancel_reserved_rollback(runtime, root, c.id, a.id))
    refused(await api.cancel_reserved_rollback(runtime, root, b.id, a.id), "not RUNNING or FAILED")
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


# -- reserved rollbacks ------------------------------------------------------------------


def _waiting_chain() -> tuple[dict[str, Any], Any, Any, Any]:
    """start -> a -> b -> w (waits for a callback) -> end."""
    a, b = act("time_undoable"), act("time_undoable")
    w = act("time_undoable_callback")
    s = EmptyStartEvent()
    s.extend(a).extend(b).extend(w).extend(EmptyEndEvent())
    return build_tree(s), a, b, w


async def _waits(runtime: Any, root: str, node_id: str, attempt: int = 1) -> str:
    """Wait until the ``attempt``-th run of ``node_id`` waits for its callback; its version."""

    async def check() -> str | None:
        found = await entry(runtime, root, node_id)
        if found is None or found["state"] != "RUNNING" or ATTEMPTS[node_id] < attempt:
            return None
        return str(found["version"])

    return await wait_until(check, f"{node_id} to wait for its callback ({attempt})")


async def _call_back(runtime: Any, root: str, node_id: str, attempt: int = 1) -> None:
    """Call back the ``attempt``-th run of ``node_id``, once its process sleeps there."""
    with anyio.fail_after(TIMEOUT):
        while True:
            version = await _waits(runtime, root, node_id, attempt)
            res = await api.callback(runtime, node_id, version, {"attempt": attempt})
            if res.result:
                return
            # Not asleep yet, or the version read was not committed yet: once more.
            assert "sleep process" in res.message or "version" in res.message, res.message
            await anyio.sleep(0.002)


async def _rolled_back_then_finished(
    runtime: Any, root: str, a: Any, b: Any, w: Any, hooks: list[str] | None = None
) -> None:
    """w was called back with a rollback to a reserved: check it, then let the run end.

    ``hooks``: the hook calls expected; by default the finished start is undone
    too, then b, then a. Then the pipeline runs from a.
    """
    expected = hooks or [w.id, b.id, a.id]
    await _waits(runtime, root, w.id, attempt=2)
    assert undone(a.id, b.id, w.id) == expected
    assert (ATTEMPTS[a.id], ATTEMPTS[b.id], ATTEMPTS[w.id]) == (2, 2, 2)
    await _call_back(runtime, root, w.id, attempt=2)
    await wait_outcome(runtime, root, "FINISHED")
    # The reservation was used once: the second finish of w went on.
    assert undone(a.id, b.id, w.id) == expected
    assert (await wait_state(runtime, root, a.id, "FINISHED"))["retry"] == 1


async def test_a_reserved_rollback_takes_place_when_the_node_finishes(runtime: Any) -> None:
    tree, a, b, w = _waiting_chain()
    root = await start(runtime, tree)
    await _waits(runtime, root, w.id)
    ok(await api.reserve_rollback(runtime, root, w.id, a.id))
    refused(await api.reserve_rollback(runtime, root, w.id, b.id), "already has a rollback")
    # Nothing happens before the node finishes.
    assert await state_of(runtime, root, w.id) == "RUNNING"
    assert undone(a.id, b.id, w.id) == []
    await _call_back(runtime, root, w.id)
    await _rolled_back_then_finished(runtime, root, a, b, w)


async def test_a_reserved_rollback_in_any_mode_jumps_back_without_hooks(runtime: Any) -> None:
    tree, a, b, w = _waiting_chain()
    root = await start(runtime, tree)
    await _waits(runtime, root, w.id)
    ok(await api.reserve_rollback(runtime, root, w.id, b.id, mode="ANY"))
    await _call_back(runtime, root, w.id)
    await _waits(runtime, root, w.id, attempt=2)
    assert undone(a.id, b.id, w.id) == []
    assert (ATTEMPTS[a.id], ATTEMPTS[b.id], ATTEMPTS[w.id]) == (1, 2, 2)
    await _call_back(runtime, root, w.id, attempt=2)
    await wait_outcome(runtime, root, "FINISHED")


async def test_a_cancelled_reservation_does_not_roll_back(runtime: Any) -> None:
    tree, a, b, w = _waiting_chain()
    root = await start(runtime, tree)
    await _waits(runtime, root, w.id)
    ok(await api.reserve_rollback(runtime, root, w.id, a.id))
    ok(await api.cancel_reserved_rollback(runtime, root, w.id, a.id))
    # Cancelled, another may be reserved; and cancelled again.
    ok(await api.reserve_rollback(runtime, root, w.id, b.id, mode="ANY"))
    ok(await api.cancel_reserved_rollback(runtime, root, w.id, b.id, mode="ANY"))
    await _call_back(runtime, root, w.id)
    await wait_outcome(runtime, root, "FINISHED")
    assert undone(a.id, b.id, w.id) == []
    assert (ATTEMPTS[a.id], ATTEMPTS[b.id], ATTEMPTS[w.id]) == (1, 1, 1)


async def test_reserving_what_can_not_be_rolled_back_is_refused(runtime: Any) -> None:
    s, pg, cg = EmptyStartEvent(), ParallelGateway(), ConvergeGateway()
    before = act("time_undoable")
    left, right = act("time_undoable_callback"), act("time_undoable")
    s.extend(before).extend(pg)
    pg.extend(left).extend(cg)
    pg.extend(right).extend(cg)
    cg.extend(EmptyEndEvent())
    root = await start(runtime, build_tree(s))
    await _waits(runtime, root, left.id)
    await wait_state(runtime, root, right.id, "FINISHED")
    # The start must be running, the target finished, both of one token.
    refused(await api.reserve_rollback(runtime, root, right.id, before.id), "not RUNNING")
    refused(await api.reserve_rollback(runtime, root, left.id, left.id), "not FINISHED")
    refused(await api.reserve_rollback(runtime, root, left.id, before.id), "different rollback")
    refused(
        await api.reserve_rollback(runtime, root, left.id, before.id, "ANY", True),
        "outside the parallel branch",
    )
    refused(await api.reserve_rollback(runtime, root, left.id, right.id), "different rollback")
    refused(await api.reserve_rollback(runtime, left.id, left.id, before.id), "not a root")
    await _call_back(runtime, root, left.id)
    await wait_outcome(runtime, root, "FINISHED")
    assert undone(before.id, left.id, right.id) == []


async def test_a_reservation_survives_a_restart(runtime_factory: Any) -> None:
    needs_shared_storage(runtime_factory.kind)
    tree, a, b, w = _waiting_chain()
    async with opened(runtime_factory) as rt:
        root = await start(rt, tree)
        await _waits(rt, root, w.id)
        ok(await api.reserve_rollback(rt, root, w.id, a.id))
    async with opened(runtime_factory) as rt:
        await _call_back(rt, root, w.id)
        await _rolled_back_then_finished(rt, root, a, b, w)


async def test_a_cancellation_survives_a_restart(runtime_factory: Any) -> None:
    needs_shared_storage(runtime_factory.kind)
    tree, a, b, w = _waiting_chain()
    async with opened(runtime_factory) as rt:
        root = await start(rt, tree)
        await _waits(rt, root, w.id)
        ok(await api.reserve_rollback(rt, root, w.id, a.id))
        ok(await api.cancel_reserved_rollback(rt, root, w.id, a.id))
    async with opened(runtime_factory) as rt:
        await _call_back(rt, root, w.id)
        await wait_outcome(rt, root, "FINISHED")
        assert undone(a.id, b.id, w.id) == []


async def test_a_client_reserves_and_cancels_through_the_worker(runtime_factory: Any) -> None:
    needs_shared_storage(runtime_factory.kind)
    tree, a, b, w = _waiting_chain()
    async with (
        opened(runtime_factory) as worker,
        opened(runtime_factory, worker=False, settings=Settings(poll_interval=0.05)) as client,
    ):
        root = await start(client, tree)
        await _waits(client, root, w.id)
        refused(await api.reserve_rollback(client, root, b.id, a.id), "not RUNNING")
        ok(await api.reserve_rollback(client, root, w.id, b.id))
        ok(await api.cancel_reserved_rollback(client, root, w.id, b.id))
        ok(await api.reserve_rollback(client, root, w.id, a.id))
        assert worker is not client
        await _call_back(client, root, w.id)
        await _rolled_back_then_finished(client, root, a, b, w)


async def test_a_reservation_that_no_longer_applies_lets_the_pipeline_go_on(runtime: Any) -> None:
    tree, a, b, w = _waiting_chain()
    root = await start(runtime, tree)
    await _waits(runtime, root, w.id)
    ok(await api.reserve_rollback(runtime, root, w.id, a.id))
    # Paused when w finishes: a paused pipeline is not rolled back, and the
    # reservation is used up; the pipeline stops at its next node as paused ones do.
    ok(await api.pause_pipeline(runtime, root))
    await _call_back(runtime, root, w.id)
    await wait_state(runtime, root, w.id, "FINISHED")
    assert await wait_outcome(runtime, root) == "SUSPENDED"
    ok(await api.resume_pipeline(runtime, root))
    await wait_outcome(runtime, root, "FINISHED")
    assert undone(a.id, b.id, w.id) == []
    assert (ATTEMPTS[a.id], ATTEMPTS[b.id], ATTEMPTS[w.id]) == (1, 1, 1)


async def test_a_failing_hook_of_a_reserved_rollback_is_retried(runtime: Any) -> None:
    tree, a, b, w = _waiting_chain()
    UNDO_FAILURES[b.id] = 1
    root = await start(runtime, tree)
    await _waits(runtime, root, w.id)
    ok(await api.reserve_rollback(runtime, root, w.id, a.id))
    await _call_back(runtime, root, w.id)
    res = await api.wait_pipeline(runtime, root, timeout=TIMEOUT)
    assert res.data == "ROLL_BACK_FAILED", res.message
    assert await state_of(runtime, root, w.id) == "ROLL_BACK_SUCCESS"
    assert undone(a.id, b.id, w.id) == [w.id, b.id]
    ok(await api.retry_rollback_failed_node(runtime, root, b.id))
    await _rolled_back_then_finished(runtime, root, a, b, w, [w.id, b.id, b.id, a.id])
