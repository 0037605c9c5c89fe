"""The original's API beyond the seed: loop retry and skip, previews, context fixes,
debug views and execution times, on every runtime and from a client through a worker."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import Any

import pytest

from aiobamboo import api, states
from aiobamboo.builder import (
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    Params,
    ServiceActivity,
    SubProcess,
    Var,
    build_tree,
)
from aiobamboo.component import Component, Service
from aiobamboo.exceptions import InvalidOperationError, NotFoundError

from .helpers import (
    activity,
    flat_states,
    inputs,
    outputs,
    plain,
    run,
    splice,
    start,
    uid,
    wait_state,
)
from .parking_helpers import needs_shared_storage, opened

#: node id -> the inner loops its executions ran, in order.
CALLS: dict[str, list[int]] = defaultdict(list)
#: node id -> inner loops at which it fails (each once, unless ``always``).
FAIL_AT: dict[str, set[int]] = {}
ALWAYS_FAIL: set[str] = set()


class LoopStepService(Service):
    """One iteration of a loop: records it, packs ``outputs``, fails where told."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        inner = int(self.inner_loop)
        CALLS[self.id].append(inner)
        data.outputs.outputs = {"i": inner}
        failing = FAIL_AT.get(self.id, set())
        if inner in failing:
            if self.id not in ALWAYS_FAIL:
                failing.discard(inner)
            data.outputs.ex_data = f"iteration {inner} failed"
            return False
        return True


class LoopStepComponent(Component):
    code = "extras_loop_step"
    name = "Loop step"
    bound_service = LoopStepService


def _loop_tree(
    *, retryable: bool = True, skippable: bool = True, fail_at: int = 2, always: bool = False
) -> tuple[dict[str, Any], str, str]:
    looping = ServiceActivity(
        component_code=LoopStepComponent.code,
        id=uid("loop"),
        loop_config={
            "enable": True,
            "loop_times": 3,
            "retryable": retryable,
            "skippable": skippable,
            "outputs_key": "${collected}",
        },
    )
    FAIL_AT[looping.id] = {fail_at}
    if always:
        ALWAYS_FAIL.add(looping.id)
    reader = activity("flow_inspect", uid("reader"), got=splice("${collected}"))
    s = EmptyStartEvent()
    s.extend(looping).extend(reader).extend(EmptyEndEvent())
    return build_tree(s), looping.id, reader.id


def _iterations(collected: list[dict[str, Any]]) -> list[tuple[int, bool]]:
    return [(entry["i"], entry["result"]) for entry in collected]


# -- retry_node(loop_retry=...) and skip_node(loop_skip=...) -------------------------


async def test_loop_retry_runs_the_failed_iteration_again(runtime: Any) -> None:
    tree, loop_id, reader_id = _loop_tree()
    root = await start(runtime, tree)
    await wait_state(runtime, loop_id, states.FAILED)
    res = await api.retry_node(runtime, loop_id, loop_retry=True)
    assert res.result, res.message
    await wait_state(runtime, root, states.FINISHED)
    # Iteration 2 again, then 3: the counters went on where the loop failed.
    assert CALLS[loop_id] == [1, 2, 2, 3]
    entry = (await flat_states(runtime, root))[loop_id]
    assert (entry["loop"], entry["retry"]) == (3, 0)
    # The failed iteration's entry was dropped: one entry per iteration, all succeeded.
    got = (await outputs(runtime, reader_id))["got"]
    assert _iterations(got) == [(1, True), (2, True), (3, True)]


async def test_plain_retry_of_a_loop_node_starts_the_loop_again(runtime: Any) -> None:
    tree, loop_id, reader_id = _loop_tree()
    root = await start(runtime, tree)
    await wait_state(runtime, loop_id, states.FAILED)
    res = await api.retry_node(runtime, loop_id)
    assert res.result, res.message
    await wait_state(runtime, root, states.FINISHED)
    assert CALLS[loop_id] == [1, 2, 1, 2, 3]
    entry = (await flat_states(runtime, root))[loop_id]
    assert (entry["loop"], entry["retry"]) == (3, 1)
    got = (await outputs(runtime, reader_id))["got"]
    assert _iterations(got) == [(1, True), (2, True), (3, True)]


