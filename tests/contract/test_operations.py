"""Every operator action of the engine API: its effect and every refusal.

Most tests run the part under test at the top level, inside a parallel
branch and inside a sub-process (``placement``), on every runtime.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from aiobamboo import api
from aiobamboo.builder import (
    ConditionalParallelGateway,
    ConvergeGateway,
    Data,
    Element,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    NodeOutput,
    ParallelGateway,
    Params,
    SubProcess,
    Var,
    build_tree,
)

from .components import EXECUTIONS, GATES
from .components_ops import (
    LAZY_CALLS,
    OPS_EXECUTIONS,
    OPS_SCHEDULES,
    SCHEDULE_GATES,
    SCHEDULE_STARTED,
)
from .ops_helpers import (
    PLACEMENTS,
    act,
    chain,
    entry,
    flow_id,
    grace,
    histories,
    inputs,
    linear,
    new_gate,
    ok,
    open_gate,
    outputs,
    place,
    refused,
    start,
    state_of,
    steps,
    stored_processes,
    tree_states,
    wait_executions,
    wait_gate_entered,
    wait_outcome,
    wait_state,
    wait_until,
)

HISTORY_KEYS = {
    "id",
    "node_id",
    "started_time",
    "archived_time",
    "retry",
    "loop",
    "skip",
    "version",
    "inputs",
    "outputs",
}


@pytest.fixture(autouse=True)
def _release_gates() -> Iterator[None]:
    yield
    GATES.clear()


@pytest.fixture(params=PLACEMENTS)
def placement(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _splice(value: str) -> Var:
    return Var(Var.SPLICE, value)


def _subprocess(*elems: Element, data: Data | None = None, params: Params | None = None) -> Any:
    sub_start = EmptyStartEvent()
    chain(sub_start, *elems).extend(EmptyEndEvent())
    return SubProcess(start=sub_start, data=data, params=params or Params({}))


# ======================================================================================
# pause_pipeline / resume_pipeline
# ======================================================================================


async def test_pause_lets_the_running_node_finish_and_starts_nothing(
    runtime: Any, placement: str
) -> None:
    gate, after = act("gate"), act("echo", text="after")
    new_gate(gate.id)
    placed = place(placement, steps(gate, after))
    root = await start(runtime, placed.tree)
    await wait_gate_entered(runtime, root, gate.id)

    ok(await api.pause_pipeline(runtime, root))
    assert await state_of(runtime, root, root) == "SUSPENDED"
    open_gate(gate.id)
    # The node that was running is not interrupted...
    await wait_state(runtime, root, gate.id, "FINISHED")
    assert (await outputs(runtime, gate.id))["passed"] is True
    # ...but nothing new starts.
    await grace()
    assert await state_of(runtime, root, after.id) is None
    assert EXECUTIONS[after.id] == 0
    assert await wait_outcome(runtime, root) == "SUSPENDED"
    assert await state_of(runtime, root, root) == "SUSPENDED"

    ok(await api.resume_pipeline(runtime, root))
    await wait_outcome(runtime, root, "FINISHED")
    states = await tree_states(runtime, root)
    assert states[after.id]["state"] == "FINISHED"
    assert EXECUTIONS[after.id] == 1
    assert EXECUTIONS[gate.id] == 1


async def test_pause_a_subprocess_parks_only_it(runtime: Any) -> None:
    gate, after = act("gate"), act("echo", text="after")
    new_gate(gate.id)
    sub = _subprocess(gate, after)
    sibling_gate = act("gate")
    new_gate(sibling_gate.id)
    s, pg, cg = EmptyStartEvent(), ParallelGateway(), ConvergeGateway()
    s.extend(pg).connect(sub, sibling_gate).to(pg).converge(cg).extend(EmptyEndEvent())
    tree = build_tree(s)
    root = await start(runtime, tree)
    await wait_gate_entered(runtime, root, gate.id)
    await wait_gate_entered(runtime, root, sibling_gate.id)

    ok(await api.pause_pipeline(runtime, sub.id))
    assert await state_of(runtime, root, sub.id) == "SUSPENDED"
    assert await state_of(runtime, root, root) == "RUNNING"
    # The root is not paused: resuming it is refused with the original's message.
    res = refused(await api.resume_pipeline(runtime, root))
    assert res == f"pipeline({root}) state is: RUNNING"

    open_gate(gate.id)
    open_gate(sibling_gate.id)
    # The branch outside the sub-process goes on; the sub-process stops before `after`.
    await wait_state(runtime, root, sibling_gate.id, "FINISHED")
    await wait_state(runtime, root, gate.id, "FINISHED")
    assert await wait_outcome(runtime, root) == "SUSPENDED"
    res_wait = await api.wait_pipeline(runtime, root, timeout=5)
    assert sub.id in res_wait.message
    assert await state_of(runtime, root, after.id) is None
    assert await state_of(runtime, root, cg.id) is None

    ok(await api.resume_pipeline(runtime, sub.id))
    await wait_outcome(runtime, root, "FINISHED")
    states = await tree_states(runtime, root)
    assert states[sub.id]["state"] == "FINISHED"
    assert states[after.id]["state"] == "FINISHED"
    assert states[cg.id]["state"] == "FINISHED"


async def test_pause_a_subprocess_inside_a_subprocess(runtime: Any) -> None:
    gate, after = act("gate"), act("echo", text="after")
    new_gate(gate.id)
    inner = _subprocess(gate, after)
    outer = _subprocess(inner, act("echo", text="outer tail"))
    root = await start(runtime, linear(outer))
    await wait_gate_entered(runtime, root, gate.id)
    ok(await api.pause_pipeline(runtime, inner.id))
    open_gate(gate.id)
    assert await wait_outcome(runtime, root) == "SUSPENDED"
    assert await state_of(runtime, root, after.id) is None
    assert await state_of(runtime, root, outer.id) == "RUNNING"
    ok(await api.resume_pipeline(runtime, inner.id))
    await wait_outcome(runtime, root, "FINISHED")
    assert await state_of(runtime, root, after.id) == "FINISHED"


@pytest.mark.parametrize("first", ["root", "sub"])
async def test_pause_root_and_subprocess_resume_in_any_order(runtime: Any, first: str) -> None:
    gate, after = act("gate"), act("echo")
    new_gate(gate.id)
    sub = _subprocess(gate, after)
    root = await start(runtime, linear(sub))
    await wait_gate_entered(runtime, root, gate.id)
    order = [root, sub.id] if first == "root" else [sub.id, root]
    for pipeline_id in order:
        ok(await api.pause_pipeline(runtime, pipeline_id))
    open_gate(gate.id)
    await wait_state(runtime, root, gate.id, "FINISHED")
    # Resume the one paused first: the other still holds the process.
    ok(await api.resume_pipeline(runtime, order[0]))
    await grace()
    assert await state_of(runtime, root, after.id) is None
    assert await state_of(runtime, root, order[1]) == "SUSPENDED"
    ok(await api.resume_pipeline(runtime, order[1]))
    await wait_outcome(runtime, root, "FINISHED")
    assert EXECUTIONS[after.id] == 1


async def test_pause_parks_every_parallel_branch_and_the_join(runtime: Any) -> None:
    gates = [act("gate") for _ in range(3)]
    for gate in gates:
        new_gate(gate.id)
    s, pg, cg, after = EmptyStartEvent(), ParallelGateway(), ConvergeGateway(), act("echo")
    s.extend(pg).connect(*gates).to(pg).converge(cg).extend(after).extend(EmptyEndEvent())
    root = await start(runtime, build_tree(s))
    for gate in gates:
        await wait_gate_entered(runtime, root, gate.id)
    ok(await api.pause_pipeline(runtime, root))
    for gate in gates:
        open_gate(gate.id)
    for gate in gates:
        await wait_state(runtime, root, gate.id, "FINISHED")
    await grace()
    assert await state_of(runtime, root, cg.id) is None
    ok(await api.resume_pipeline(runtime, root))
    await wait_outcome(runtime, root, "FINISHED")
    states = await tree_states(runtime, root)
    assert (states[cg.id]["state"], states[cg.id]["loop"]) == ("FINISHED", 1)
    assert EXECUTIONS[after.id] == 1


async def test_pause_a_subprocess_that_forks(runtime: Any) -> None:
    gates = [act("gate") for _ in range(2)]
    for gate in gates:
        new_gate(gate.id)
    pg, cg, after = ParallelGateway(), ConvergeGateway(), act("echo")
    sub_start = EmptyStartEvent()
    sub_start.extend(pg).connect(*gates).to(pg).converge(cg).extend(after).extend(EmptyEndEvent())
    sub = SubProcess(start=sub_start)
    root = await start(runtime, linear(sub))
    for gate in gates:
        await wait_gate_entered(runtime, root, gate.id)
    ok(await api.pause_pipeline(runtime, sub.id))
    for gate in gates:
        open_gate(gate.id)
    res = await api.wait_pipeline(runtime, root, timeout=15)
    assert res.data == "SUSPENDED", res.message
    assert sub.id in res.message
    assert await state_of(runtime, root, cg.id) is None
    ok(await api.resume_pipeline(runtime, sub.id))
    await wait_outcome(runtime, root, "FINISHED")
    assert EXECUTIONS[after.id] == 1


async def test_pause_then_revoke_and_pause_of_a_paused_pipeline(runtime: Any) -> None:
    gate = act("gate")
    new_gate(gate.id)
    root = await start(runtime, linear(gate, act("echo")))
    await wait_gate_entered(runtime, root, gate.id)
    ok(await api.pause_pipeline(runtime, root))
    # SUSPENDED -> SUSPENDED is not a transition.
    refused(await api.pause_pipeline(runtime, root), "SUSPENDED")
    ok(await api.revoke_pipeline(runtime, root))
    assert await state_of(runtime, root, root) == "REVOKED"
    refused(await api.resume_pipeline(runtime, root), "revoked")


async def test_pause_and_resume_refusals(runtime: Any, placement: str) -> None:
    gate, after = act("gate"), act("echo")
    new_gate(gate.id)
    placed = place(placement, steps(gate, after))
    root = await start(runtime, placed.tree)
    await wait_gate_entered(runtime, root, gate.id)

    refused(await api.pause_pipeline(runtime, "p" + uuid.uuid4().hex), "does not exist")
    refused(await api.resume_pipeline(runtime, "p" + uuid.uuid4().hex), "does not exist")
    # An activity is not a pipeline.
    refused(await api.pause_pipeline(runtime, gate.id), "not a pipeline")
    # Resuming what is not paused: the original's message, exactly.
    res = await api.resume_pipeline(runtime, root)
    assert refused(res) == f"pipeline({root}) state is: RUNNING"
    if placed.sub_id is not None:
        res = await api.resume_pipeline(runtime, placed.sub_id)
        assert refused(res) == f"pipeline({placed.sub_id}) state is: RUNNING"
    # A bad argument is a refusal, not an exception.
    refused(await api.pause_pipeline(runtime, ""))
    refused(await api.pause_pipeline(runtime, None))  # type: ignore[arg-type]

    open_gate(gate.id)
    await wait_outcome(runtime, root, "FINISHED")
    refused(await api.pause_pipeline(runtime, root), "finished")
    refused(await api.resume_pipeline(runtime, root), "finished")
    if placed.sub_id is not None:
        refused(await api.pause_pipeline(runtime, placed.sub_id), "finished")


async def test_pause_a_subprocess_not_reached_yet_is_refused(runtime: Any) -> None:
    gate = act("gate")
    new_gate(gate.id)
    sub = _subprocess(act("echo"))
    root = await start(runtime, linear(gate, sub))
    await wait_gate_entered(runtime, root, gate.id)
    refused(await api.pause_pipeline(runtime, sub.id), "does not exist")
    open_gate(gate.id)
    await wait_outcome(runtime, root, "FINISHED")


async def test_resume_twice_second_is_refused(runtime: Any) -> None:
    gate, after = act("gate"), act("echo")
    new_gate(gate.id)
    root = await start(runtime, linear(gate, after))
    await wait_gate_entered(runtime, root, gate.id)
    ok(await api.pause_pipeline(runtime, root))
    open_gate(gate.id)
    await wait_state(runtime, root, gate.id, "FINISHED")
    ok(await api.resume_pipeline(runtime, root))
    assert refused(await api.resume_pipeline(runtime, root)) in (
        f"pipeline({root}) state is: RUNNING",
        f"pipeline {root} has already finished",
    )
    await wait_outcome(runtime, root, "FINISHED")
    assert EXECUTIONS[after.id] == 1


# ======================================================================================
# revoke_pipeline
# ======================================================================================


async def test_revoke_stops_everything(runtime: Any, placement: str) -> None:
    gate, after = act("gate"), act("echo")
    new_gate(gate.id)
    placed = place(placement, steps(gate, after))
    root = await start(runtime, placed.tree)
    await wait_gate_entered(runtime, root, gate.id)

    ok(await api.revoke_pipeline(runtime, root))
    states = await tree_states(runtime, root)
    assert states[root]["state"] == "REVOKED"
    assert states[root]["archived_time"] is not None
    # Nothing is left RUNNING (the original leaves it behind).
    assert not [n for n, e in states.items() if e["state"] == "RUNNING"]
    assert states[gate.id]["state"] == "REVOKED"
    assert await wait_outcome(runtime, root) == "REVOKED"

    open_gate(gate.id)
    await grace()
    # The late result of the gate is discarded and nothing further runs.
    assert await state_of(runtime, root, gate.id) == "REVOKED"
    assert "passed" not in await outputs(runtime, gate.id)
    assert await state_of(runtime, root, after.id) is None
    assert EXECUTIONS[after.id] == 0
    # No process is left behind (the original leaves sleeping ones forever).
    assert [p for p in await stored_processes(runtime, root) if p.status != "dead"] == []


async def test_revoke_drops_a_callback_wait(runtime: Any, placement: str) -> None:
    waiting, after = act("callback"), act("echo")
    placed = place(placement, steps(waiting, after))
    root = await start(runtime, placed.tree)
    node = await wait_state(runtime, root, waiting.id, "RUNNING")
    await wait_until(
        lambda: _has_output(runtime, waiting.id, "waiting"), "the callback node to wait"
    )

    ok(await api.revoke_pipeline(runtime, root))
    refused(await api.callback(runtime, waiting.id, node["version"], {"x": 1}), "revoked")
    await grace()
    assert await state_of(runtime, root, waiting.id) == "REVOKED"
    assert await state_of(runtime, root, after.id) is None
    assert [p for p in await stored_processes(runtime, root) if p.status != "dead"] == []


async def _has_output(runtime: Any, node_id: str, key: str) -> bool:
    return key in await outputs(runtime, node_id)


async def test_revoke_stops_polling(runtime: Any) -> None:
    poller = act("ops_poll_forever")
    root = await start(runtime, linear(poller))

    async def polled() -> bool:
        return OPS_SCHEDULES[poller.id] >= 2

    await wait_until(polled, "two polls")
    ok(await api.revoke_pipeline(runtime, root))
    polls = OPS_SCHEDULES[poller.id]
    await grace()
    assert OPS_SCHEDULES[poller.id] == polls
    assert await state_of(runtime, root, poller.id) == "REVOKED"


async def test_revoke_refusals(runtime: Any, placement: str) -> None:
    gate = act("gate")
    new_gate(gate.id)
    placed = place(placement, steps(gate))
    root = await start(runtime, placed.tree)
    await wait_gate_entered(runtime, root, gate.id)

    refused(await api.revoke_pipeline(runtime, "p" + uuid.uuid4().hex), "does not exist")
    refused(await api.revoke_pipeline(runtime, gate.id), "not a pipeline")
    if placed.sub_id is not None:
        # aiobamboo revokes root pipelines only; a sub-process id is refused.
        refused(await api.revoke_pipeline(runtime, placed.sub_id), placed.sub_id)
        assert await state_of(runtime, root, placed.sub_id) == "RUNNING"
    ok(await api.revoke_pipeline(runtime, root))
    refused(await api.revoke_pipeline(runtime, root), "revoked")
    assert await state_of(runtime, root, root) == "REVOKED"


async def test_revoke_of_a_finished_pipeline_is_refused(runtime: Any) -> None:
    root = await start(runtime, linear(act("echo")))
    await wait_outcome(runtime, root, "FINISHED")
    refused(await api.revoke_pipeline(runtime, root), "finished")
    assert await state_of(runtime, root, root) == "FINISHED"


async def test_revoke_a_pipeline_paused_by_an_appointed_node(runtime: Any) -> None:
    gate, paused = act("gate"), act("echo")
    new_gate(gate.id)
    root = await start(runtime, linear(gate, paused))
    await wait_gate_entered(runtime, root, gate.id)
    ok(await api.pause_node_appoint(runtime, paused.id))
    open_gate(gate.id)
    assert await wait_outcome(runtime, root) == "SUSPENDED"
    ok(await api.revoke_pipeline(runtime, root))
    assert await wait_outcome(runtime, root) == "REVOKED"
    refused(await api.resume_node_appoint(runtime, paused.id), "revoked")
    await grace()
    assert EXECUTIONS[paused.id] == 0
    assert [p for p in await stored_processes(runtime, root) if p.status != "dead"] == []


async def test_after_revoke_every_operation_is_refused(runtime: Any) -> None:
    failing, waiting, gate, later = act("fail"), act("callback"), act("gate"), act("echo")
    new_gate(gate.id)
    s, pg, cg = EmptyStartEvent(), ParallelGateway(), ConvergeGateway()
    s.extend(pg).connect(failing, waiting, gate).to(pg).converge(cg).extend(later).extend(
        EmptyEndEvent()
    )
    tree = build_tree(s)
    root = await start(runtime, tree)
    await wait_state(runtime, root, failing.id, "FAILED")
    cb = await wait_state(runtime, root, waiting.id, "RUNNING")
    await wait_gate_entered(runtime, root, gate.id)

    ok(await api.revoke_pipeline(runtime, root))
    refused(await api.retry_node(runtime, failing.id, {"ok": True}))
    refused(await api.skip_node(runtime, failing.id))
    refused(await api.pause_pipeline(runtime, root))
    refused(await api.resume_pipeline(runtime, root))
    refused(await api.pause_node_appoint(runtime, later.id))
    refused(await api.resume_node_appoint(runtime, later.id))
    refused(await api.forced_fail_activity(runtime, gate.id, "too late"))
    refused(await api.callback(runtime, waiting.id, cb["version"], {}))
    refused(await api.revoke_pipeline(runtime, root))
    states = await tree_states(runtime, root)
    assert states[failing.id]["state"] == "FAILED"
    assert states[failing.id]["retry"] == 0
    assert states[waiting.id]["state"] == "REVOKED"
    assert later.id not in states
    # Reads still work on a revoked pipeline.
    assert ok(await api.get_execution_data(runtime, failing.id))["outputs"]["_result"] is False


# ======================================================================================
# pause_node_appoint / resume_node_appoint
# ======================================================================================


async def test_pause_node_appoint_stops_before_the_node(runtime: Any, placement: str) -> None:
    gate, paused, after = act("gate"), act("echo", text="paused"), act("echo", text="after")
    new_gate(gate.id)
    placed = place(placement, steps(gate, paused, after))
    root = await start(runtime, placed.tree)
    await wait_gate_entered(runtime, root, gate.id)

    ok(await api.pause_node_appoint(runtime, paused.id))
    # Not reached yet: the appointed state is not part of the state tree.
    assert await state_of(runtime, root, paused.id) is None
    open_gate(gate.id)
    res = await api.wait_pipeline(runtime, root, timeout=15)
    assert res.result
    assert res.data == "SUSPENDED"
    assert paused.id in res.message
    states = await tree_states(runtime, root)
    assert states[gate.id]["state"] == "FINISHED"
    # Reached: it joins the tree, suspended, under the pipeline that holds it.
    assert states[paused.id]["state"] == "SUSPENDED"
    assert states[paused.id]["parent_id"] == (placed.sub_id or root)
    assert states[paused.id]["root_id"] == root
    assert after.id not in states
    assert EXECUTIONS[paused.id] == 0
    # The pipeline itself is not paused (the original leaves it RUNNING).
    assert states[root]["state"] == "RUNNING"
    if placed.sibling_id is not None:
        await wait_state(runtime, root, placed.sibling_id, "FINISHED")

    ok(await api.resume_node_appoint(runtime, paused.id))
    await wait_outcome(runtime, root, "FINISHED")
    states = await tree_states(runtime, root)
    assert states[paused.id]["state"] == "FINISHED"
    assert states[after.id]["state"] == "FINISHED"
    assert EXECUTIONS[paused.id] == 1


async def test_pause_node_appoint_then_resume_before_reaching_it(
    runtime: Any, placement: str
) -> None:
    gate, paused = act("gate"), act("echo", text="paused")
    new_gate(gate.id)
    placed = place(placement, steps(gate, paused))
    root = await start(runtime, placed.tree)
    await wait_gate_entered(runtime, root, gate.id)
    ok(await api.pause_node_appoint(runtime, paused.id))
    ok(await api.resume_node_appoint(runtime, paused.id))
    open_gate(gate.id)
    await wait_outcome(runtime, root, "FINISHED")
    assert await state_of(runtime, root, paused.id) == "FINISHED"
    assert EXECUTIONS[paused.id] == 1


async def test_pause_node_appoint_on_a_converge_gateway(runtime: Any) -> None:
    gate = act("gate")
    new_gate(gate.id)
    s, pg, cg = EmptyStartEvent(), ParallelGateway(), ConvergeGateway()
    s.extend(pg).connect(gate, act("echo")).to(pg).converge(cg).extend(act("echo")).extend(
        EmptyEndEvent()
    )
    root = await start(runtime, build_tree(s))
    await wait_gate_entered(runtime, root, gate.id)
    ok(await api.pause_node_appoint(runtime, cg.id))
    open_gate(gate.id)
    assert await wait_outcome(runtime, root) == "SUSPENDED"
    assert await state_of(runtime, root, cg.id) == "SUSPENDED"
    ok(await api.resume_node_appoint(runtime, cg.id))
    await wait_outcome(runtime, root, "FINISHED")
    assert await state_of(runtime, root, cg.id) == "FINISHED"


async def test_pause_node_appoint_refusals(runtime: Any, placement: str) -> None:
    gate, later = act("gate"), act("echo")
    new_gate(gate.id)
    sub = _subprocess(act("echo"))
    placed = place(placement, steps(gate, sub, later))
    root = await start(runtime, placed.tree)
    await wait_gate_entered(runtime, root, gate.id)

    res = await api.pause_node_appoint(runtime, sub.id)
    assert refused(res) == "can not use pause_node_appoint api for SubProcess"
    res = await api.resume_node_appoint(runtime, sub.id)
    assert refused(res) == "can not use resume_node_appoint api for SubProcess"
    if placed.sub_id is not None:
        res = await api.pause_node_appoint(runtime, placed.sub_id)
        assert refused(res) == "can not use pause_node_appoint api for SubProcess"
    # A RUNNING node cannot be appointed (the original wedges it).
    refused(await api.pause_node_appoint(runtime, gate.id), "RUNNING")
    refused(await api.pause_node_appoint(runtime, "e" + uuid.uuid4().hex), "does not exist")
    refused(await api.resume_node_appoint(runtime, "e" + uuid.uuid4().hex), "does not exist")
    # Resuming a node that is not paused.
    refused(await api.resume_node_appoint(runtime, later.id), "SUSPENDED")
    refused(await api.resume_node_appoint(runtime, gate.id), "SUSPENDED")
    # Twice: the second appointment is refused, one resume is enough.
    ok(await api.pause_node_appoint(runtime, later.id))
    refused(await api.pause_node_appoint(runtime, later.id), "SUSPENDED")
    ok(await api.resume_node_appoint(runtime, later.id))
    refused(await api.resume_node_appoint(runtime, later.id), "SUSPENDED")

    open_gate(gate.id)
    await wait_state(runtime, root, later.id, "FINISHED")
    # A FINISHED node cannot be appointed either.
    if placed.where == "parallel":
        assert placed.sibling_id is not None
        await wait_state(runtime, root, placed.sibling_id, "FINISHED")
    await wait_outcome(runtime, root, "FINISHED")
    refused(await api.pause_node_appoint(runtime, gate.id))
    refused(await api.resume_node_appoint(runtime, gate.id))


async def test_pause_node_appoint_of_a_finished_node_in_a_running_pipeline(runtime: Any) -> None:
    done, gate = act("echo"), act("gate")
    new_gate(gate.id)
    root = await start(runtime, linear(done, gate))
    await wait_gate_entered(runtime, root, gate.id)
    refused(await api.pause_node_appoint(runtime, done.id), "FINISHED")
    assert await state_of(runtime, root, done.id) == "FINISHED"
    open_gate(gate.id)
    await wait_outcome(runtime, root, "FINISHED")


# ======================================================================================
# retry_node
# ======================================================================================


async def test_retry_node_with_data_replaces_the_inputs(runtime: Any, placement: str) -> None:
    failing = act("fail", text=_splice("${x}"), old="gone")
    after = act("echo", text="after")
    placed = place(
        placement,
        steps(failing, after),
        variables={"${x}": Var(Var.PLAIN, "hello")},
    )
    root = await start(runtime, placed.tree)
    failed = await wait_state(runtime, root, failing.id, "FAILED")
    assert await wait_outcome(runtime, root) == "FAILED"
    failed_inputs = await inputs(runtime, failing.id)
    failed_outputs = await outputs(runtime, failing.id)
    assert failed_inputs["text"] == "hello"
    assert failed_outputs["ex_data"] == "refused by component"
    assert failed_outputs["_result"] is False

    data = {"ok": True, "text": "${x}", "raw": "${x}", "_escape_render_keys": ["raw"]}
    ok(await api.retry_node(runtime, failing.id, data))
    # The caller's dict is not consumed.
    assert data["_escape_render_keys"] == ["raw"]
    await wait_outcome(runtime, root, "FINISHED")

    node = await entry(runtime, root, failing.id)
    assert node is not None
    assert node["state"] == "FINISHED"
    assert node["retry"] == 1
    assert node["version"] != failed["version"]
    assert node["skip"] is False
    new_inputs = await inputs(runtime, failing.id)
    assert new_inputs["ok"] is True
    assert new_inputs["text"] == "hello"  # rendered
    assert new_inputs["raw"] == "${x}"  # escaped: kept raw
    assert "old" not in new_inputs  # replaced, not merged
    assert "_escape_render_keys" not in new_inputs
    raw = ok(await api.get_data(runtime, failing.id))["inputs"]
    assert raw["raw"] == {"need_render": False, "value": "${x}"}
    assert raw["text"] == {"need_render": True, "value": "${x}"}
    assert raw["ok"] == {"need_render": True, "value": True}
    assert "old" not in raw
    assert (await outputs(runtime, failing.id))["_result"] is True
    assert EXECUTIONS[failing.id] == 2
    assert await state_of(runtime, root, after.id) == "FINISHED"

    rows = await histories(runtime, failing.id)
    assert len(rows) == 1
    row = rows[0]
    assert set(row) == HISTORY_KEYS
    assert row["node_id"] == failing.id
    assert row["retry"] == 0
    assert row["loop"] == 1
    assert row["skip"] is False
    assert row["version"] == failed["version"]
    assert row["inputs"] == failed_inputs
    assert row["outputs"] == failed_outputs
    assert row["started_time"] is not None
    assert row["archived_time"] is not None
    short = ok(await api.get_node_short_histories(runtime, failing.id))
    assert len(short) == 1
    assert "inputs" not in short[0]
    assert "outputs" not in short[0]
    assert {k: v for k, v in row.items() if k not in ("inputs", "outputs")} == short[0]


async def test_retry_node_without_data_keeps_the_inputs(runtime: Any, placement: str) -> None:
    flaky = act("ops_fail_once", text=_splice("${x}"))
    placed = place(placement, steps(flaky), variables={"${x}": Var(Var.PLAIN, "kept")})
    root = await start(runtime, placed.tree)
    failed = await wait_state(runtime, root, flaky.id, "FAILED")
    before = await inputs(runtime, flaky.id)
    ok(await api.retry_node(runtime, flaky.id))
    await wait_outcome(runtime, root, "FINISHED")
    node = await entry(runtime, root, flaky.id)
    assert node is not None
    assert (node["state"], node["retry"]) == ("FINISHED", 1)
    assert node["version"] != failed["version"]
    assert await inputs(runtime, flaky.id) == before
    assert (await outputs(runtime, flaky.id))["attempt"] == 2
    assert OPS_EXECUTIONS[flaky.id] == 2
    rows = await histories(runtime, flaky.id)
    assert [(r["retry"], r["outputs"]["attempt"]) for r in rows] == [(0, 1)]


async def test_retry_node_counts_and_histories_accumulate(runtime: Any) -> None:
    failing = act("fail")
    root = await start(runtime, linear(failing))
    versions = [(await wait_state(runtime, root, failing.id, "FAILED"))["version"]]
    for attempt in (1, 2):
        ok(await api.retry_node(runtime, failing.id))
        assert await wait_outcome(runtime, root) == "FAILED"
        node = await wait_state(runtime, root, failing.id, "FAILED")
        assert node["retry"] == attempt
        versions.append(node["version"])
    ok(await api.retry_node(runtime, failing.id, {"ok": True}))
    await wait_outcome(runtime, root, "FINISHED")
    node = await entry(runtime, root, failing.id)
    assert node is not None
    assert node["retry"] == 3
    assert len(set(versions)) == 3
    rows = await histories(runtime, failing.id)
    assert [r["retry"] for r in rows] == [0, 1, 2]  # oldest first
    assert [r["version"] for r in rows] == versions
    assert all(r["outputs"]["_result"] is False for r in rows)
    assert len({r["id"] for r in rows}) == 3
    assert EXECUTIONS[failing.id] == 4


async def test_retry_node_refusals(runtime: Any, placement: str) -> None:
    done, gate, unreached = act("echo"), act("gate"), act("echo")
    stubborn = act("fail", retryable=False)
    new_gate(gate.id)
    placed = place(placement, steps(done, gate, unreached))
    # A second, independent pipeline holds the non-retryable failure.
    other = place(placement, steps(stubborn))
    root = await start(runtime, placed.tree)
    other_root = await start(runtime, other.tree)
    await wait_gate_entered(runtime, root, gate.id)
    await wait_state(runtime, other_root, stubborn.id, "FAILED")

    res = await api.retry_node(runtime, stubborn.id, {"ok": True})
    assert refused(res) == f"can not retry node({stubborn.id}) with can_retry(False)"
    res = await api.retry_node(runtime, gate.id)
    assert refused(res) == f"{gate.id} state is not FAILED, actual RUNNING"
    res = await api.retry_node(runtime, done.id)
    assert refused(res) == f"{done.id} state is not FAILED, actual FINISHED"
    refused(await api.retry_node(runtime, unreached.id), "state is not FAILED")
    unknown = "e" + uuid.uuid4().hex
    assert refused(await api.retry_node(runtime, unknown)) == f"node({unknown}) does not exist"
    refused(await api.retry_node(runtime, gate.id, "not a dict"))  # type: ignore[arg-type]
    # Nothing changed.
    assert await state_of(runtime, other_root, stubborn.id) == "FAILED"
    assert await histories(runtime, stubborn.id) == []
    assert await state_of(runtime, root, gate.id) == "RUNNING"
    open_gate(gate.id)
    await wait_outcome(runtime, root, "FINISHED")
    refused(await api.retry_node(runtime, done.id), "finished")


async def test_retry_node_on_an_exclusive_gateway(runtime: Any) -> None:
    eg, cg = ExclusiveGateway(conditions={0: "${x} == 1", 1: "${x} == 2"}), ConvergeGateway()
    s = EmptyStartEvent()
    s.extend(eg).connect(act("echo"), act("echo")).to(eg).converge(cg).extend(EmptyEndEvent())
    tree = build_tree(s, data=Data(inputs={"${x}": Var(Var.PLAIN, 3)}))
    root = await start(runtime, tree)
    first = await wait_state(runtime, root, eg.id, "FAILED")
    ok(await api.retry_node(runtime, eg.id))
    assert await wait_outcome(runtime, root) == "FAILED"
    node = await wait_state(runtime, root, eg.id, "FAILED")
    assert node["retry"] == 1
    assert node["version"] != first["version"]
    assert "all conditions of branches are not meet" in (await outputs(runtime, eg.id))["ex_data"]
    assert [r["version"] for r in await histories(runtime, eg.id)] == [first["version"]]


# ======================================================================================
# retry_subprocess
# ======================================================================================


async def test_retry_subprocess_after_param_hydration_failed(runtime: Any, placement: str) -> None:
    value = "v" + uuid.uuid4().hex
    echo = act("echo", text=_splice("${p}"))
    sub = _subprocess(
        echo,
        data=Data(inputs={"${p}": Var(Var.PLAIN, "default")}),
        params=Params({"${p}": _splice("${src}")}),
    )
    # ${src} is a lazy variable of the pipeline that holds the sub-process: it raises once.
    placed = place(
        placement,
        steps(sub),
        variables={"${src}": Var(Var.LAZY, value, custom_type="ops_flaky")},
    )
    root = await start(runtime, placed.tree)
    failed = await wait_state(runtime, root, sub.id, "FAILED")
    assert await wait_outcome(runtime, root) == "FAILED"
    assert "context hydrate failed" in (await outputs(runtime, sub.id))["ex_data"]
    assert await state_of(runtime, root, echo.id) is None
    assert await state_of(runtime, root, root) == "RUNNING"

    ok(await api.retry_subprocess(runtime, sub.id))
    await wait_outcome(runtime, root, "FINISHED")
    node = await entry(runtime, root, sub.id)
    assert node is not None
    assert (node["state"], node["retry"]) == ("FINISHED", 1)
    assert node["version"] != failed["version"]
    assert (await outputs(runtime, echo.id))["echo"] == value.upper()
    assert LAZY_CALLS[value] == 2
    rows = await histories(runtime, sub.id)
    assert [(r["retry"], r["version"]) for r in rows] == [(0, failed["version"])]
    assert "context hydrate failed" in rows[0]["outputs"]["ex_data"]


async def test_retry_subprocess_that_fails_again(runtime: Any) -> None:
    sub = _subprocess(
        act("echo", text=_splice("${p}")),
        data=Data(inputs={"${p}": Var(Var.PLAIN, "default")}),
        params=Params({"${p}": _splice("${src}")}),
    )
    data = Data(inputs={"${src}": Var(Var.LAZY, "x", custom_type="broken")})
    root = await start(runtime, linear(sub, data=data))
    await wait_state(runtime, root, sub.id, "FAILED")
    ok(await api.retry_subprocess(runtime, sub.id))
    assert await wait_outcome(runtime, root) == "FAILED"
    node = await wait_state(runtime, root, sub.id, "FAILED")
    assert node["retry"] == 1
    assert "lazy variable exploded" in (await outputs(runtime, sub.id))["ex_data"]
    assert len(await histories(runtime, sub.id)) == 1
    ok(await api.revoke_pipeline(runtime, root))


async def test_retry_subprocess_with_a_broken_lazy_param(runtime: Any) -> None:
    sub = _subprocess(
        act("echo", text=_splice("${p}")),
        data=Data(inputs={"${p}": Var(Var.PLAIN, "default")}),
        params=Params({"${p}": Var(Var.LAZY, "x", custom_type="broken")}),
    )
    root = await start(runtime, linear(sub))
    res = await api.wait_pipeline(runtime, root, timeout=15)
    assert res.data == "FAILED"
    assert await state_of(runtime, root, sub.id) == "FAILED"
    assert "lazy variable exploded" in (await outputs(runtime, sub.id))["ex_data"]
    ok(await api.retry_subprocess(runtime, sub.id))
    node = await wait_state(runtime, root, sub.id, "FAILED")
    assert node["retry"] == 1


async def test_retry_node_on_a_failed_subprocess_replaces_its_params(runtime: Any) -> None:
    echo = act("echo", text=_splice("${p}"))
    sub = _subprocess(
        echo,
        data=Data(inputs={"${p}": Var(Var.PLAIN, "default")}),
        params=Params({"${p}": _splice("${bad}")}),
    )
    data = Data(inputs={"${bad}": Var(Var.LAZY, "x", custom_type="broken")})
    root = await start(runtime, linear(sub, data=data))
    await wait_state(runtime, root, sub.id, "FAILED")
    ok(await api.retry_node(runtime, sub.id, {"${p}": "fixed"}))
    await wait_outcome(runtime, root, "FINISHED")
    assert (await outputs(runtime, echo.id))["echo"] == "fixed"
    node = await entry(runtime, root, sub.id)
    assert node is not None
    assert (node["state"], node["retry"]) == ("FINISHED", 1)


async def test_retry_subprocess_refusals(runtime: Any, placement: str) -> None:
    gate, failing = act("gate"), act("fail")
    new_gate(gate.id)
    running_sub = _subprocess(gate)
    placed = place(placement, steps(running_sub))
    other = place(placement, steps(failing))
    root = await start(runtime, placed.tree)
    other_root = await start(runtime, other.tree)
    await wait_gate_entered(runtime, root, gate.id)
    await wait_state(runtime, other_root, failing.id, "FAILED")

    res = await api.retry_subprocess(runtime, failing.id)
    assert refused(res) == f"node({failing.id}) type is not SubProcess"
    res = await api.retry_subprocess(runtime, gate.id)
    assert refused(res) == f"node({gate.id}) type is not SubProcess"
    res = await api.retry_subprocess(runtime, running_sub.id)
    assert refused(res) == f"{running_sub.id} state is not FAILED, actual RUNNING"
    unknown = "e" + uuid.uuid4().hex
    refused(await api.retry_subprocess(runtime, unknown), "does not exist")
    assert await state_of(runtime, other_root, failing.id) == "FAILED"
    open_gate(gate.id)
    await wait_outcome(runtime, root, "FINISHED")
    refused(await api.retry_subprocess(runtime, running_sub.id))


# ======================================================================================
# skip_node
# ======================================================================================


async def test_skip_node_finishes_a_failed_activity(runtime: Any, placement: str) -> None:
    failing, after = act("fail"), act("echo", text="after")
    placed = place(placement, steps(failing, after))
    root = await start(runtime, placed.tree)
    failed = await wait_state(runtime, root, failing.id, "FAILED")
    assert await wait_outcome(runtime, root) == "FAILED"
    failed_outputs = await outputs(runtime, failing.id)

    ok(await api.skip_node(runtime, failing.id))
    await wait_outcome(runtime, root, "FINISHED")
    node = await entry(runtime, root, failing.id)
    assert node is not None
    assert node["state"] == "FINISHED"
    assert node["skip"] is True
    assert node["retry"] == 0
    assert node["version"] != failed["version"]
    assert node["archived_time"] is not None
    # No re-execution, no output change (the _result stays False).
    assert await outputs(runtime, failing.id) == failed_outputs
    assert EXECUTIONS[failing.id] == 1
    assert await state_of(runtime, root, after.id) == "FINISHED"
    rows = await histories(runtime, failing.id)
    assert len(rows) == 1
    assert (rows[0]["skip"], rows[0]["retry"], rows[0]["version"]) == (
        False,
        0,
        failed["version"],
    )
    assert rows[0]["outputs"] == failed_outputs


async def test_skip_node_does_not_extract_outputs(runtime: Any, placement: str) -> None:
    waiting = act("callback")
    reader = act("echo", text=_splice("${w}"))
    placed = place(
        placement,
        steps(waiting, reader),
        variables={"${w}": NodeOutput(source_act=waiting.id, source_key="waiting")},
    )
    root = await start(runtime, placed.tree)
    await wait_state(runtime, root, waiting.id, "RUNNING")
    await wait_until(lambda: _has_output(runtime, waiting.id, "waiting"), "the callback wait")
    ok(await api.forced_fail_activity(runtime, waiting.id, "stop"))
    ok(await api.skip_node(runtime, waiting.id))
    await wait_outcome(runtime, root, "FINISHED")
    # `waiting` was never extracted into ${w}: neither forced fail nor skip extract.
    assert (await outputs(runtime, reader.id))["echo"] == "${w}"


async def test_skip_node_refusals(runtime: Any, placement: str) -> None:
    gate = act("gate")
    new_gate(gate.id)
    stuck = act("fail", skippable=False)
    eg, cg = ExclusiveGateway(conditions={0: "1 == 2", 1: "1 == 3"}), ConvergeGateway()
    cpg, cg2 = ConditionalParallelGateway(conditions={0: "1 == 2", 1: "1 == 3"}), ConvergeGateway()
    broken_sub = _subprocess(act("echo"), params=Params({"${p}": _splice("${bad}")}))

    def build(prev: Element) -> Element:
        prev.extend(pg := ParallelGateway())
        pg.connect(gate, stuck, eg, cpg, broken_sub)
        eg.connect(act("echo"), act("echo")).to(eg).converge(cg)
        cpg.connect(act("echo"), act("echo")).to(cpg).converge(cg2)
        join = ConvergeGateway()
        for tail in (gate, stuck, cg, cg2, broken_sub):
            tail.extend(join)
        return join

    placed = place(placement, build, variables={"${bad}": Var(Var.LAZY, "x", custom_type="broken")})
    root = await start(runtime, placed.tree)
    await wait_gate_entered(runtime, root, gate.id)
    for node_id in (stuck.id, eg.id, cpg.id, broken_sub.id):
        await wait_state(runtime, root, node_id, "FAILED")

    assert refused(await api.skip_node(runtime, stuck.id)) == "can not skip this node"
    res = await api.skip_node(runtime, eg.id)
    assert refused(res) == "can not use skip_node api for ExclusiveGateway"
    assert refused(await api.skip_node(runtime, cpg.id)) == "can not skip this node"
    assert refused(await api.skip_node(runtime, broken_sub.id)) == "can not skip this node"
    res = await api.skip_node(runtime, gate.id)
    assert refused(res) == f"{gate.id} state is not FAILED, actual RUNNING"
    refused(await api.skip_node(runtime, "e" + uuid.uuid4().hex), "does not exist")
    # The end event and parallel gateways cannot be skipped either.
    end_id = placed.tree["end_event"]["id"]
    assert refused(await api.skip_node(runtime, end_id)) == "can not skip this node"
    refused(await api.skip_node(runtime, cg.id), "can not skip this node")
    states = await tree_states(runtime, root)
    for node_id in (stuck.id, eg.id, cpg.id, broken_sub.id):
        assert states[node_id]["state"] == "FAILED"
        assert states[node_id]["skip"] is False
    ok(await api.revoke_pipeline(runtime, root))


async def test_skip_a_failed_start_event(runtime: Any) -> None:
    after = act("echo", text=_splice("${x}"))
    data = Data(
        inputs={"${x}": Var(Var.LAZY, "x", custom_type="broken")},
        pre_render_keys=["${x}"],
    )
    s = EmptyStartEvent()
    s.extend(after).extend(EmptyEndEvent())
    root = await start(runtime, build_tree(s, data=data))
    await wait_state(runtime, root, s.id, "FAILED")
    assert "context hydrate failed" in (await outputs(runtime, s.id))["ex_data"]
    ok(await api.skip_node(runtime, s.id))
    # `after` still needs ${x}: its own hydration fails now; skip that as well.
    await wait_state(runtime, root, after.id, "FAILED")
    ok(await api.skip_node(runtime, after.id))
    await wait_outcome(runtime, root, "FINISHED")
    node = await entry(runtime, root, s.id)
    assert node is not None
    assert (node["state"], node["skip"]) == ("FINISHED", True)


# ======================================================================================
# skip_exclusive_gateway
# ======================================================================================


async def test_skip_exclusive_gateway_takes_the_chosen_flow(runtime: Any, placement: str) -> None:
    eg = ExclusiveGateway(conditions={0: "${x} == 1", 1: "${x} == 2"})
    a, b, cg, after = act("echo", text="a"), act("echo", text="b"), ConvergeGateway(), act("echo")

    def build(prev: Element) -> Element:
        prev.extend(eg).connect(a, b).to(eg).converge(cg)
        return cg.extend(after)

    placed = place(placement, build, variables={"${x}": Var(Var.PLAIN, 3)})
    root = await start(runtime, placed.tree)
    failed = await wait_state(runtime, root, eg.id, "FAILED")
    assert await wait_outcome(runtime, root) == "FAILED"
    failed_outputs = await outputs(runtime, eg.id)
    assert "all conditions of branches are not meet" in failed_outputs["ex_data"]

    ok(await api.skip_exclusive_gateway(runtime, eg.id, flow_id(placed.tree, eg.id, b.id)))
    await wait_outcome(runtime, root, "FINISHED")
    states = await tree_states(runtime, root)
    assert states[eg.id]["state"] == "FINISHED"
    assert states[eg.id]["skip"] is True
    assert states[eg.id]["version"] != failed["version"]
    assert states[b.id]["state"] == "FINISHED"
    assert a.id not in states
    assert states[after.id]["state"] == "FINISHED"
    rows = await histories(runtime, eg.id)
    assert [(r["skip"], r["version"]) for r in rows] == [(False, failed["version"])]
    assert rows[0]["outputs"] == failed_outputs


async def test_skip_exclusive_gateway_refusals(runtime: Any, placement: str) -> None:
    eg = ExclusiveGateway(conditions={0: "${x} == 1", 1: "${x} == 2"})
    a, b, cg = act("echo"), act("echo"), ConvergeGateway()
    cpg = ConditionalParallelGateway(conditions={0: "1 == 2", 1: "1 == 3"})
    c, d, cg2 = act("echo"), act("echo"), ConvergeGateway()
    failing = act("fail")

    def build(prev: Element) -> Element:
        prev.extend(pg := ParallelGateway())
        pg.connect(eg, cpg, failing)
        eg.connect(a, b).to(eg).converge(cg)
        cpg.connect(c, d).to(cpg).converge(cg2)
        join = ConvergeGateway()
        for tail in (cg, cg2, failing):
            tail.extend(join)
        return join

    placed = place(placement, build, variables={"${x}": Var(Var.PLAIN, 3)})
    tree = placed.tree
    root = await start(runtime, tree)
    for node_id in (eg.id, cpg.id, failing.id):
        await wait_state(runtime, root, node_id, "FAILED")
    to_a = flow_id(tree, eg.id, a.id)

    res = await api.skip_exclusive_gateway(runtime, failing.id, to_a)
    assert refused(res) == f"{failing.id} is not exclusive gateway, actual: ServiceActivity"
    res = await api.skip_exclusive_gateway(runtime, cpg.id, flow_id(tree, cpg.id, c.id))
    assert refused(res) == f"{cpg.id} is not exclusive gateway, actual: ConditionalParallelGateway"
    unknown_flow = "f" + uuid.uuid4().hex
    refused(await api.skip_exclusive_gateway(runtime, eg.id, unknown_flow), unknown_flow)
    # A real flow, but not one of this gateway's.
    other_flow = flow_id(tree, cpg.id, c.id)
    refused(await api.skip_exclusive_gateway(runtime, eg.id, other_flow), other_flow)
    refused(await api.skip_exclusive_gateway(runtime, "e" + uuid.uuid4().hex, to_a))
    assert await state_of(runtime, root, eg.id) == "FAILED"
    assert await state_of(runtime, root, a.id) is None

    ok(await api.skip_exclusive_gateway(runtime, eg.id, to_a))
    await wait_state(runtime, root, a.id, "FINISHED")
    # Now FINISHED: a second skip is refused.
    res = await api.skip_exclusive_gateway(runtime, eg.id, to_a)
    assert refused(res) == f"{eg.id} state is not FAILED, actual FINISHED"
    assert EXECUTIONS[a.id] == 1
    assert await state_of(runtime, root, b.id) is None
    ok(await api.revoke_pipeline(runtime, root))


# ======================================================================================
# skip_conditional_parallel_gateway
# ======================================================================================


def _cpg_block() -> tuple[Any, list[Any], Any, Callable[[Element], Element]]:
    cpg = ConditionalParallelGateway(conditions={0: "${x} == 1", 1: "${x} == 2", 2: "${x} == 3"})
    branches = [act("echo", text=str(i)) for i in range(3)]
    cg = ConvergeGateway()

    def build(prev: Element) -> Element:
        prev.extend(cpg).connect(*branches).to(cpg).converge(cg)
        return cg.extend(act("echo", text="after"))

    return cpg, branches, cg, build


async def test_skip_conditional_parallel_gateway_forks_the_chosen_flows(
    runtime: Any, placement: str
) -> None:
    cpg, (a, b, c), cg, build = _cpg_block()
    placed = place(placement, build, variables={"${x}": Var(Var.PLAIN, 0)})
    tree = placed.tree
    root = await start(runtime, tree)
    failed = await wait_state(runtime, root, cpg.id, "FAILED")
    assert await wait_outcome(runtime, root) == "FAILED"
    assert "all conditions of branches are not meet" in (await outputs(runtime, cpg.id))["ex_data"]

    flows = [flow_id(tree, cpg.id, a.id), flow_id(tree, cpg.id, c.id)]
    ok(await api.skip_conditional_parallel_gateway(runtime, cpg.id, flows, cg.id))
    await wait_outcome(runtime, root, "FINISHED")
    states = await tree_states(runtime, root)
    assert states[cpg.id]["state"] == "FINISHED"
    assert states[cpg.id]["skip"] is True
    assert states[cpg.id]["version"] != failed["version"]
    assert states[a.id]["state"] == "FINISHED"
    assert states[c.id]["state"] == "FINISHED"
    assert b.id not in states
    # The converge gateway ran once, after both forked branches arrived.
    assert states[cg.id]["state"] == "FINISHED"
    assert states[cg.id]["loop"] == 1
    assert await histories(runtime, cg.id) == []
    rows = await histories(runtime, cpg.id)
    assert [(r["skip"], r["version"]) for r in rows] == [(False, failed["version"])]


async def test_skip_conditional_parallel_gateway_with_one_flow(runtime: Any) -> None:
    cpg, (a, b, c), cg, build = _cpg_block()
    placed = place("top", build, variables={"${x}": Var(Var.PLAIN, 0)})
    root = await start(runtime, placed.tree)
    await wait_state(runtime, root, cpg.id, "FAILED")
    flows = [flow_id(placed.tree, cpg.id, b.id)]
    ok(await api.skip_conditional_parallel_gateway(runtime, cpg.id, flows, cg.id))
    await wait_outcome(runtime, root, "FINISHED")
    states = await tree_states(runtime, root)
    assert states[b.id]["state"] == "FINISHED"
    assert a.id not in states
    assert c.id not in states


async def test_skip_conditional_parallel_gateway_refusals(runtime: Any, placement: str) -> None:
    cpg, (a, _b, _c), cg, build_cpg = _cpg_block()
    eg = ExclusiveGateway(conditions={0: "1 == 2", 1: "1 == 3"})
    e1, e2, ecg = act("echo"), act("echo"), ConvergeGateway()

    def build(prev: Element) -> Element:
        prev.extend(pg := ParallelGateway())
        tail = build_cpg(pg)
        pg.extend(eg).connect(e1, e2).to(eg).converge(ecg)
        join = ConvergeGateway()
        tail.extend(join)
        ecg.extend(join)
        return join

    placed = place(placement, build, variables={"${x}": Var(Var.PLAIN, 0)})
    tree = placed.tree
    root = await start(runtime, tree)
    failed = await wait_state(runtime, root, cpg.id, "FAILED")
    await wait_state(runtime, root, eg.id, "FAILED")
    to_a = flow_id(tree, cpg.id, a.id)

    res = await api.skip_conditional_parallel_gateway(
        runtime, eg.id, [flow_id(tree, eg.id, e1.id)], ecg.id
    )
    assert refused(res) == f"{eg.id} is not conditional parallel gateway, actual: ExclusiveGateway"
    res = await api.skip_conditional_parallel_gateway(runtime, a.id, [to_a], cg.id)
    assert refused(res) == f"{a.id} is not conditional parallel gateway, actual: ServiceActivity"
    unknown_flow = "f" + uuid.uuid4().hex
    res = await api.skip_conditional_parallel_gateway(runtime, cpg.id, [to_a, unknown_flow], cg.id)
    refused(res, unknown_flow)
    res = await api.skip_conditional_parallel_gateway(
        runtime, cpg.id, [flow_id(tree, eg.id, e1.id)], cg.id
    )
    refused(res)
    refused(await api.skip_conditional_parallel_gateway(runtime, cpg.id, [], cg.id))
    unknown_cg = "e" + uuid.uuid4().hex
    res = await api.skip_conditional_parallel_gateway(runtime, cpg.id, [to_a], unknown_cg)
    refused(res, unknown_cg)
    res = await api.skip_conditional_parallel_gateway(runtime, cpg.id, [to_a], a.id)
    refused(res, a.id)
    res = await api.skip_conditional_parallel_gateway(
        runtime, "e" + uuid.uuid4().hex, [to_a], cg.id
    )
    refused(res, "does not exist")
    # None of the refusals changed anything.
    node = await entry(runtime, root, cpg.id)
    assert node is not None
    assert (node["state"], node["version"], node["skip"]) == ("FAILED", failed["version"], False)
    assert await histories(runtime, cpg.id) == []
    assert await state_of(runtime, root, a.id) is None

    ok(await api.skip_conditional_parallel_gateway(runtime, cpg.id, [to_a], cg.id))
    await wait_state(runtime, root, cg.id, "FINISHED")
    res = await api.skip_conditional_parallel_gateway(runtime, cpg.id, [to_a], cg.id)
    assert refused(res) == f"{cpg.id} state is not FAILED, actual FINISHED"
    assert EXECUTIONS[a.id] == 1
    ok(await api.revoke_pipeline(runtime, root))


# ======================================================================================
# forced_fail_activity
# ======================================================================================


async def test_forced_fail_a_running_node_discards_its_late_result(
    runtime: Any, placement: str
) -> None:
    gate, after = act("gate"), act("echo")
    new_gate(gate.id)
    placed = place(placement, steps(gate, after))
    root = await start(runtime, placed.tree)
    await wait_gate_entered(runtime, root, gate.id)
    running = await entry(runtime, root, gate.id)
    assert running is not None

    ok(await api.forced_fail_activity(runtime, gate.id, "operator says stop"))
    node = await entry(runtime, root, gate.id)
    assert node is not None
    assert node["state"] == "FAILED"
    assert node["version"] != running["version"]
    assert node["archived_time"] is not None
    out = await outputs(runtime, gate.id)
    assert out["ex_data"] == "operator says stop"
    assert out["_forced_failed"] is True
    assert await wait_outcome(runtime, root) == "FAILED"
    # No history row for a forced fail, as in the original.
    assert await histories(runtime, gate.id) == []

    open_gate(gate.id)
    await grace()
    # The component returned meanwhile: its result is discarded.
    node = await entry(runtime, root, gate.id)
    assert node is not None
    assert node["state"] == "FAILED"
    out = await outputs(runtime, gate.id)
    assert "passed" not in out
    assert out["ex_data"] == "operator says stop"
    assert await state_of(runtime, root, after.id) is None

    # Follow-up: a retry runs it again (the gate is open now).
    ok(await api.retry_node(runtime, gate.id))
    await wait_outcome(runtime, root, "FINISHED")
    assert (await outputs(runtime, gate.id))["passed"] is True
    assert EXECUTIONS[gate.id] == 2
    rows = await histories(runtime, gate.id)
    assert len(rows) == 1
    assert rows[0]["outputs"]["_forced_failed"] is True


@pytest.mark.parametrize("follow_up", ["skip_node", "retry_node"])
async def test_forced_fail_of_a_hung_component_then_follow_up(runtime: Any, follow_up: str) -> None:
    hung, after = act("gate"), act("echo")
    new_gate(hung.id)  # never opened: the component hangs (the reason to force-fail it)
    root = await start(runtime, linear(hung, after))
    await wait_gate_entered(runtime, root, hung.id)
    ok(await api.forced_fail_activity(runtime, hung.id, "hung"))
    if follow_up == "retry_node":
        # The retried attempt may run freely: only the hung attempt waits on the old gate.
        GATES.pop(hung.id)
        new_gate(hung.id).set()
    ok(await getattr(api, follow_up)(runtime, hung.id))
    res = await api.wait_pipeline(runtime, root, timeout=15)
    assert res.data == "FINISHED", res.message
    assert await state_of(runtime, root, after.id) == "FINISHED"


async def test_forced_fail_a_callback_wait(runtime: Any, placement: str) -> None:
    waiting, after = act("callback"), act("echo")
    placed = place(placement, steps(waiting, after))
    root = await start(runtime, placed.tree)
    await wait_state(runtime, root, waiting.id, "RUNNING")
    await wait_until(lambda: _has_output(runtime, waiting.id, "waiting"), "the callback wait")
    old = await entry(runtime, root, waiting.id)
    assert old is not None

    ok(await api.forced_fail_activity(runtime, waiting.id, "no callback came"))
    node = await entry(runtime, root, waiting.id)
    assert node is not None
    assert node["state"] == "FAILED"
    assert node["version"] != old["version"]
    out = await outputs(runtime, waiting.id)
    assert out["ex_data"] == "no callback came"
    assert out["_forced_failed"] is True
    assert out["waiting"] is True
    assert out["_result"] is True  # kept from the successful execute
    assert await wait_outcome(runtime, root) == "FAILED"

    # A callback to the old attempt is refused, and so is one to the new version.
    refused(await api.callback(runtime, waiting.id, old["version"], {"late": True}))
    refused(await api.callback(runtime, waiting.id, node["version"], {"late": True}))
    await grace()
    assert await state_of(runtime, root, waiting.id) == "FAILED"
    assert "callback_data" not in await outputs(runtime, waiting.id)

    ok(await api.skip_node(runtime, waiting.id))
    await wait_outcome(runtime, root, "FINISHED")
    assert await state_of(runtime, root, after.id) == "FINISHED"


async def test_forced_fail_during_an_in_flight_schedule(runtime: Any, placement: str) -> None:
    slow = act("ops_slow_callback")
    SCHEDULE_GATES[slow.id] = anyio.Event()
    placed = place(placement, steps(slow))
    root = await start(runtime, placed.tree)
    node = await wait_state(runtime, root, slow.id, "RUNNING")
    await wait_until(lambda: _has_output(runtime, slow.id, "waiting"), "the callback wait")
    ok(await api.callback(runtime, slow.id, node["version"], {"fail": True}))

    async def in_flight() -> bool:
        return slow.id in SCHEDULE_STARTED

    await wait_until(in_flight, "the schedule to start")
    ok(await api.forced_fail_activity(runtime, slow.id, "forced"))
    SCHEDULE_GATES[slow.id].set()
    await grace()
    # The schedule's own failure must not overwrite the forced-fail outputs (the
    # original loses this race).
    out = await outputs(runtime, slow.id)
    assert out["ex_data"] == "forced"
    assert out["_forced_failed"] is True
    assert "callback_data" not in out
    assert await state_of(runtime, root, slow.id) == "FAILED"
    ok(await api.skip_node(runtime, slow.id))
    await wait_outcome(runtime, root, "FINISHED")
    assert OPS_SCHEDULES[slow.id] == 1


async def test_forced_fail_refusals(runtime: Any, placement: str) -> None:
    done, gate, unreached = act("echo"), act("gate"), act("echo")
    new_gate(gate.id)
    failing = act("fail")
    sub_gate = act("gate")
    new_gate(sub_gate.id)
    running_sub = _subprocess(sub_gate)
    pg, cg = ParallelGateway(), ConvergeGateway()

    def build(prev: Element) -> Element:
        prev.extend(done).extend(pg)
        pg.connect(gate, failing, running_sub).to(pg).converge(cg)
        return cg.extend(unreached)

    placed = place(placement, build)
    root = await start(runtime, placed.tree)
    await wait_gate_entered(runtime, root, gate.id)
    await wait_gate_entered(runtime, root, sub_gate.id)
    await wait_state(runtime, root, failing.id, "FAILED")

    res = await api.forced_fail_activity(runtime, running_sub.id, "x")
    assert refused(res) == f"{running_sub.id} is not activity, actual: SubProcess"
    res = await api.forced_fail_activity(runtime, pg.id, "x")
    assert refused(res) == f"{pg.id} is not activity, actual: ParallelGateway"
    res = await api.forced_fail_activity(runtime, done.id, "x")
    assert refused(res) == f"{done.id} state is not RUNNING, actual: FINISHED"
    res = await api.forced_fail_activity(runtime, failing.id, "x")
    assert refused(res) == f"{failing.id} state is not RUNNING, actual: FAILED"
    refused(await api.forced_fail_activity(runtime, unreached.id, "x"), "not RUNNING")
    refused(await api.forced_fail_activity(runtime, "e" + uuid.uuid4().hex, "x"), "does not exist")
    if placed.sub_id is not None:
        res = await api.forced_fail_activity(runtime, placed.sub_id, "x")
        assert refused(res) == f"{placed.sub_id} is not activity, actual: SubProcess"
    # Twice: the second finds it FAILED.
    ok(await api.forced_fail_activity(runtime, gate.id, "first"))
    res = await api.forced_fail_activity(runtime, gate.id, "second")
    assert refused(res) == f"{gate.id} state is not RUNNING, actual: FAILED"
    assert (await outputs(runtime, gate.id))["ex_data"] == "first"
    assert await state_of(runtime, root, done.id) == "FINISHED"
    assert await state_of(runtime, root, failing.id) == "FAILED"
    ok(await api.revoke_pipeline(runtime, root))


async def test_forced_fail_stops_polling_and_retry_polls_again(runtime: Any) -> None:
    poller = act("ops_poll_forever")
    root = await start(runtime, linear(poller))

    async def polled(times: int) -> bool:
        return OPS_SCHEDULES[poller.id] >= times

    await wait_until(lambda: polled(2), "two polls")
    ok(await api.forced_fail_activity(runtime, poller.id, "enough"))
    polls = OPS_SCHEDULES[poller.id]
    await grace()
    assert OPS_SCHEDULES[poller.id] == polls
    assert await state_of(runtime, root, poller.id) == "FAILED"
    ok(await api.retry_node(runtime, poller.id))
    await wait_until(lambda: polled(polls + 2), "the retried attempt to poll")
    assert await state_of(runtime, root, poller.id) == "RUNNING"
    ok(await api.revoke_pipeline(runtime, root))


@pytest.mark.parametrize("signal", [True, False])
async def test_forced_fail_state_signal(runtime: Any, signal: bool) -> None:
    gate = act("gate")
    new_gate(gate.id)
    tree = linear(gate)
    root = tree["id"]
    seen: list[Any] = []
    async with api.subscribe(runtime, root) as events:
        await start(runtime, tree)
        await wait_gate_entered(runtime, root, gate.id)
        ok(await api.forced_fail_activity(runtime, gate.id, "x", send_post_set_state_signal=signal))
        # Retrying it emits READY: once that arrives, the forced fail's event (if any) is in.
        open_gate(gate.id)
        ok(await api.retry_node(runtime, gate.id))
        with anyio.fail_after(15):
            async for event in events:
                seen.append(event)
                if event.kind == "pipeline_finished":
                    break
    about_gate = [(e.kind, e.state) for e in seen if e.node_id == gate.id]
    failed = [k for k in about_gate if k[1] == "FAILED"]
    if signal:
        assert ("state", "FAILED") in failed
    else:
        assert failed == []
    assert about_gate[-3:] == [("state", "READY"), ("state", "RUNNING"), ("state", "FINISHED")]
    assert await state_of(runtime, root, gate.id) == "FINISHED"


# ======================================================================================
# callback refusals
# ======================================================================================


async def test_callback_refusals(runtime: Any, placement: str) -> None:
    waiting, done = act("callback"), act("echo")
    placed = place(placement, steps(done, waiting))
    root = await start(runtime, placed.tree)
    node = await wait_state(runtime, root, waiting.id, "RUNNING")
    await wait_until(lambda: _has_output(runtime, waiting.id, "waiting"), "the callback wait")

    refused(await api.callback(runtime, waiting.id, "v" + uuid.uuid4().hex, {}))
    refused(await api.callback(runtime, done.id, node["version"], {}), "sleep process")
    refused(await api.callback(runtime, "e" + uuid.uuid4().hex, node["version"], {}))
    # A value the codec cannot store is refused before anything is recorded.
    refused(await api.callback(runtime, waiting.id, node["version"], {"s": {1, 2}}))
    assert await state_of(runtime, root, waiting.id) == "RUNNING"

    ok(await api.callback(runtime, waiting.id, node["version"], {"n": 1}))
    await wait_outcome(runtime, root, "FINISHED")
    assert (await outputs(runtime, waiting.id))["callback_data"] == {"n": 1}
    refused(await api.callback(runtime, waiting.id, node["version"], {"n": 2}))
    assert (await outputs(runtime, waiting.id))["callback_data"] == {"n": 1}


async def test_callback_after_a_retry_needs_the_new_version(runtime: Any, placement: str) -> None:
    waiting = act("callback")
    placed = place(placement, steps(waiting))
    root = await start(runtime, placed.tree)
    old = await wait_state(runtime, root, waiting.id, "RUNNING")
    await wait_until(lambda: _has_output(runtime, waiting.id, "waiting"), "the callback wait")
    ok(await api.forced_fail_activity(runtime, waiting.id, "again"))
    ok(await api.retry_node(runtime, waiting.id))

    async def new_attempt() -> Any:
        found = await entry(runtime, root, waiting.id)
        if found is not None and found["state"] == "RUNNING" and found["retry"] == 1:
            return found
        return None

    new = await wait_until(new_attempt, "the retried attempt to run")
    assert new["version"] != old["version"]
    await wait_executions(waiting.id, 2)  # the new attempt's schedule exists from here on
    res = await api.callback(runtime, waiting.id, old["version"], {"stale": True})
    assert refused(res) == f"node version {old['version']} not exist"
    ok(await api.callback(runtime, waiting.id, new["version"], {"fresh": True}))
    await wait_outcome(runtime, root, "FINISHED")
    assert (await outputs(runtime, waiting.id))["callback_data"] == {"fresh": True}


# ======================================================================================
# histories
# ======================================================================================


async def test_histories_of_a_loop(runtime: Any) -> None:
    counter = act("counter")
    n_var = NodeOutput(source_act=counter.id, source_key="_loop")
    eg = ExclusiveGateway(conditions={0: "${n} < 3", 1: "${n} >= 3"})
    s, end = EmptyStartEvent(), EmptyEndEvent()
    s.extend(counter).extend(eg).connect(counter, end)
    tree = build_tree(s, data=Data(inputs={"${n}": n_var}))
    root = await start(runtime, tree, cycle_tolerate=True)
    await wait_outcome(runtime, root, "FINISHED")

    node = await entry(runtime, root, counter.id)
    assert node is not None
    assert node["loop"] == 3
    rows = await histories(runtime, counter.id)
    assert [r["loop"] for r in rows] == [1, 2]
    assert all(r["retry"] == 0 and r["skip"] is False for r in rows)
    assert [r["outputs"]["_loop"] for r in rows] == [1, 2]
    versions = [r["version"] for r in rows] + [node["version"]]
    assert len(set(versions)) == 3
    assert [r["loop"] for r in await histories(runtime, counter.id, loop=2)] == [2]
    assert await histories(runtime, counter.id, loop=3) == []
    short = ok(await api.get_node_short_histories(runtime, counter.id, 1))
    assert [r["loop"] for r in short] == [1]
    assert set(short[0]) == HISTORY_KEYS - {"inputs", "outputs"}
    # The gateway was re-entered as well.
    assert [r["loop"] for r in await histories(runtime, eg.id)] == [1, 2]


async def test_histories_after_retry_and_skip_in_a_loop(runtime: Any) -> None:
    flaky = act("ops_fail_once")
    n_var = NodeOutput(source_act=flaky.id, source_key="_loop")
    eg = ExclusiveGateway(conditions={0: "${n} < 2", 1: "${n} >= 2"})
    failing = act("fail")
    s, end = EmptyStartEvent(), EmptyEndEvent()
    s.extend(flaky).extend(failing).extend(eg).connect(flaky, end)
    tree = build_tree(s, data=Data(inputs={"${n}": n_var}))
    root = await start(runtime, tree, cycle_tolerate=True)

    await wait_state(runtime, root, flaky.id, "FAILED")
    ok(await api.retry_node(runtime, flaky.id))  # history: loop 1, retry 0
    first = await wait_state(runtime, root, failing.id, "FAILED")
    ok(await api.skip_node(runtime, failing.id))  # history: loop 1, skip False
    # Second pass: the loop re-enters both (history rows for loop 1 once more).
    second = await wait_until(
        lambda: _failed_in_loop(runtime, root, failing.id, 2), "the second pass to fail"
    )
    ok(await api.skip_node(runtime, failing.id))
    await wait_outcome(runtime, root, "FINISHED")

    flaky_rows = await histories(runtime, flaky.id)
    assert [(r["loop"], r["retry"]) for r in flaky_rows] == [(1, 0), (1, 1)]
    failing_rows = await histories(runtime, failing.id)
    assert [(r["loop"], r["skip"]) for r in failing_rows] == [(1, False), (1, True), (2, False)]
    assert failing_rows[0]["version"] == first["version"]
    assert failing_rows[2]["version"] == second["version"]
    node = await entry(runtime, root, failing.id)
    assert node is not None
    assert (node["loop"], node["skip"]) == (2, True)
    short = ok(await api.get_node_short_histories(runtime, failing.id))
    assert [(r["loop"], r["skip"]) for r in short] == [(1, False), (1, True), (2, False)]
    assert [r["id"] for r in short] == [r["id"] for r in failing_rows]


async def _failed_in_loop(runtime: Any, root: str, node_id: str, loop: int) -> Any:
    found = await entry(runtime, root, node_id)
    if found is not None and found["state"] == "FAILED" and found["loop"] == loop:
        return found
    return None


async def test_histories_of_unknown_and_untouched_nodes(runtime: Any) -> None:
    done = act("echo")
    root = await start(runtime, linear(done))
    await wait_outcome(runtime, root, "FINISHED")
    assert await histories(runtime, done.id) == []
    refused(await api.get_node_histories(runtime, "e" + uuid.uuid4().hex))
    assert ok(await api.get_node_short_histories(runtime, done.id)) == []
    refused(await api.get_node_histories(runtime, ""))
