"""One answer for an unknown id, on every function; the root's parent id, everywhere."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from aiobamboo import api, states
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, build_tree
from aiobamboo.exceptions import InvalidOperationError, NotFoundError

from .helpers import activity, finish, start, uid, wait_state
from .parking_helpers import needs_shared_storage, opened

Call = Callable[[Any, str], Awaitable[api.EngineAPIResult[Any]]]


def _tree() -> dict[str, Any]:
    s = EmptyStartEvent()
    s.extend(activity("echo", uid("a"))).extend(EmptyEndEvent())
    return build_tree(s)


#: Every coroutine of the API that takes an id, called with that id unknown and
#: every other argument well formed.
WITH_AN_ID: dict[str, Call] = {
    "pause_pipeline": lambda rt, i: api.pause_pipeline(rt, i),
    "resume_pipeline": lambda rt, i: api.resume_pipeline(rt, i),
    "revoke_pipeline": lambda rt, i: api.revoke_pipeline(rt, i),
    "pause_node_appoint": lambda rt, i: api.pause_node_appoint(rt, i),
    "resume_node_appoint": lambda rt, i: api.resume_node_appoint(rt, i),
    "retry_node": lambda rt, i: api.retry_node(rt, i, {"x": 1}),
    "retry_subprocess": lambda rt, i: api.retry_subprocess(rt, i),
    "skip_node": lambda rt, i: api.skip_node(rt, i),
    "skip_exclusive_gateway": lambda rt, i: api.skip_exclusive_gateway(rt, i, "f1"),
    "skip_conditional_parallel_gateway": lambda rt, i: api.skip_conditional_parallel_gateway(
        rt, i, ["f1"], "c1"
    ),
    "forced_fail_activity": lambda rt, i: api.forced_fail_activity(rt, i, "stop"),
    "callback": lambda rt, i: api.callback(rt, i, "v1", {"k": 1}),
    "update_context_values": lambda rt, i: api.update_context_values(rt, i, {"${a}": 1}),
    "wait_pipeline": lambda rt, i: api.wait_pipeline(rt, i, timeout=5),
    "get_pipeline_states": lambda rt, i: api.get_pipeline_states(rt, i),
    "get_children_states": lambda rt, i: api.get_children_states(rt, i),
    "get_execution_data_inputs": lambda rt, i: api.get_execution_data_inputs(rt, i),
    "get_execution_data_outputs": lambda rt, i: api.get_execution_data_outputs(rt, i),
    "get_execution_data": lambda rt, i: api.get_execution_data(rt, i),
    "get_data": lambda rt, i: api.get_data(rt, i),
    "get_node_histories": lambda rt, i: api.get_node_histories(rt, i),
    "get_node_short_histories": lambda rt, i: api.get_node_short_histories(rt, i, 1),
    "get_pipeline_debug_info": lambda rt, i: api.get_pipeline_debug_info(rt, i),
    "get_node_debug_info": lambda rt, i: api.get_node_debug_info(rt, i),
    "get_pipeline_execution_time": lambda rt, i: api.get_pipeline_execution_time(rt, i),
    "get_node_execution_time": lambda rt, i: api.get_node_execution_time(rt, i),
    "explain": lambda rt, i: api.explain(rt, i),
    # The rollback functions: an unknown pipeline.
    "rollback": lambda rt, i: api.rollback(rt, i, "n1", "n2"),
    "reserve_rollback": lambda rt, i: api.reserve_rollback(rt, i, "n1", "n2"),
    "cancel_reserved_rollback": lambda rt, i: api.cancel_reserved_rollback(rt, i, "n1", "n2"),
    "retry_rollback_failed_node": lambda rt, i: api.retry_rollback_failed_node(rt, i, "n1"),
    "get_allowed_rollback_node_id_list": lambda rt, i: api.get_allowed_rollback_node_id_list(
        rt, i, "n1"
    ),
    # The id names a node of the tree passed in, not a stored one.
    "preview_node_inputs": lambda rt, i: api.preview_node_inputs(rt, _tree(), i),
}
#: Coroutines that take no id.
WITHOUT_AN_ID = {"run_pipeline", "list_pipelines", "purge_pipelines"}


def test_every_function_with_an_id_is_covered() -> None:
    coroutines = {n for n in api.__all__ if inspect.iscoroutinefunction(getattr(api, n))}
    assert coroutines == set(WITH_AN_ID) | WITHOUT_AN_ID


async def _check_unknown_ids(runtime: Any) -> None:
    # Another pipeline is stored, so storage is not simply empty.
    await start(runtime, _tree())
    for name, call in WITH_AN_ID.items():
        unknown = uid("unknown")
        with anyio.fail_after(10):
            res = await call(runtime, unknown)
        assert not res.result, (name, res.data)
        assert isinstance(res.exc, NotFoundError), (name, res.message)
        if name == "preview_node_inputs":
            assert res.message.startswith(f"node({unknown}) does not exist"), res.message
        else:
            assert res.message == f"node({unknown}) does not exist", (name, res.message)
        assert res.data is None, name


async def test_an_unknown_id_is_refused_the_same_way_everywhere(runtime: Any) -> None:
    await _check_unknown_ids(runtime)


async def test_an_unknown_id_is_refused_the_same_way_from_a_client(runtime_factory: Any) -> None:
    needs_shared_storage(runtime_factory.kind)
    async with opened(runtime_factory) as _worker, opened(runtime_factory, worker=False) as client:
        await _check_unknown_ids(client)


async def test_known_nodes_without_state_keep_the_originals_answers(runtime: Any) -> None:
    """A node of a stored pipeline that has not run yet: empty answers, not refusals."""
    gate = activity("gate", uid("gate"))
    later = activity("echo", uid("later"))
    s = EmptyStartEvent()
    s.extend(gate).extend(later).extend(EmptyEndEvent())
    tree = build_tree(s)
    root = await start(runtime, tree)
    await wait_state(runtime, gate.id, states.RUNNING)
    assert (await api.get_children_states(runtime, later.id)).data == {}
    assert (await api.get_execution_data_inputs(runtime, later.id)).data == {}
    assert (await api.get_execution_data_outputs(runtime, later.id)).data == {}
    assert (await api.get_node_histories(runtime, later.id)).data == []
    assert (await api.get_node_short_histories(runtime, later.id)).data == []
    # The state tree of a node that is not a root pipeline is empty, as in the original.
    assert (await api.get_pipeline_states(runtime, later.id)).data == {}
    no_data = await api.get_execution_data(runtime, later.id)
    assert isinstance(no_data.exc, NotFoundError)
    assert no_data.message == f"execution data of node({later.id}) does not exist"
    not_a_root = await api.wait_pipeline(runtime, later.id, timeout=1)
    assert isinstance(not_a_root.exc, InvalidOperationError)
    assert "is not a root pipeline" in not_a_root.message
    from .components import GATES

    GATES.setdefault(gate.id, anyio.Event()).set()
    await finish(runtime, root)


async def test_the_roots_parent_id_is_the_root_in_events_and_state_trees(runtime: Any) -> None:
    tree = _tree()
    root = tree["id"]
    seen: list[Any] = []
    async with api.subscribe(runtime, root) as events:
        await start(runtime, tree)
        with anyio.fail_after(10):
            async for event in events:
                seen.append(event)
                if event.kind == "pipeline_finished":
                    break
    root_events = [e for e in seen if e.kind == "state" and e.node_id == root]
    assert [e.state for e in root_events] == ["RUNNING", "FINISHED"]
    assert {e.data["parent_id"] for e in root_events} == {root}
    tree_entry = (await api.get_pipeline_states(runtime, root)).data[root]
    assert tree_entry["parent_id"] == root
    children_entry = (await api.get_children_states(runtime, root)).data[root]
    assert children_entry["parent_id"] == root
    for event in seen:
        if event.kind == "state" and event.node_id != root:
            assert event.data["parent_id"] == tree_entry["children"][event.node_id]["parent_id"]