async def test_loop_skip_goes_on_with_the_next_iteration(runtime: Any) -> None:
    tree, loop_id, reader_id = _loop_tree(always=True)
    root = await start(runtime, tree)
    await wait_state(runtime, loop_id, states.FAILED)
    res = await api.skip_node(runtime, loop_id, loop_skip=True)
    assert res.result, res.message
    await wait_state(runtime, root, states.FINISHED)
    assert CALLS[loop_id] == [1, 2, 3]
    got = (await outputs(runtime, reader_id))["got"]
    assert _iterations(got) == [(1, True), (2, False), (3, True)]
    short = await api.get_node_short_histories(runtime, loop_id)
    # Iteration 1, the failed attempt of 2, then 2 as skipped (re-entered for 3).
    assert [h["skip"] for h in short.data or []] == [False, False, True]


async def test_plain_skip_of_a_loop_node_leaves_the_loop(runtime: Any) -> None:
    tree, loop_id, reader_id = _loop_tree(always=True)
    root = await start(runtime, tree)
    await wait_state(runtime, loop_id, states.FAILED)
    assert (await api.skip_node(runtime, loop_id)).result
    await wait_state(runtime, root, states.FINISHED)
    assert CALLS[loop_id] == [1, 2]
    got = (await outputs(runtime, reader_id))["got"]
    assert _iterations(got) == [(1, True), (2, False)]


async def test_loop_skip_on_the_last_iteration_leaves_the_loop(runtime: Any) -> None:
    tree, loop_id, _reader_id = _loop_tree(fail_at=3, always=True)
    root = await start(runtime, tree)
    await wait_state(runtime, loop_id, states.FAILED)
    assert (await api.skip_node(runtime, loop_id, loop_skip=True)).result
    await wait_state(runtime, root, states.FINISHED)
    assert CALLS[loop_id] == [1, 2, 3]


async def test_loop_operations_need_the_loop_flags(runtime: Any) -> None:
    tree, loop_id, _ = _loop_tree(retryable=False, skippable=False, always=True)
    await start(runtime, tree)
    await wait_state(runtime, loop_id, states.FAILED)
    refused = await api.retry_node(runtime, loop_id, loop_retry=True)
    assert not refused.result
    assert refused.message == f"node({loop_id}) is not loop retryable"
    refused = await api.skip_node(runtime, loop_id, loop_skip=True)
    assert not refused.result
    assert refused.message == f"node({loop_id}) can not loop skip"
    # A node without a loop is neither.
    plain_node = activity("fail", uid("plain"))
    s = EmptyStartEvent()
    s.extend(plain_node).extend(EmptyEndEvent())
    await start(runtime, build_tree(s))
    await wait_state(runtime, plain_node.id, states.FAILED)
    assert not (await api.retry_node(runtime, plain_node.id, loop_retry=True)).result
    assert not (await api.skip_node(runtime, plain_node.id, loop_skip=True)).result
    for bad in (
        await api.retry_node(runtime, loop_id, loop_retry=1),  # type: ignore[arg-type]
        await api.skip_node(runtime, loop_id, loop_skip="yes"),  # type: ignore[arg-type]
    ):
        assert not bad.result
        assert "must be True or False" in bad.message


# -- update_context_values ---------------------------------------------------------------


def _flag_tree() -> tuple[dict[str, Any], str]:
    node = activity("fail", uid("flag"), ok=splice("${flag}"))
    s = EmptyStartEvent()
    s.extend(node).extend(EmptyEndEvent())
    tree = build_tree(s, data=Data(inputs={"${flag}": Var(type=Var.PLAIN, value=False)}))
    return tree, node.id


async def test_update_context_values_then_retry_uses_them(runtime: Any) -> None:
    tree, node_id = _flag_tree()
    root = await start(runtime, tree)
    await wait_state(runtime, node_id, states.FAILED)
    res = await api.update_context_values(
        runtime, root, [api.ContextValue("${flag}", api.ContextValueType.PLAIN, True)]
    )
    assert res.result, res.message
    # Stored: the debug view reads storage.
    info = await api.get_pipeline_debug_info(runtime, root)
    assert info.result, info.message
    values = {v.key: v for v in info.data["context_values"]}
    assert values["${flag}"].value is True
    assert (await api.retry_node(runtime, node_id)).result
    await wait_state(runtime, root, states.FINISHED)
    assert (await inputs(runtime, node_id))["ok"] is True


