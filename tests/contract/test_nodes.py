"""Every node kind end to end, through ``aiobamboo.api`` only."""

from __future__ import annotations

import threading
from typing import Any

from aiobamboo import api, states
from aiobamboo.builder import (
    ConditionalParallelGateway,
    ConvergeGateway,
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    ExecutableEndEvent,
    ParallelGateway,
    SubProcess,
    Var,
    build_tree,
)

from . import components
from .helpers import (
    activity,
    deliver,
    finish,
    flat_states,
    outputs,
    run,
    splice,
    start,
    state_of,
    uid,
    wait_state,
    waiting_version,
)

# -- events and activities ---------------------------------------------------------------


async def test_start_activity_end_all_finish(runtime: Any) -> None:
    s, end = EmptyStartEvent(id=uid("s")), EmptyEndEvent(id=uid("e"))
    a = activity("echo", None, text="hello")
    s.extend(a).extend(end)
    tree = build_tree(s)
    root_id = await run(runtime, tree)

    found = await flat_states(runtime, root_id)
    assert set(found) == {root_id, s.id, a.id, end.id}
    assert {entry["state"] for entry in found.values()} == {states.FINISHED}
    out = await outputs(runtime, a.id)
    assert out["echo"] == "hello"
    assert out["_result"] is True
    assert (out["_loop"], out["_inner_loop"]) == (1, 1)


async def test_a_tree_with_none_for_no_flows_runs(runtime: Any) -> None:
    # bk-sops and its relatives export None for a start event's incoming and an
    # end event's outgoing; the original reads it as no flows.
    s, end = EmptyStartEvent(id=uid("s")), EmptyEndEvent(id=uid("e"))
    a = activity("echo", None, text="hello")
    s.extend(a).extend(end)
    tree = build_tree(s)
    tree["start_event"]["incoming"] = None
    tree["end_event"]["outgoing"] = None
    root_id = await run(runtime, tree)
    found = await flat_states(runtime, root_id)
    assert {entry["state"] for entry in found.values()} == {states.FINISHED}


async def test_async_component_runs_on_the_loop_and_plain_def_on_a_worker_thread(
    runtime: Any,
) -> None:
    s = EmptyStartEvent()
    plain_def = activity("sync_echo", None, text="from a thread")
    s.extend(activity("echo", None, text="x")).extend(plain_def).extend(EmptyEndEvent())
    tree = build_tree(s)
    await run(runtime, tree, root_pipeline_data={"who": "root"})

    out = await outputs(runtime, plain_def.id)
    assert out["echo"] == "from a thread"
    assert out["thread"] != threading.current_thread().name
    assert out["parent_inputs"] == {"who": "root"}
    assert out["_result"] is True


async def test_a_component_may_await_inside_cancel_scopes_of_its_own(runtime: Any) -> None:
    # The engine's own scope around a component call (for abandoning it) must
    # be entered before the component enters its scopes, or leaving them fails.
    s = EmptyStartEvent()
    a = activity("scoped", None)
    s.extend(a).extend(EmptyEndEvent())
    await run(runtime, build_tree(s))
    out = await outputs(runtime, a.id)
    assert out["_result"] is True
    assert out["timed_out"] is True


async def test_executable_end_event_calls_its_handler_with_pipeline_ids(runtime: Any) -> None:
    sub_id = uid("sub")
    sub_start = EmptyStartEvent()
    sub_end = ExecutableEndEvent(type="RecordEnd", id=uid("subend"))
    sub_start.extend(activity("echo")).extend(sub_end)
    s, end = EmptyStartEvent(), ExecutableEndEvent(type="RecordEnd", id=uid("end"))
    s.extend(SubProcess(id=sub_id, start=sub_start)).extend(end)
    tree = build_tree(s)
    root_id = await run(runtime, tree)

    calls = [c for c in components.END_CALLS if c[1] == root_id]
    assert calls == [(True, root_id, sub_id), (False, root_id, root_id)]
    assert await state_of(runtime, sub_end.id) == states.FINISHED
    assert await state_of(runtime, end.id) == states.FINISHED


