"""``api.subscribe``: committed RunEvents, in order per pipeline; subscribers never hold
the engine back."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from aiobamboo import api
from aiobamboo.builder import (
    ConvergeGateway,
    EmptyEndEvent,
    EmptyStartEvent,
    ParallelGateway,
    SubProcess,
    build_tree,
)
from aiobamboo.engine import RunEvent

from .components import GATES
from .ops_helpers import (
    GRACE,
    TIMEOUT,
    act,
    chain,
    linear,
    new_gate,
    ok,
    open_gate,
    start,
    tree_states,
    wait_gate_entered,
    wait_outcome,
    wait_state,
)

KINDS = {"state", "pipeline_failed", "pipeline_finished", "pipeline_revoked"}


@pytest.fixture(autouse=True)
def _release_gates() -> Iterator[None]:
    yield
    GATES.clear()


async def collect_until(
    events: AsyncIterator[RunEvent], kind: str, node_id: str | None = None
) -> list[RunEvent]:
    """Read events up to and including the first of ``kind`` (for ``node_id``, if given)."""
    seen: list[RunEvent] = []
    with anyio.fail_after(TIMEOUT):
        async for event in events:
            assert event.kind in KINDS, event
            seen.append(event)
            if event.kind == kind and (node_id is None or event.node_id == node_id):
                return seen
    raise AssertionError(f"the event stream ended before a {kind} event: {seen}")


async def nothing_more(events: AsyncIterator[RunEvent]) -> list[RunEvent]:
    """Events that arrive within the grace period (there should be none)."""
    extra: list[RunEvent] = []
    with anyio.move_on_after(GRACE):
        async for event in events:
            extra.append(event)  # noqa: PERF401 (the list must survive the cancel)
    return extra


def states_of(seen: list[RunEvent], node_id: str) -> list[str]:
    return [e.state for e in seen if e.kind == "state" and e.node_id == node_id]


def index(seen: list[RunEvent], node_id: str, state: str, kind: str = "state") -> int:
    for i, event in enumerate(seen):
        if event.kind == kind and event.node_id == node_id and event.state == state:
            return i
    brief = [(e.kind, e.node_id, e.state) for e in seen]
    raise AssertionError(f"no {kind} event {node_id} {state} in {brief}")


# ======================================================================================
# order
# ======================================================================================


async def test_events_of_a_simple_pipeline_in_order(runtime: Any) -> None:
    a, b = act("echo"), act("echo")
    s, end = EmptyStartEvent(), EmptyEndEvent()
    chain(s, a, b, end)
    tree = build_tree(s)
    root = tree["id"]
    committed: list[tuple[str, str, Any]] = []
    async with api.subscribe(runtime, root) as events:
        await start(runtime, tree)
        seen: list[RunEvent] = []
        with anyio.fail_after(TIMEOUT):
            async for event in events:
                seen.append(event)
                if event.kind == "state":
                    # Delivered only once committed: storage already has the change.
                    found = (await tree_states(runtime, root)).get(event.node_id)
                    committed.append((event.node_id, event.state, found))
                if event.kind == "pipeline_finished":
                    break
        assert await nothing_more(events) == []

    assert all(e.root_id == root for e in seen)
    assert seen[0].kind == "state"
    assert (seen[0].node_id, seen[0].state) == (root, "RUNNING")
    assert (seen[-2].kind, seen[-2].node_id, seen[-2].state) == ("state", root, "FINISHED")
    assert (seen[-1].kind, seen[-1].node_id, seen[-1].state) == (
        "pipeline_finished",
        root,
        "FINISHED",
    )
    order = [s.id, a.id, b.id, end.id]
    for node_id in order:
        assert states_of(seen, node_id) == ["RUNNING", "FINISHED"]
    for before, after in itertools.pairwise(order):
        assert index(seen, before, "FINISHED") < index(seen, after, "RUNNING")
    times = [e.time for e in seen]
    assert times == sorted(times)
    # Every event matches committed storage (a linear run keeps each node's version).
    for node_id, state, found in committed:
        assert found is not None, f"{node_id} {state} was delivered before it was stored"
    final = await tree_states(runtime, root)
    for event in seen:
        if event.kind == "state":
            assert event.data["version"] == final[event.node_id]["version"]
            assert event.data["loop"] == 1
            if event.node_id != root:
                assert event.data["parent_id"] == root
            if event.state == "FINISHED":
                assert final[event.node_id]["state"] == "FINISHED"


async def test_events_of_parallel_branches_and_a_subprocess(runtime: Any) -> None:
    left, right = act("echo"), act("echo")
    inner = act("echo")
    sub_start = EmptyStartEvent()
    chain(sub_start, inner, EmptyEndEvent())
    sub = SubProcess(start=sub_start)
    s, pg, cg = EmptyStartEvent(), ParallelGateway(), ConvergeGateway()
    s.extend(pg).connect(left, right, sub).to(pg).converge(cg).extend(EmptyEndEvent())
    tree = build_tree(s)
    root = tree["id"]
    async with api.subscribe(runtime, root) as events:
        await start(runtime, tree)
        seen = await collect_until(events, "pipeline_finished")

    for node_id in (pg.id, left.id, right.id, sub.id, inner.id, cg.id):
        assert states_of(seen, node_id) == ["RUNNING", "FINISHED"], node_id
    for branch in (left.id, right.id, sub.id):
        assert index(seen, pg.id, "FINISHED") < index(seen, branch, "RUNNING")
        assert index(seen, branch, "FINISHED") < index(seen, cg.id, "RUNNING")
    assert index(seen, sub.id, "RUNNING") < index(seen, inner.id, "RUNNING")
    assert index(seen, inner.id, "FINISHED") < index(seen, sub.id, "FINISHED")
    inner_event = seen[index(seen, inner.id, "RUNNING")]
    assert inner_event.root_id == root
    assert inner_event.data["parent_id"] == sub.id
    assert seen[-1].kind == "pipeline_finished"


async def test_order_is_kept_per_pipeline_when_several_run_at_once(runtime: Any) -> None:
    trees = [linear(act("echo"), act("echo"), act("echo")) for _ in range(5)]
    async with api.subscribe(runtime) as events:
        for tree in trees:
            await start(runtime, tree)
        by_root: dict[str, list[RunEvent]] = {t["id"]: [] for t in trees}
        done: set[str] = set()
        with anyio.fail_after(TIMEOUT):
            async for event in events:
                if event.root_id not in by_root:
                    continue  # another test's pipeline cannot be here, but stay tolerant
                by_root[event.root_id].append(event)
                if event.kind == "pipeline_finished":
                    done.add(event.root_id)
                    if done == set(by_root):
                        break
    for tree in trees:
        seen = by_root[tree["id"]]
        assert seen[0].state == "RUNNING"
        assert seen[0].node_id == tree["id"]
        assert seen[-1].kind == "pipeline_finished"
        for node_id in [tree["start_event"]["id"], *tree["activities"], tree["end_event"]["id"]]:
            assert states_of(seen, node_id) == ["RUNNING", "FINISHED"]


# ======================================================================================
# failures, operator actions
# ======================================================================================


async def test_failure_events_and_the_retry_that_follows(runtime: Any) -> None:
    failing, after = act("fail"), act("echo")
    tree = linear(failing, after)
    root = tree["id"]
    async with api.subscribe(runtime, root) as events:
        await start(runtime, tree)
        seen = await collect_until(events, "pipeline_failed")
        failed_state = seen[index(seen, failing.id, "FAILED")]
        failed = seen[-1]
        assert failed.node_id == failing.id
        assert failed.root_id == root
        assert failed.state == "FAILED"
        assert states_of(seen, failing.id) == ["RUNNING", "FAILED"]
        # The root never fails (as in the original).
        assert "FAILED" not in states_of(seen, root)
        assert await nothing_more(events) == []

        ok(await api.retry_node(runtime, failing.id, {"ok": True}))
        seen = await collect_until(events, "pipeline_finished")
    assert states_of(seen, failing.id) == ["READY", "RUNNING", "FINISHED"]
    ready = seen[index(seen, failing.id, "READY")]
    assert ready.data["version"] != failed_state.data["version"]
    assert states_of(seen, after.id) == ["RUNNING", "FINISHED"]
    assert [e.kind for e in seen].count("pipeline_failed") == 0


async def test_skip_and_forced_fail_events(runtime: Any) -> None:
    gate, after = act("gate"), act("echo")
    new_gate(gate.id)
    tree = linear(gate, after)
    root = tree["id"]
    async with api.subscribe(runtime, root) as events:
        await start(runtime, tree)
        await wait_gate_entered(runtime, root, gate.id)
        running = (await tree_states(runtime, root))[gate.id]
        ok(await api.forced_fail_activity(runtime, gate.id, "stop"))
        seen = await collect_until(events, "pipeline_failed", gate.id)
        forced = seen[index(seen, gate.id, "FAILED")]
        assert forced.data["version"] != running["version"]
        # (Skipping while the component still hangs is covered in test_operations.)
        open_gate(gate.id)
        ok(await api.skip_node(runtime, gate.id))
        seen = await collect_until(events, "pipeline_finished")
    skipped = seen[index(seen, gate.id, "FINISHED")]
    assert skipped.data["version"] != forced.data["version"]
    assert states_of(seen, gate.id) == ["FINISHED"]
    assert index(seen, gate.id, "FINISHED") < index(seen, after.id, "RUNNING")


async def test_revoke_events(runtime: Any) -> None:
    gate, after = act("gate"), act("echo")
    new_gate(gate.id)
    tree = linear(gate, after)
    root = tree["id"]
    async with api.subscribe(runtime, root) as events:
        await start(runtime, tree)
        await wait_gate_entered(runtime, root, gate.id)
        ok(await api.revoke_pipeline(runtime, root))
        seen = await collect_until(events, "pipeline_revoked")
        assert seen[-1].node_id == root
        assert seen[-1].state == "REVOKED"
        assert index(seen, root, "REVOKED") < len(seen) - 1
        assert states_of(seen, gate.id)[-1] == "REVOKED"
        open_gate(gate.id)
        # Nothing runs after a revoke, so nothing more is said.
        assert await nothing_more(events) == []
    assert after.id not in (await tree_states(runtime, root))


async def test_pause_and_resume_events(runtime: Any) -> None:
    gate, appointed = act("gate"), act("echo")
    new_gate(gate.id)
    tree = linear(gate, appointed)
    root = tree["id"]
    async with api.subscribe(runtime, root) as events:
        await start(runtime, tree)
        await wait_gate_entered(runtime, root, gate.id)
        ok(await api.pause_pipeline(runtime, root))
        ok(await api.pause_node_appoint(runtime, appointed.id))
        seen = await collect_until(events, "state", appointed.id)
        assert states_of(seen, root)[-1] == "SUSPENDED"
        assert states_of(seen, appointed.id) == ["SUSPENDED"]
        ok(await api.resume_pipeline(runtime, root))
        open_gate(gate.id)
        assert await wait_outcome(runtime, root) == "SUSPENDED"
        ok(await api.resume_node_appoint(runtime, appointed.id))
        seen += await collect_until(events, "pipeline_finished")
    assert states_of(seen, root) == ["RUNNING", "SUSPENDED", "RUNNING", "FINISHED"]
    assert states_of(seen, appointed.id) == ["SUSPENDED", "READY", "RUNNING", "FINISHED"]


# ======================================================================================
# filtering
# ======================================================================================


async def test_subscription_filters_by_pipeline_id(runtime: Any) -> None:
    gate_a, gate_b = act("gate"), act("gate")
    new_gate(gate_a.id)
    new_gate(gate_b.id)
    tree_a, tree_b = linear(gate_a), linear(gate_b)
    root_a, root_b = tree_a["id"], tree_b["id"]
    async with (
        api.subscribe(runtime, root_a) as only_a,
        api.subscribe(runtime, root_b) as only_b,
        api.subscribe(runtime) as every,
    ):
        await start(runtime, tree_a)
        await start(runtime, tree_b)
        await wait_gate_entered(runtime, root_a, gate_a.id)
        await wait_gate_entered(runtime, root_b, gate_b.id)
        open_gate(gate_b.id)
        seen_b = await collect_until(only_b, "pipeline_finished")
        open_gate(gate_a.id)
        seen_a = await collect_until(only_a, "pipeline_finished")
        seen_all: list[RunEvent] = []
        finished: set[str] = set()
        with anyio.fail_after(TIMEOUT):
            async for event in every:
                seen_all.append(event)
                if event.kind == "pipeline_finished":
                    finished.add(event.root_id)
                    if finished >= {root_a, root_b}:
                        break
    assert {e.root_id for e in seen_a} == {root_a}
    assert {e.root_id for e in seen_b} == {root_b}
    mine = [e for e in seen_all if e.root_id in (root_a, root_b)]
    assert [e for e in mine if e.root_id == root_a] == seen_a
    assert [e for e in mine if e.root_id == root_b] == seen_b


async def test_unknown_pipeline_id_gets_no_events(runtime: Any) -> None:
    async with api.subscribe(runtime, "p" + "0" * 32) as events:
        root = await start(runtime, linear(act("echo")))
        await wait_outcome(runtime, root, "FINISHED")
        assert await nothing_more(events) == []


# ======================================================================================
# subscribers never hold the engine back
# ======================================================================================


async def test_a_subscriber_that_never_reads_does_not_block_the_engine(runtime: Any) -> None:
    tree = linear(*[act("echo") for _ in range(30)])
    root = tree["id"]
    async with api.subscribe(runtime, root) as events, api.subscribe(runtime):
        await start(runtime, tree)
        await wait_outcome(runtime, root, "FINISHED")
        # Nothing was lost while nobody read: the whole story is still there, in order.
        seen = await collect_until(events, "pipeline_finished")
    assert len([e for e in seen if e.kind == "state"]) == 2 * 32 + 2
    assert seen[0].state == "RUNNING"


async def test_a_subscriber_that_raises_does_not_break_the_engine(runtime: Any) -> None:
    gate, after = act("gate"), act("echo")
    new_gate(gate.id)
    tree = linear(gate, after)
    root = tree["id"]

    async def failing_consumer() -> None:
        async with api.subscribe(runtime, root) as events:
            await start(runtime, tree)
            async for _event in events:
                raise RuntimeError("consumer bug")

    with pytest.raises(RuntimeError, match="consumer bug"):
        await failing_consumer()
    # A consumer cancelled mid-read does not either.
    async with api.subscribe(runtime, root) as events:
        with anyio.move_on_after(0):
            async for _event in events:
                pass
    await wait_gate_entered(runtime, root, gate.id)
    async with api.subscribe(runtime, root) as events:
        open_gate(gate.id)
        seen = await collect_until(events, "pipeline_finished")
    assert states_of(seen, after.id) == ["RUNNING", "FINISHED"]
    await wait_outcome(runtime, root, "FINISHED")


async def test_a_consumer_task_that_fails_leaves_the_pipeline_running(runtime: Any) -> None:
    gate, after = act("gate"), act("echo")
    new_gate(gate.id)
    tree = linear(gate, after)
    root = tree["id"]

    async def consumer(*, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with api.subscribe(runtime, root) as events:
            # From now on every event is seen: the pipeline starts only then.
            task_status.started()
            async for event in events:
                if event.node_id == gate.id and event.state == "RUNNING":
                    raise ValueError("consumer gave up")

    async def supervisor() -> None:
        async with anyio.create_task_group() as tg:
            await tg.start(consumer)
            await start(runtime, tree)
            await anyio.sleep_forever()

    with pytest.raises(ExceptionGroup) as raised:
        await supervisor()
    assert raised.group_contains(ValueError, match="consumer gave up")
    await wait_state(runtime, root, gate.id, "RUNNING")
    open_gate(gate.id)
    await wait_outcome(runtime, root, "FINISHED")
    assert (await tree_states(runtime, root))[after.id]["state"] == "FINISHED"