async def test_update_context_values_then_retry_a_gateway(runtime: Any) -> None:
    left, right = activity("echo", uid("left")), activity("echo", uid("right"))
    gateway = ExclusiveGateway(id=uid("eg"), conditions={0: "${n} > 5", 1: "${n} < 0"})
    end = EmptyEndEvent(id=uid("end"))
    s = EmptyStartEvent()
    s.extend(gateway).connect(left, right)
    left.extend(end)
    right.connect(end)
    tree = build_tree(s, data=Data(inputs={"${n}": Var(type=Var.PLAIN, value=1)}))
    root = await start(runtime, tree)
    await wait_state(runtime, gateway.id, states.FAILED)
    res = await api.update_context_values(runtime, root, {"n": 9})
    assert res.result, res.message
    assert (await api.retry_node(runtime, gateway.id)).result
    await wait_state(runtime, root, states.FINISHED)
    found = await flat_states(runtime, root)
    assert left.id in found
    assert right.id not in found


async def test_update_context_values_refusals(runtime: Any) -> None:
    tree, node_id = _flag_tree()
    root = await start(runtime, tree)
    await wait_state(runtime, node_id, states.FAILED)
    unknown = await api.update_context_values(runtime, root, {"${flag}": True, "${nope}": 1})
    assert not unknown.result
    assert isinstance(unknown.exc, NotFoundError)
    assert "${nope}" in unknown.message
    # All or nothing: the known key was not changed either.
    info = await api.get_pipeline_debug_info(runtime, root)
    assert {v.key: v.value for v in info.data["context_values"]}["${flag}"] is False
    on_node = await api.update_context_values(runtime, node_id, {"${flag}": True})
    assert not on_node.result
    assert "is not a pipeline or a sub-process" in on_node.message
    for bad in (
        "flag",
        [("${flag}", True)],
        [api.ContextValue("${flag}", api.ContextValueType.COMPUTE, "x")],
        [{"key": "${flag}", "type": "weird", "value": 1}],
        {"${flag}": object()},
    ):
        res = await api.update_context_values(runtime, root, bad)
        assert not res.result, bad
    missing = await api.update_context_values(runtime, uid("missing"), {"${flag}": True})
    assert not missing.result
    assert isinstance(missing.exc, NotFoundError)


async def test_update_context_values_of_a_subprocess(runtime: Any) -> None:
    inner = activity("fail", uid("inner"), ok=splice("${p}"))
    inner_start = EmptyStartEvent()
    inner_start.extend(inner).extend(EmptyEndEvent())
    sub = SubProcess(
        id=uid("sub"),
        start=inner_start,
        data=Data(inputs={"${p}": Var(type=Var.PLAIN, value=False)}),
        params=Params({"${p}": plain(False)}),
    )
    s = EmptyStartEvent()
    s.extend(sub).extend(EmptyEndEvent())
    root = await start(runtime, build_tree(s))
    await wait_state(runtime, inner.id, states.FAILED)
    assert (await api.update_context_values(runtime, sub.id, {"${p}": True})).result
    assert (await api.retry_node(runtime, inner.id)).result
    await wait_state(runtime, root, states.FINISHED)


# -- preview_node_inputs -------------------------------------------------------------------


def _preview_tree() -> tuple[dict[str, Any], str, str, str, str]:
    first = activity(
        "echo",
        uid("first"),
        text=splice("${greeting}, ${name}"),
        shout=Var(type=Var.LAZY, value="${name}", custom_type="upper"),
        raw=plain("${name}"),
    )
    deep = activity("echo", uid("deep"), text=splice("${p} in ${where}"))
    inner_start = EmptyStartEvent()
    inner_start.extend(deep).extend(EmptyEndEvent())
    sub = SubProcess(
        id=uid("sub"),
        start=inner_start,
        data=Data(inputs={"${where}": Var(type=Var.PLAIN, value="the sub-process")}),
        params=Params({"${p}": splice("${name}!")}),
    )
    gateway = ExclusiveGateway(id=uid("eg"), conditions={0: "1 == 1"})
    s = EmptyStartEvent()
    s.extend(first).extend(sub).extend(gateway).extend(EmptyEndEvent())
    tree = build_tree(
        s,
        data=Data(
            inputs={
                "${greeting}": Var(type=Var.PLAIN, value="hello"),
                "${name}": Var(type=Var.PLAIN, value="ada"),
            }
        ),
    )
    return tree, first.id, sub.id, deep.id, gateway.id