async def test_unknown_end_event_type_fails_the_end_node(runtime: Any) -> None:
    s, end = EmptyStartEvent(), ExecutableEndEvent(type="flow_NoSuchEnd", id=uid("end"))
    a = activity("echo")
    s.extend(a).extend(end)
    tree = build_tree(s)
    root_id = await start(runtime, tree)
    message = await finish(runtime, root_id, states.FAILED)

    assert end.id in message
    assert await state_of(runtime, a.id) == states.FINISHED
    assert await state_of(runtime, end.id) == states.FAILED
    assert await state_of(runtime, root_id) == states.RUNNING
    assert "flow_NoSuchEnd" in (await outputs(runtime, end.id))["ex_data"]


async def test_unknown_component_code_fails_the_node_not_the_run(runtime: Any) -> None:
    s = EmptyStartEvent()
    missing = activity("flow_no_such_component", None, text="x")
    s.extend(activity("echo")).extend(missing).extend(EmptyEndEvent())
    tree = build_tree(s)
    root_id = await start(runtime, tree)
    await finish(runtime, root_id, states.FAILED)

    assert await state_of(runtime, missing.id) == states.FAILED
    out = await outputs(runtime, missing.id)
    assert "flow_no_such_component" in out["ex_data"]
    assert out["_result"] is False


async def test_subprocesses_nest_three_deep(runtime: Any) -> None:
    inner = EmptyStartEvent()
    leaf = activity("echo", None, text="deep")
    inner.extend(leaf).extend(EmptyEndEvent())
    sub3 = SubProcess(id=uid("sub3"), start=inner)
    mid = EmptyStartEvent()
    mid.extend(sub3).extend(EmptyEndEvent())
    sub2 = SubProcess(id=uid("sub2"), start=mid)
    outer = EmptyStartEvent()
    outer.extend(sub2).extend(EmptyEndEvent())
    sub1 = SubProcess(id=uid("sub1"), start=outer)
    s = EmptyStartEvent()
    after = activity("echo")
    s.extend(sub1).extend(after).extend(EmptyEndEvent())
    tree = build_tree(s)
    root_id = await run(runtime, tree)

    found = await flat_states(runtime, root_id)
    for node_id in (sub1.id, sub2.id, sub3.id, leaf.id, after.id):
        assert found[node_id]["state"] == states.FINISHED
    assert found[sub2.id]["parent_id"] == sub1.id
    assert found[sub3.id]["parent_id"] == sub2.id
    assert found[leaf.id]["parent_id"] == sub3.id
    assert found[after.id]["parent_id"] == root_id
    assert (await outputs(runtime, leaf.id))["echo"] == "deep"
    # 3 nested pipelines: start, activity/sub, end each, plus the root's own 4.
    assert len(found) == 1 + 4 + 3 * 3


# -- exclusive gateway -----------------------------------------------------------------


def _exclusive(conditions: dict[int, str], default: int | None = None) -> tuple[Any, ...]:
    """``s -> eg -> [a0, a1] -> cg -> end`` with ``${x}`` in the context."""
    s, eg, cg = EmptyStartEvent(), ExclusiveGateway(id=uid("eg")), ConvergeGateway(id=uid("cg"))
    eg.conditions = dict(conditions)
    eg.default_condition_outgoing = default
    a0, a1 = activity("echo", uid("a0")), activity("echo", uid("a1"))
    s.extend(eg).connect(a0, a1).to(eg).converge(cg).extend(EmptyEndEvent())
    return s, eg, a0, a1, cg


async def test_exclusive_gateway_takes_the_true_condition(runtime: Any) -> None:
    s, eg, a0, a1, cg = _exclusive({0: "${x} == 1", 1: "${x} == 2"})
    tree = build_tree(s, data=Data(inputs={"${x}": Var(Var.PLAIN, 2)}))
    root_id = await run(runtime, tree)

    found = await flat_states(runtime, root_id)
    assert a0.id not in found
    assert found[a1.id]["state"] == states.FINISHED
    assert found[eg.id]["state"] == states.FINISHED
    assert found[cg.id]["state"] == states.FINISHED


