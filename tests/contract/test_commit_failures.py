"""A failed commit costs one call and a reload, never the run: on the memory runtime's faults.

Each test makes one commit fail (or land and lose its answer) and checks that
the caller whose commit it was gets the storage error, that the run is
reloaded from its last commit and goes on, that the same call then works,
and that nothing acknowledged is lost.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from aiobamboo import api
from aiobamboo.api import EngineAPIResult
from aiobamboo.builder import (
    ConditionalParallelGateway,
    ConvergeGateway,
    Data,
    Element,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    Params,
    SubProcess,
    Var,
)
from aiobamboo.engine import Settings
from aiobamboo.exceptions import StorageError
from aiobamboo.testing import MemoryRuntime

from .components import EXECUTIONS
from .components_ops import LAZY_CALLS
from .helpers import waiting_version
from .ops_helpers import (
    act,
    chain,
    entry,
    flow_id,
    histories,
    linear,
    new_gate,
    ok,
    open_gate,
    place,
    start,
    wait_gate_entered,
    wait_outcome,
    wait_state,
    wait_until,
)

Call = Callable[[], Awaitable[EngineAPIResult[Any]]]


@pytest.fixture
async def rt() -> AsyncIterator[MemoryRuntime]:
    async with MemoryRuntime(settings=Settings(recovery_delay=0.01)) as runtime:
        yield runtime


def storage_failure(res: EngineAPIResult[Any]) -> None:
    assert not res.result, f"expected the storage error, got success (data={res.data!r})"
    assert isinstance(res.exc, StorageError), (res.message, res.exc)


async def fails_once_then_works(rt: MemoryRuntime, call: Call) -> None:
    """``call`` with its commit failing answers the storage error; called again, it works."""
    injected = rt.faults.injected
    rt.faults.fail_commits(1)
    storage_failure(await call())
    assert (rt.faults.pending, rt.faults.injected) == (0, injected + 1)
    ok(await call())


async def loses_its_answer(rt: MemoryRuntime, call: Call) -> None:
    """``call`` whose commit lands and loses its answer answers the storage error."""
    injected = rt.faults.injected
    rt.faults.lose_answers(1)
    storage_failure(await call())
    assert (rt.faults.pending, rt.faults.injected) == (0, injected + 1)


def failed_once(rt: MemoryRuntime) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return rt.faults.injected == 1

    return check


def _subprocess(*elems: Element, data: Data | None = None, params: Params | None = None) -> Any:
    sub_start = EmptyStartEvent()
    chain(sub_start, *elems).extend(EmptyEndEvent())
    return SubProcess(start=sub_start, data=data, params=params or Params({}))


# -- operator actions ------------------------------------------------------------------


async def test_pause_and_resume_pipeline(rt: MemoryRuntime) -> None:
    gate, after = act("gate"), act("echo", text="after")
    new_gate(gate.id)
    root = await start(rt, linear(gate, after))
    await wait_gate_entered(rt, root, gate.id)
    await fails_once_then_works(rt, lambda: api.pause_pipeline(rt, root))
    open_gate(gate.id)
    await wait_outcome(rt, root, "SUSPENDED")
    # A paused pipeline rests at once; its process stops after the gate a moment later.
    await wait_state(rt, root, gate.id, "FINISHED")
    assert await entry(rt, root, after.id) is None
    await fails_once_then_works(rt, lambda: api.resume_pipeline(rt, root))
    await wait_outcome(rt, root, "FINISHED")


async def test_pause_and_resume_node_appoint(rt: MemoryRuntime) -> None:
    gate, target = act("gate"), act("echo", text="target")
    new_gate(gate.id)
    root = await start(rt, linear(gate, target))
    await wait_gate_entered(rt, root, gate.id)
    await fails_once_then_works(rt, lambda: api.pause_node_appoint(rt, target.id))
    open_gate(gate.id)
    await wait_outcome(rt, root, "SUSPENDED")
    await fails_once_then_works(rt, lambda: api.resume_node_appoint(rt, target.id))
    await wait_outcome(rt, root, "FINISHED")
    assert EXECUTIONS[target.id] == 1


async def test_retry_node(rt: MemoryRuntime) -> None:
    failing = act("ops_fail_once")
    root = await start(rt, linear(failing))
    await wait_outcome(rt, root, "FAILED")
    await fails_once_then_works(rt, lambda: api.retry_node(rt, failing.id))
    await wait_outcome(rt, root, "FINISHED")
    node = await entry(rt, root, failing.id)
    assert node is not None
    assert (node["state"], node["retry"]) == ("FINISHED", 1)
    assert len(await histories(rt, failing.id)) == 1


async def test_retry_subprocess(rt: MemoryRuntime) -> None:
    value = "v" + uuid.uuid4().hex
    echo = act("echo", text=Var(Var.SPLICE, "${p}"))
    sub = _subprocess(
        echo,
        data=Data(inputs={"${p}": Var(Var.PLAIN, "default")}),
        params=Params({"${p}": Var(Var.SPLICE, "${src}")}),
    )
    # ${src} raises on its first evaluation, so the sub-process fails once.
    data = Data(inputs={"${src}": Var(Var.LAZY, value, custom_type="ops_flaky")})
    root = await start(rt, linear(sub, data=data))
    await wait_outcome(rt, root, "FAILED")
    await fails_once_then_works(rt, lambda: api.retry_subprocess(rt, sub.id))
    await wait_outcome(rt, root, "FINISHED")
    assert LAZY_CALLS[value] == 2
    assert len(await histories(rt, sub.id)) == 1


async def test_skip_node(rt: MemoryRuntime) -> None:
    failing, after = act("fail"), act("echo", text="after")
    root = await start(rt, linear(failing, after))
    await wait_outcome(rt, root, "FAILED")
    await fails_once_then_works(rt, lambda: api.skip_node(rt, failing.id))
    await wait_outcome(rt, root, "FINISHED")
    node = await entry(rt, root, failing.id)
    assert node is not None
    assert node["skip"] is True
    assert EXECUTIONS[after.id] == 1


async def test_skip_exclusive_gateway(rt: MemoryRuntime) -> None:
    eg = ExclusiveGateway(conditions={0: "${x} == 1", 1: "${x} == 2"})
    a, b, cg = act("echo", text="a"), act("echo", text="b"), ConvergeGateway()

    def build(prev: Element) -> Element:
        prev.extend(eg).connect(a, b).to(eg).converge(cg)
        return cg

    placed = place("top", build, variables={"${x}": Var(Var.PLAIN, 3)})
    root = await start(rt, placed.tree)
    await wait_outcome(rt, root, "FAILED")
    flow = flow_id(placed.tree, eg.id, b.id)
    await fails_once_then_works(rt, lambda: api.skip_exclusive_gateway(rt, eg.id, flow))
    await wait_outcome(rt, root, "FINISHED")
    assert (EXECUTIONS[a.id], EXECUTIONS[b.id]) == (0, 1)


async def test_skip_conditional_parallel_gateway(rt: MemoryRuntime) -> None:
    cpg = ConditionalParallelGateway(conditions={0: "${x} == 1", 1: "${x} == 2", 2: "${x} == 3"})
    a, b, c = (act("echo", text=str(i)) for i in range(3))
    cg = ConvergeGateway()

    def build(prev: Element) -> Element:
        prev.extend(cpg).connect(a, b, c).to(cpg).converge(cg)
        return cg

    placed = place("top", build, variables={"${x}": Var(Var.PLAIN, 0)})
    root = await start(rt, placed.tree)
    await wait_outcome(rt, root, "FAILED")
    flows = [flow_id(placed.tree, cpg.id, a.id), flow_id(placed.tree, cpg.id, c.id)]
    await fails_once_then_works(
        rt, lambda: api.skip_conditional_parallel_gateway(rt, cpg.id, flows, cg.id)
    )
    await wait_outcome(rt, root, "FINISHED")
    assert (EXECUTIONS[a.id], EXECUTIONS[b.id], EXECUTIONS[c.id]) == (1, 0, 1)
    converge = await entry(rt, root, cg.id)
    assert converge is not None
    assert converge["loop"] == 1


async def test_forced_fail_activity(rt: MemoryRuntime) -> None:
    gate, after = act("gate"), act("echo", text="after")
    new_gate(gate.id)
    root = await start(rt, linear(gate, after))
    await wait_gate_entered(rt, root, gate.id)
    await fails_once_then_works(rt, lambda: api.forced_fail_activity(rt, gate.id, "stop"))
    await wait_outcome(rt, root, "FAILED")
    ok(await api.skip_node(rt, gate.id))
    await wait_outcome(rt, root, "FINISHED")
    assert EXECUTIONS[after.id] == 1


async def test_revoke_pipeline(rt: MemoryRuntime) -> None:
    gate = act("gate")
    new_gate(gate.id)
    root = await start(rt, linear(gate))
    await wait_gate_entered(rt, root, gate.id)
    await fails_once_then_works(rt, lambda: api.revoke_pipeline(rt, root))
    await wait_outcome(rt, root, "REVOKED")


async def test_callback(rt: MemoryRuntime) -> None:
    waiting, after = act("callback"), act("echo", text="after")
    root = await start(rt, linear(waiting, after))
    version = await waiting_version(rt, waiting.id)
    await fails_once_then_works(rt, lambda: api.callback(rt, waiting.id, version, {"n": 1}))
    await wait_outcome(rt, root, "FINISHED")
    out = ok(await api.get_execution_data_outputs(rt, waiting.id))
    assert out["callback_data"] == {"n": 1}
    assert EXECUTIONS[waiting.id] == 1


async def test_run_pipeline(rt: MemoryRuntime) -> None:
    first = linear(act("echo", text="x"))
    rt.faults.fail_commits(1)
    storage_failure(await api.run_pipeline(rt, first))
    assert not (await api.get_pipeline_states(rt, first["id"])).data
    echo = act("echo", text="y")
    root = await start(rt, linear(echo))
    await wait_outcome(rt, root, "FINISHED")
    assert EXECUTIONS[echo.id] == 1


# -- steps -------------------------------------------------------------------------------


async def test_a_step_whose_commit_fails_is_redone_from_the_last_commit(rt: MemoryRuntime) -> None:
    gate, after = act("gate"), act("echo", text="after")
    new_gate(gate.id)
    root = await start(rt, linear(gate, after))
    await wait_gate_entered(rt, root, gate.id)
    # The gate finishes; the commit of that step (and of `after` starting) fails.
    rt.faults.fail_commits(1)
    open_gate(gate.id)
    await wait_until(failed_once(rt), "the step's commit to fail")
    # The run is reloaded, not orphaned: operations reach it, and it completes.
    ok(await api.pause_pipeline(rt, root))
    ok(await api.resume_pipeline(rt, root))
    await wait_outcome(rt, root, "FINISHED")
    # Redone from the last commit: the gate was RUNNING there, so it ran again.
    assert EXECUTIONS[gate.id] == 2
    assert EXECUTIONS[after.id] == 1
    node = await entry(rt, root, after.id)
    assert node is not None
    assert (node["state"], node["loop"]) == ("FINISHED", 1)


async def test_a_failed_commit_in_one_branch_keeps_the_other_branch(rt: MemoryRuntime) -> None:
    gate, failing = act("gate"), act("ops_fail_once")
    new_gate(gate.id)
    placed = place("parallel", lambda prev: chain(prev, gate, failing))
    root = await start(rt, placed.tree)
    await wait_gate_entered(rt, root, gate.id)
    assert placed.sibling_id is not None
    await wait_state(rt, root, placed.sibling_id, "FINISHED")
    rt.faults.fail_commits(1)
    open_gate(gate.id)
    await wait_outcome(rt, root, "FAILED")
    ok(await api.retry_node(rt, failing.id))
    await wait_outcome(rt, root, "FINISHED")
    assert EXECUTIONS[placed.sibling_id] == 1


# -- lost answers -----------------------------------------------------------------------


async def test_a_step_whose_answer_is_lost_is_not_stored_twice(rt: MemoryRuntime) -> None:
    gate, after = act("gate"), act("echo", text="after")
    new_gate(gate.id)
    root = await start(rt, linear(gate, after))
    await wait_gate_entered(rt, root, gate.id)
    rt.faults.lose_answers(1)
    open_gate(gate.id)
    await wait_outcome(rt, root, "FINISHED")
    assert rt.faults.injected == 1
    # The gate's end was stored: reloaded, the run goes on from there, not from the gate.
    assert EXECUTIONS[gate.id] == 1
    for node_id in (gate.id, after.id):
        node = await entry(rt, root, node_id)
        assert node is not None
        assert (node["state"], node["loop"]) == ("FINISHED", 1)
        assert await histories(rt, node_id) == []


async def test_an_operation_whose_answer_is_lost_took_effect_once(rt: MemoryRuntime) -> None:
    failing = act("ops_fail_once")
    root = await start(rt, linear(failing))
    await wait_outcome(rt, root, "FAILED")
    await loses_its_answer(rt, lambda: api.retry_node(rt, failing.id))
    await wait_outcome(rt, root, "FINISHED")
    node = await entry(rt, root, failing.id)
    assert node is not None
    assert (node["state"], node["retry"]) == ("FINISHED", 1)
    assert len(await histories(rt, failing.id)) == 1


async def test_a_new_run_whose_answer_is_lost_still_runs(rt: MemoryRuntime) -> None:
    echo = act("echo", text="x")
    tree = linear(echo)
    await loses_its_answer(rt, lambda: api.run_pipeline(rt, tree))
    await wait_outcome(rt, tree["id"], "FINISHED")
    assert EXECUTIONS[echo.id] == 1


async def test_a_callback_whose_answer_is_lost_is_delivered_once(rt: MemoryRuntime) -> None:
    waiting = act("callback")
    root = await start(rt, linear(waiting))
    version = await waiting_version(rt, waiting.id)
    await loses_its_answer(rt, lambda: api.callback(rt, waiting.id, version, {"n": 2}))
    await wait_outcome(rt, root, "FINISHED")
    out = ok(await api.get_execution_data_outputs(rt, waiting.id))
    assert out["callback_data"] == {"n": 2}
    assert await histories(rt, waiting.id) == []


async def test_a_run_whose_commits_keep_failing_backs_off_and_completes(rt: MemoryRuntime) -> None:
    gate, after = act("gate"), act("echo", text="after")
    new_gate(gate.id)
    root = await start(rt, linear(gate, after))
    await wait_gate_entered(rt, root, gate.id)
    rt.faults.fail_commits(3)
    open_gate(gate.id)
    # Reloaded after 0.01, 0.02 and 0.04 s: each reload runs the gate again.
    await wait_outcome(rt, root, "FINISHED")
    assert rt.faults.injected == 3
    assert EXECUTIONS[gate.id] == 4
    assert EXECUTIONS[after.id] == 1