async def test_preview_node_inputs_renders_without_running(runtime: Any) -> None:
    tree, first, sub, deep, _gateway = _preview_tree()
    res = await api.preview_node_inputs(runtime, tree, first)
    assert res.result, res.message
    assert res.data == {"text": "hello, ada", "shout": "ADA", "raw": "${name}"}
    # A sub-process's params; a node inside it, through the stack.
    assert (await api.preview_node_inputs(runtime, tree, sub)).data == {"${p}": "ada!"}
    inside = await api.preview_node_inputs(runtime, tree, deep, subprocess_stack=[sub])
    assert inside.data == {"text": "ada! in the sub-process"}, inside.message
    # The caller's params override the top pipeline's values.
    override = await api.preview_node_inputs(
        runtime, tree, first, parent_params={"${name}": {"type": "plain", "value": "bob"}}
    )
    assert override.data["text"] == "hello, bob"
    # Nothing ran and nothing was stored; the caller's tree is untouched.
    assert "converge_gateway_id" not in str(tree["gateways"])
    assert not (await api.get_pipeline_states(runtime, tree["id"])).data
    # Then the run renders the same values.
    await run(runtime, tree)
    got = (await api.get_execution_data_inputs(runtime, first)).data
    assert {k: got[k] for k in ("text", "shout", "raw")} == res.data


async def test_preview_node_inputs_refusals(runtime: Any) -> None:
    tree, _first, sub, deep, gateway = _preview_tree()
    res = await api.preview_node_inputs(runtime, tree, gateway)
    assert not res.result
    assert res.message == "can not preview inputs for node type: ExclusiveGateway"
    assert isinstance(res.exc, InvalidOperationError)
    lost = await api.preview_node_inputs(runtime, tree, deep)
    assert not lost.result
    assert isinstance(lost.exc, NotFoundError)
    assert not (await api.preview_node_inputs(runtime, tree, deep, subprocess_stack=[deep])).result
    assert not (await api.preview_node_inputs(runtime, "tree", deep)).result  # type: ignore[arg-type]
    assert not (await api.preview_node_inputs(runtime, tree, sub, subprocess_stack="s")).result  # type: ignore[arg-type]


# -- debug views and execution times -------------------------------------------------------


async def test_debug_info_of_a_pipeline_and_a_node(runtime: Any) -> None:
    tree, node_id = _flag_tree()
    root = await start(runtime, tree)
    await wait_state(runtime, node_id, states.FAILED)
    info = await api.get_pipeline_debug_info(runtime, root)
    assert info.result, info.message
    assert set(info.data) == {"context_values", "processes"}
    flag = next(v for v in info.data["context_values"] if v.key == "${flag}")
    assert (flag.type, flag.value, flag.code) == (api.ContextValueType.PLAIN, False, None)
    (proc,) = info.data["processes"]
    assert proc.root_pipeline_id == root
    assert proc.pipeline_stack == [root]
    assert proc.current_node_id == node_id
    assert proc.status == "sleeping"

    node = await api.get_node_debug_info(runtime, node_id)
    assert node.result, node.message
    assert set(node.data) == {"node", "data", "state", "err"}
    assert node.data["node"]["id"] == node_id
    assert node.data["node"]["type"] == "ServiceActivity"
    assert node.data["node"]["code"] == "fail"
    assert node.data["node"]["root_pipeline_id"] == root
    assert node.data["data"] == (await api.get_data(runtime, node_id)).data
    assert node.data["state"]["state"] == states.FAILED
    assert node.data["err"] == []

    # An end event not reached: no state, said in err.
    end_id = tree["end_event"]["id"]
    unreached = await api.get_node_debug_info(runtime, end_id)
    assert unreached.result, unreached.message
    assert unreached.data["state"] is None
    assert unreached.data["err"] == [f"node({end_id}) has no state: it has not been reached"]

    assert not (await api.get_pipeline_debug_info(runtime, node_id)).result
    assert not (await api.get_node_debug_info(runtime, root)).result
    for fn in (api.get_pipeline_debug_info, api.get_node_debug_info):
        missing = await fn(runtime, uid("missing"))
        assert not missing.result
        assert isinstance(missing.exc, NotFoundError)