async def test_exclusive_gateway_takes_the_default_flow_when_nothing_matches(
    runtime: Any,
) -> None:
    s, _eg, a0, a1, _cg = _exclusive({0: "${x} == 1", 1: "${x} == 2"}, default=0)
    tree = build_tree(s, data=Data(inputs={"${x}": Var(Var.PLAIN, 7)}))
    root_id = await run(runtime, tree)

    found = await flat_states(runtime, root_id)
    assert found[a0.id]["state"] == states.FINISHED
    assert a1.id not in found


async def test_exclusive_gateway_without_match_or_default_fails(runtime: Any) -> None:
    s, eg, a0, a1, _cg = _exclusive({0: "1 == 2", 1: "2 == 3"})
    tree = build_tree(s)
    root_id = await start(runtime, tree)
    message = await finish(runtime, root_id, states.FAILED)

    assert eg.id in message
    found = await flat_states(runtime, root_id)
    assert found[eg.id]["state"] == states.FAILED
    assert a0.id not in found
    assert a1.id not in found
    assert found[root_id]["state"] == states.RUNNING
    out = await outputs(runtime, eg.id)
    assert "all conditions of branches are not meet" in out["ex_data"]


async def test_exclusive_gateway_with_several_matches_fails(runtime: Any) -> None:
    s, eg, a0, a1, _cg = _exclusive({0: "1 == 1", 1: "2 == 2"})
    tree = build_tree(s)
    root_id = await start(runtime, tree)
    await finish(runtime, root_id, states.FAILED)

    found = await flat_states(runtime, root_id)
    assert found[eg.id]["state"] == states.FAILED
    assert a0.id not in found
    assert a1.id not in found
    assert "multiple conditions meet" in (await outputs(runtime, eg.id))["ex_data"]


# -- parallel gateways -------------------------------------------------------------------


async def test_parallel_gateway_runs_every_branch_and_converges_once(runtime: Any) -> None:
    s, pg, cg = EmptyStartEvent(), ParallelGateway(id=uid("pg")), ConvergeGateway(id=uid("cg"))
    branches = [activity("echo", uid(f"b{i}"), text=str(i)) for i in range(3)]
    after = activity("echo", uid("after"))
    s.extend(pg).connect(*branches).to(pg).converge(cg).extend(after).extend(EmptyEndEvent())
    tree = build_tree(s)
    root_id = await run(runtime, tree)

    found = await flat_states(runtime, root_id)
    for branch in branches:
        assert found[branch.id]["state"] == states.FINISHED
        assert components.EXECUTIONS[branch.id] == 1
    assert found[pg.id]["state"] == states.FINISHED
    assert found[cg.id]["state"] == states.FINISHED
    assert found[cg.id]["loop"] == 1
    assert found[after.id]["loop"] == 1
    assert components.EXECUTIONS[after.id] == 1
    assert [(await outputs(runtime, b.id))["echo"] for b in branches] == ["0", "1", "2"]


async def test_conditional_parallel_gateway_runs_only_true_branches(runtime: Any) -> None:
    s = EmptyStartEvent()
    cpg = ConditionalParallelGateway(
        id=uid("cpg"), conditions={0: "${x} > 0", 1: "${x} > 5", 2: "${x} >= 1"}
    )
    cg = ConvergeGateway(id=uid("cg"))
    branches = [activity("echo", uid(f"b{i}")) for i in range(3)]
    s.extend(cpg).connect(*branches).to(cpg).converge(cg).extend(EmptyEndEvent())
    tree = build_tree(s, data=Data(inputs={"${x}": Var(Var.PLAIN, 1)}))
    root_id = await run(runtime, tree)

    found = await flat_states(runtime, root_id)
    assert found[branches[0].id]["state"] == states.FINISHED
    assert branches[1].id not in found
    assert found[branches[2].id]["state"] == states.FINISHED
    assert found[cg.id]["state"] == states.FINISHED
    assert found[cpg.id]["state"] == states.FINISHED


