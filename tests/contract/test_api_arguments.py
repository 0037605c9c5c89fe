"""Malformed arguments are refused naming the argument: never raised, never "internal error"."""

from __future__ import annotations

import math
from typing import Any

import pytest

from aiobamboo import api
from aiobamboo.api import MAX_ID_LENGTH, EngineAPIResult
from aiobamboo.builder import ConditionalParallelGateway, ConvergeGateway, ExclusiveGateway
from aiobamboo.exceptions import AiobambooError

from .ops_helpers import act, entry, flow_id, histories, ok, place, start, wait_outcome, wait_state


def refused_naming(res: EngineAPIResult[Any], argument: str) -> str:
    assert res.result is False, res
    assert isinstance(res.exc, AiobambooError), (res.message, res.exc)
    assert "internal error" not in res.message
    assert argument in res.message, res.message
    return res.message


def _linear_tree() -> dict[str, Any]:
    return place("top", lambda s: s.extend(act("echo", text="x"))).tree


# -- run_pipeline ----------------------------------------------------------------------


@pytest.mark.parametrize("not_a_runtime", [None, "runtime", 0, [], {}, object()])
async def test_an_argument_that_is_no_runtime_is_refused(not_a_runtime: Any) -> None:
    for res in (
        await api.run_pipeline(not_a_runtime, _linear_tree()),
        await api.get_pipeline_states(not_a_runtime, "p1"),
        await api.callback(not_a_runtime, "n1", "v1", {}),
        await api.wait_pipeline(not_a_runtime, "p1", timeout=1),
    ):
        refused_naming(res, "runtime")
    with pytest.raises(AiobambooError, match="runtime"):
        api.subscribe(not_a_runtime)


async def test_a_runtime_that_is_not_open_is_refused(tmp_path: Any) -> None:
    from aiobamboo_sqlite import SQLiteRuntime

    closed = SQLiteRuntime(tmp_path / "closed.db")
    refused_naming(await api.run_pipeline(closed, _linear_tree()), "runtime")


MALFORMED_RUN_ARGUMENTS: list[tuple[dict[str, Any], str]] = [
    ({"root_pipeline_data": {"n": 10**5000}}, "root_pipeline_data"),
    ({"root_pipeline_data": {"n": math.nan}}, "root_pipeline_data"),
    ({"root_pipeline_data": [1]}, "root_pipeline_data"),
    ({"root_pipeline_data": {1: "non-string key"}}, "root_pipeline_data"),
    ({"root_pipeline_context": "x"}, "root_pipeline_context"),
    ({"subprocess_context": 5}, "subprocess_context"),
    ({"cycle_tolerate": "yes"}, "cycle_tolerate"),
    ({"start_node_id": 5}, "start_node_id"),
    ({"start_node_id": ""}, "start_node_id"),
    ({"priority": "high"}, "priority"),
    ({"no_such_option": 1}, "no_such_option"),
]


async def test_run_pipeline_refuses_malformed_arguments(runtime: Any) -> None:
    tree = _linear_tree()
    for kwargs, argument in MALFORMED_RUN_ARGUMENTS:
        refused_naming(await api.run_pipeline(runtime, tree, **kwargs), argument)
    # Nothing was stored: the same tree starts afterwards.
    ok(await api.run_pipeline(runtime, tree))
    assert await wait_outcome(runtime, tree["id"]) == "FINISHED"


async def test_run_pipeline_refuses_a_self_referencing_value(runtime: Any) -> None:
    looped: list[Any] = []
    looped.append(looped)
    refused_naming(
        await api.run_pipeline(runtime, _linear_tree(), root_pipeline_data={"a": looped}),
        "root_pipeline_data",
    )
    refused_naming(await api.run_pipeline(runtime, "not a tree"), "pipeline")  # type: ignore[arg-type]


# -- the other functions ---------------------------------------------------------------


async def test_malformed_ids_are_refused_naming_the_argument(runtime: Any) -> None:
    for bad_id in (None, "", 5, ["n1"], "x" * (MAX_ID_LENGTH + 1), "a\x00b", "a\ud800b"):
        await _refused_everywhere(runtime, bad_id)


async def _refused_everywhere(runtime: Any, bad_id: Any) -> None:
    refused_naming(await api.pause_pipeline(runtime, bad_id), "pipeline_id")
    refused_naming(await api.wait_pipeline(runtime, bad_id, timeout=1), "pipeline_id")
    refused_naming(await api.get_pipeline_states(runtime, bad_id), "root_id")
    refused_naming(await api.skip_node(runtime, bad_id), "node_id")
    refused_naming(await api.get_node_histories(runtime, bad_id), "node_id")
    if bad_id is not None:  # no version: the node's current attempt
        refused_naming(await api.callback(runtime, "n1", bad_id, {}), "version")
    refused_naming(await api.skip_exclusive_gateway(runtime, "n1", bad_id), "flow_id")