async def test_execution_times(runtime: Any) -> None:
    tree, node_id = _flag_tree()
    root = await start(runtime, tree)
    await wait_state(runtime, node_id, states.FAILED)
    node = await api.get_node_execution_time(runtime, node_id)
    assert node.result, node.message
    assert set(node.data) == {"state", "start_time", "archived_time", "execution_time"}
    assert node.data["state"] == states.FAILED
    assert isinstance(node.data["start_time"], dt.datetime)
    spent = (node.data["archived_time"] - node.data["start_time"]).total_seconds()
    assert node.data["execution_time"] == pytest.approx(spent, abs=1e-3)
    # A running pipeline: up to now, and growing.
    first = await api.get_pipeline_execution_time(runtime, root)
    assert first.data["state"] == states.RUNNING
    assert first.data["archived_time"] is None
    second = await api.get_pipeline_execution_time(runtime, root)
    assert second.data["execution_time"] >= first.data["execution_time"] >= 0
    # The two are the same function, as in the original.
    assert (await api.get_node_execution_time(runtime, root)).data["state"] == states.RUNNING
    unreached = await api.get_node_execution_time(runtime, tree["end_event"]["id"])
    assert not unreached.result
    assert "has not been reached" in unreached.message
    missing = await api.get_pipeline_execution_time(runtime, uid("missing"))
    assert not missing.result
    assert isinstance(missing.exc, NotFoundError)


# -- through a worker -------------------------------------------------------------------------


async def test_extras_from_a_client_through_a_worker(runtime_factory: Any) -> None:
    needs_shared_storage(runtime_factory.kind)
    from aiobamboo.engine import Settings

    settings = Settings(poll_interval=0.05)
    async with (
        opened(runtime_factory, settings=settings) as worker,
        opened(runtime_factory, worker=False, settings=settings) as client,
    ):
        tree, loop_id, _reader_id = _loop_tree()
        root = await start(client, tree)
        await wait_state(client, loop_id, states.FAILED)
        res = await api.retry_node(client, loop_id, loop_retry=True)
        assert res.result, res.message
        await wait_state(client, root, states.FINISHED)
        assert CALLS[loop_id] == [1, 2, 2, 3]

        skip_tree, skip_id, _ = _loop_tree(always=True)
        skip_root = await start(client, skip_tree)
        await wait_state(client, skip_id, states.FAILED)
        assert (await api.skip_node(client, skip_id, loop_skip=True)).result
        await wait_state(client, skip_root, states.FINISHED)
        assert CALLS[skip_id] == [1, 2, 3]

        flag_tree, flag_id = _flag_tree()
        flag_root = await start(client, flag_tree)
        await wait_state(client, flag_id, states.FAILED)
        info = await api.get_pipeline_debug_info(client, flag_root)
        assert info.result, info.message
        assert info.data["processes"]
        fixed = await api.update_context_values(client, flag_root, {"${flag}": True})
        assert fixed.result, fixed.message
        unknown = await api.update_context_values(client, flag_root, {"${nope}": True})
        assert isinstance(unknown.exc, NotFoundError), unknown.message
        assert (await api.retry_node(client, flag_id)).result
        await wait_state(client, flag_root, states.FINISHED)
        assert (await inputs(worker, flag_id))["ok"] is True
        assert (await api.get_node_execution_time(client, flag_id)).result
        assert (await api.get_node_debug_info(client, flag_id)).data["err"] == []
        other_tree, other_id = _flag_tree()
        preview = await api.preview_node_inputs(client, other_tree, other_id)
        assert preview.data == {"ok": False}, preview.message


async def test_context_values_survive_a_restart(runtime_factory: Any) -> None:
    needs_shared_storage(runtime_factory.kind)
    tree, node_id = _flag_tree()
    async with opened(runtime_factory) as first:
        root = await start(first, tree)
        await wait_state(first, node_id, states.FAILED)
        assert (await api.update_context_values(first, root, {"flag": True})).result
    async with opened(runtime_factory) as second:
        assert (await api.retry_node(second, node_id)).result
        await wait_state(second, root, states.FINISHED)
        assert (await inputs(second, node_id))["ok"] is True