async def test_conditional_parallel_gateway_takes_default_when_nothing_is_true(
    runtime: Any,
) -> None:
    s = EmptyStartEvent()
    cpg = ConditionalParallelGateway(
        id=uid("cpg"), conditions={0: "1 == 2", 1: "1 == 3"}, default_condition_outgoing=1
    )
    cg = ConvergeGateway()
    b0, b1 = activity("echo", uid("b0")), activity("echo", uid("b1"))
    s.extend(cpg).connect(b0, b1).to(cpg).converge(cg).extend(EmptyEndEvent())
    root_id = await run(runtime, build_tree(s))

    found = await flat_states(runtime, root_id)
    assert b0.id not in found
    assert found[b1.id]["state"] == states.FINISHED


async def test_conditional_parallel_gateway_without_match_or_default_fails(
    runtime: Any,
) -> None:
    s = EmptyStartEvent()
    cpg = ConditionalParallelGateway(id=uid("cpg"), conditions={0: "1 == 2", 1: "1 == 3"})
    s.extend(cpg).connect(activity("echo"), activity("echo")).to(cpg).converge(
        ConvergeGateway()
    ).extend(EmptyEndEvent())
    root_id = await start(runtime, build_tree(s))
    await finish(runtime, root_id, states.FAILED)

    assert await state_of(runtime, cpg.id) == states.FAILED
    assert "all conditions of branches are not meet" in (await outputs(runtime, cpg.id))["ex_data"]


# -- failures ----------------------------------------------------------------------------


async def test_failure_stays_local_and_siblings_finish(runtime: Any) -> None:
    s, pg, cg = EmptyStartEvent(), ParallelGateway(), ConvergeGateway(id=uid("cg"))
    bad = activity("fail", uid("bad"))
    good1, good2 = activity("echo", uid("good")), activity("echo", uid("good"))
    after = activity("echo", uid("after"))
    good1.extend(good2)  # a longer sibling branch
    s.extend(pg).connect(bad, good1).to(pg).converge(cg).extend(after).extend(EmptyEndEvent())
    tree = build_tree(s)
    root_id = await start(runtime, tree)
    message = await finish(runtime, root_id, states.FAILED)

    assert bad.id in message
    found = await flat_states(runtime, root_id)
    assert found[root_id]["state"] == states.RUNNING
    assert found[bad.id]["state"] == states.FAILED
    assert found[good1.id]["state"] == states.FINISHED
    assert found[good2.id]["state"] == states.FINISHED
    assert cg.id not in found
    assert after.id not in found
    out = await outputs(runtime, bad.id)
    assert out["ex_data"] == "refused by component"
    assert out["_result"] is False
    assert out["attempted"] is True


async def test_failure_inside_a_subprocess_leaves_it_running(runtime: Any) -> None:
    inner = EmptyStartEvent()
    bad = activity("fail", uid("bad"))
    inner.extend(bad).extend(EmptyEndEvent())
    sub = SubProcess(id=uid("sub"), start=inner)
    s = EmptyStartEvent()
    s.extend(sub).extend(EmptyEndEvent())
    root_id = await start(runtime, build_tree(s))
    await finish(runtime, root_id, states.FAILED)

    found = await flat_states(runtime, root_id)
    assert found[bad.id]["state"] == states.FAILED
    assert found[sub.id]["state"] == states.RUNNING
    assert found[root_id]["state"] == states.RUNNING


async def test_error_ignorable_activity_finishes_with_error_ignored(runtime: Any) -> None:
    s = EmptyStartEvent()
    bad = activity("fail", uid("bad"), **{"raise": True})
    bad.error_ignorable = True
    after = activity("echo", uid("after"))
    s.extend(bad).extend(after).extend(EmptyEndEvent())
    root_id = await run(runtime, build_tree(s))

    found = await flat_states(runtime, root_id)
    assert found[bad.id]["state"] == states.FINISHED
    assert found[bad.id]["error_ignored"] is True
    assert found[after.id]["state"] == states.FINISHED
    assert found[after.id]["error_ignored"] is False
    out = await outputs(runtime, bad.id)
    assert out["_result"] is False
    assert "boom from component" in out["ex_data"]