async def test_wait_pipeline_refuses_a_malformed_timeout(runtime: Any) -> None:
    root_id = await start(runtime, _linear_tree())
    for seconds in ("5", -1, math.nan, math.inf, 10**400, True, [1]):
        refused_naming(await api.wait_pipeline(runtime, root_id, timeout=seconds), "timeout")
    assert await wait_outcome(runtime, root_id) == "FINISHED"


async def test_node_histories_refuse_a_malformed_loop(runtime: Any) -> None:
    for loop in (10**30, -(2**63) - 1, "1", 1.5, None, True):
        refused_naming(await api.get_node_histories(runtime, "n1", loop=loop), "loop")
        refused_naming(await api.get_node_short_histories(runtime, "n1", loop=loop), "loop")


async def test_node_histories_of_a_loop_no_attempt_has_are_empty(runtime: Any) -> None:
    root_id = await start(runtime, _linear_tree())
    assert await wait_outcome(runtime, root_id) == "FINISHED"
    for loop in (2**31, 2**63 - 1, -5):
        assert ok(await api.get_node_histories(runtime, root_id, loop=loop)) == []


async def test_retry_node_refuses_malformed_data(runtime: Any) -> None:
    failing = act("fail")
    tree = place("top", lambda s: s.extend(failing)).tree
    root_id = await start(runtime, tree)
    assert await wait_outcome(runtime, root_id) == "FAILED"
    for data in (
        {"_escape_render_keys": 5},
        {"_escape_render_keys": "text"},
        {"_escape_render_keys": [1]},
        {1: "non-string key"},
        [("text", "x")],
        "text",
    ):
        refused_naming(await api.retry_node(runtime, failing.id, data), "data")  # type: ignore[arg-type]
    node = await entry(runtime, root_id, failing.id)
    assert node is not None
    assert (node["state"], node["retry"]) == ("FAILED", 0)


async def test_other_arguments_are_checked_too(runtime: Any) -> None:
    res = await api.get_pipeline_states(runtime, "p1", flat_children="no")  # type: ignore[arg-type]
    refused_naming(res, "flat_children")
    refused_naming(await api.forced_fail_activity(runtime, "n1", ex_data=5), "ex_data")  # type: ignore[arg-type]
    refused_naming(
        await api.forced_fail_activity(runtime, "n1", "x", send_post_set_state_signal=None),  # type: ignore[arg-type]
        "send_post_set_state_signal",
    )
    with pytest.raises(AiobambooError, match="pipeline_id"):
        api.subscribe(runtime, 5)  # type: ignore[arg-type]
    for after in (-1, "3", 1.5, True):
        with pytest.raises(AiobambooError, match="after"):
            api.subscribe(runtime, after=after)  # type: ignore[arg-type]


# -- skip_conditional_parallel_gateway ---------------------------------------------------


async def test_skip_conditional_parallel_gateway_refuses_malformed_flow_ids(runtime: Any) -> None:
    cpg = ConditionalParallelGateway(conditions={0: "1 == 2", 1: "1 == 3"})
    a, b = act("echo", text="a"), act("echo", text="b")
    cg = ConvergeGateway()
    eg = ExclusiveGateway(conditions={0: "1 == 1", 1: "1 == 2"})
    e1, e2, ecg = act("echo"), act("echo"), ConvergeGateway()

    def build(prev: Any) -> Any:
        prev.extend(cpg).connect(a, b).to(cpg).converge(cg)
        cg.extend(eg).connect(e1, e2).to(eg).converge(ecg)
        return ecg

    tree = place("top", build).tree
    root_id = await start(runtime, tree)
    failed = await wait_state(runtime, root_id, cpg.id, "FAILED")
    to_a, to_b = flow_id(tree, cpg.id, a.id), flow_id(tree, cpg.id, b.id)

    for flow_ids in (None, to_a, [], [to_a, to_a], [to_a, 5], [to_a, None], [[to_a]], [""]):
        res = await api.skip_conditional_parallel_gateway(runtime, cpg.id, flow_ids, cg.id)  # type: ignore[arg-type]
        refused_naming(res, "flow_ids")
    res = await api.skip_conditional_parallel_gateway(runtime, cpg.id, [to_a, "f_unknown"], cg.id)
    refused_naming(res, "f_unknown")
    # Another converge gateway: the branches would never meet there.
    res = await api.skip_conditional_parallel_gateway(runtime, cpg.id, [to_a], ecg.id)
    refused_naming(res, ecg.id)
    refused_naming(
        await api.skip_conditional_parallel_gateway(runtime, cpg.id, [to_a], None),  # type: ignore[arg-type]
        "converge_gateway_id",
    )
    # None of it changed anything; a valid call with both flows still finishes.
    node = await entry(runtime, root_id, cpg.id)
    assert node is not None
    assert (node["state"], node["version"]) == ("FAILED", failed["version"])
    assert await histories(runtime, cpg.id) == []
    ok(await api.skip_conditional_parallel_gateway(runtime, cpg.id, (to_a, to_b), cg.id))
    assert await wait_outcome(runtime, root_id) == "FINISHED"