async def test_wait_pipeline_reports_the_failed_state_without_failing_the_root(
    runtime: Any,
) -> None:
    s = EmptyStartEvent()
    bad = activity("fail", uid("bad"))
    s.extend(bad).extend(EmptyEndEvent())
    root_id = await start(runtime, build_tree(s))
    await wait_state(runtime, bad.id, states.FAILED)
    res = await api.wait_pipeline(runtime, root_id, timeout=5)
    assert res.result
    assert res.data == states.FAILED
    assert bad.id in res.message
    assert await state_of(runtime, root_id) == states.RUNNING


async def test_wait_pipeline_on_unknown_id_and_timeout(runtime: Any) -> None:
    res = await api.wait_pipeline(runtime, uid("nope"), timeout=1)
    assert res.result is False
    assert res.message

    s = EmptyStartEvent()
    waiting = activity("callback", uid("cb"))
    s.extend(waiting).extend(EmptyEndEvent())
    root_id = await start(runtime, build_tree(s))
    await wait_state(runtime, waiting.id, states.RUNNING)
    res = await api.wait_pipeline(runtime, root_id, timeout=0.2)
    assert res.result is False
    assert "timed out" in res.message


async def test_splice_condition_reads_a_node_output(runtime: Any) -> None:
    """A gateway condition sees a value an earlier node produced (NodeOutput)."""
    from aiobamboo.builder import NodeOutput

    s, eg, a0, a1, _cg = _exclusive({0: "${word} == 'yes'", 1: "${word} != 'yes'"})
    first = activity("echo", uid("first"), text=splice("${seed}"))
    s.outgoing = [first]
    first.extend(eg)
    tree = build_tree(
        s,
        data=Data(
            inputs={
                "${seed}": Var(Var.PLAIN, "yes"),
                "${word}": NodeOutput(source_act=first.id, source_key="echo"),
            }
        ),
    )
    root_id = await run(runtime, tree)
    found = await flat_states(runtime, root_id)
    assert found[a0.id]["state"] == states.FINISHED
    assert a1.id not in found


# -- more shapes ---------------------------------------------------------------------------


async def test_nested_parallel_gateways_converge_in_order(runtime: Any) -> None:
    s = EmptyStartEvent()
    outer, inner = ParallelGateway(id=uid("pg1")), ParallelGateway(id=uid("pg2"))
    outer_cg, inner_cg = ConvergeGateway(id=uid("cg1")), ConvergeGateway(id=uid("cg2"))
    a, b, c = (activity("echo", uid(n)) for n in "abc")
    after = activity("echo", uid("after"))
    inner.connect(a, b).to(inner).converge(inner_cg)
    inner_cg.extend(outer_cg)
    c.extend(outer_cg)
    s.extend(outer).connect(inner, c)
    outer_cg.extend(after).extend(EmptyEndEvent())
    root_id = await run(runtime, build_tree(s))

    found = await flat_states(runtime, root_id)
    for node in (outer, inner, outer_cg, inner_cg, a, b, c, after):
        assert found[node.id]["state"] == states.FINISHED
        assert found[node.id]["loop"] == 1
    assert components.EXECUTIONS[after.id] == 1


async def test_wide_parallel_gateway(runtime: Any) -> None:
    s, pg, cg = EmptyStartEvent(), ParallelGateway(), ConvergeGateway(id=uid("cg"))
    branches = [activity("sync_echo" if i % 2 else "echo", uid("w"), text=i) for i in range(24)]
    s.extend(pg).connect(*branches).to(pg).converge(cg).extend(EmptyEndEvent())
    root_id = await run(runtime, build_tree(s))
    found = await flat_states(runtime, root_id)
    assert all(found[b.id]["state"] == states.FINISHED for b in branches)
    assert found[cg.id]["loop"] == 1
    assert [(await outputs(runtime, b.id))["echo"] for b in branches] == list(range(24))


async def test_subprocesses_in_parallel_branches_wait_for_their_own_callbacks(
    runtime: Any,
) -> None:
    waiters = [activity("callback", uid(f"cb{i}")) for i in range(3)]
    subs = []
    for waiter in waiters:
        inner = EmptyStartEvent()
        inner.extend(waiter).extend(EmptyEndEvent())
        subs.append(SubProcess(id=uid("sub"), start=inner))
    s, pg, cg = EmptyStartEvent(), ParallelGateway(), ConvergeGateway(id=uid("cg"))
    s.extend(pg).connect(*subs).to(pg).converge(cg).extend(EmptyEndEvent())
    root_id = await start(runtime, build_tree(s))

    for i, waiter in reversed(list(enumerate(waiters))):
        version = await waiting_version(runtime, waiter.id)
        res = await deliver(runtime, waiter.id, version, {"i": i})
        assert res.result, res.message
    await finish(runtime, root_id)
    for i, (waiter, sub) in enumerate(zip(waiters, subs, strict=True)):
        assert (await outputs(runtime, waiter.id))["callback_data"] == {"i": i}
        assert await state_of(runtime, sub.id) == states.FINISHED


async def test_exclusive_gateway_first_strategy_takes_the_first_true_condition(
    runtime: Any,
) -> None:
    s, eg, a0, a1, _cg = _exclusive({0: "1 == 1", 1: "2 == 2"})
    eg.extra_info = {"strategy": "FIRST"}
    root_id = await run(runtime, build_tree(s))
    found = await flat_states(runtime, root_id)
    assert found[a0.id]["state"] == states.FINISHED
    assert a1.id not in found


async def test_exclusive_gateway_with_an_unparsable_condition_fails(runtime: Any) -> None:
    s, eg, _a0, _a1, _cg = _exclusive({0: "${x} = 1", 1: "${x} == 2"})
    root_id = await start(runtime, build_tree(s, data=Data(inputs={"${x}": Var(Var.PLAIN, 1)})))
    await finish(runtime, root_id, states.FAILED)
    assert await state_of(runtime, eg.id) == states.FAILED
    assert "evaluate[${x} = 1]" in (await outputs(runtime, eg.id))["ex_data"]


async def test_exclusive_gateway_whose_context_cannot_hydrate_fails(runtime: Any) -> None:
    s, eg, _a0, _a1, _cg = _exclusive({0: "${bad} == 1", 1: "1 == 2"})
    data = Data(inputs={"${bad}": Var(Var.LAZY, "x", custom_type="broken")})
    root_id = await start(runtime, build_tree(s, data=data))
    await finish(runtime, root_id, states.FAILED)
    ex_data = (await outputs(runtime, eg.id))["ex_data"]
    assert "evaluation context hydrate failed" in ex_data
    assert "lazy variable exploded" in ex_data


async def test_subprocess_whose_params_cannot_hydrate_fails_itself(runtime: Any) -> None:
    from aiobamboo.builder import Params

    inner = EmptyStartEvent()
    never = activity("echo", uid("never"))
    inner.extend(never).extend(EmptyEndEvent())
    sub = SubProcess(id=uid("sub"), start=inner, params=Params({"${p}": splice("${bad}")}))
    s = EmptyStartEvent()
    s.extend(sub).extend(EmptyEndEvent())
    data = Data(inputs={"${bad}": Var(Var.LAZY, "x", custom_type="broken")})
    root_id = await start(runtime, build_tree(s, data=data))
    message = await finish(runtime, root_id, states.FAILED)
    assert sub.id in message
    found = await flat_states(runtime, root_id)
    assert found[sub.id]["state"] == states.FAILED
    assert never.id not in found
    assert found[root_id]["state"] == states.RUNNING
    assert "context hydrate failed" in (await outputs(runtime, sub.id))["ex_data"]


async def test_end_event_handler_that_raises_fails_the_end_and_can_be_retried(
    runtime: Any,
) -> None:
    s, end = EmptyStartEvent(), ExecutableEndEvent(type="flow_RaiseOnce", id=uid("end"))
    s.extend(activity("echo")).extend(end)
    root_id = await start(runtime, build_tree(s))
    await finish(runtime, root_id, states.FAILED)
    assert await state_of(runtime, end.id) == states.FAILED
    assert "RuntimeError: end handler exploded" in (await outputs(runtime, end.id))["ex_data"]

    res = await api.retry_node(runtime, end.id)
    assert res.result, res.message
    await finish(runtime, root_id)
    entry = (await api.get_children_states(runtime, end.id)).data[end.id]
    assert entry["state"] == states.FINISHED
    assert entry["retry"] == 1
