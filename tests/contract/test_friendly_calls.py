"""Callbacks without a version, unwrap, wait timeouts and named state trees."""

from __future__ import annotations

import time
from typing import Any

import pytest

from aiobamboo import api, states
from aiobamboo.builder import (
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    SubProcess,
    build_tree,
)
from aiobamboo.exceptions import (
    AiobambooError,
    InvalidOperationError,
    NotFoundError,
    WaitTimeoutError,
)

from .helpers import activity, outputs, run, start, uid, wait_for, waiting_version
from .parking_helpers import needs_shared_storage, opened, parking_settings


def _waiting_tree() -> tuple[dict[str, Any], str]:
    act = activity("callback")
    s = EmptyStartEvent()
    s.extend(act).extend(EmptyEndEvent())
    return build_tree(s), act.id


async def _deliver_unversioned(runtime: Any, node_id: str, data: Any) -> None:
    """``api.callback`` without a version, retried while the process is not asleep yet."""

    async def delivered() -> bool:
        res = await api.callback(runtime, node_id, data=data)
        if not res.result:
            assert "can not find sleep process" in res.message, res.message
        return res.result

    await wait_for(delivered, what=f"callback to {node_id}")


async def test_callback_without_version_reaches_the_current_attempt(runtime: Any) -> None:
    tree, node = _waiting_tree()
    root = await start(runtime, tree)
    await waiting_version(runtime, node)
    await _deliver_unversioned(runtime, node, {"approved": True})
    res = await api.wait_pipeline(runtime, root, timeout=5)
    assert res.data == states.FINISHED, res.message
    assert (await outputs(runtime, node))["callback_data"] == {"approved": True}


async def test_callback_with_a_version_still_works_positionally(runtime: Any) -> None:
    tree, node = _waiting_tree()
    root = await start(runtime, tree)
    version = await waiting_version(runtime, node)
    res = await api.callback(runtime, node, version, {"n": 1})
    assert res.result, res.message
    assert (await api.wait_pipeline(runtime, root, timeout=5)).data == states.FINISHED


async def test_callback_without_version_refuses_a_node_that_does_not_wait(runtime: Any) -> None:
    act = activity("echo", text="x")
    s = EmptyStartEvent()
    s.extend(act).extend(EmptyEndEvent())
    await run(runtime, build_tree(s))
    res = await api.callback(runtime, act.id, data={})
    assert not res.result
    assert isinstance(res.exc, InvalidOperationError), res.exc
    assert "FINISHED" in res.message
    res = await api.callback(runtime, uid("nope"), data={})
    assert isinstance(res.exc, NotFoundError), res.exc
    res = await api.callback(runtime, act.id, data=object())
    assert not res.result
    assert "callback data" in res.message


async def test_callback_without_version_from_a_client_to_a_parked_run(
    runtime_factory: Any,
) -> None:
    needs_shared_storage(runtime_factory.kind)
    tree, node = _waiting_tree()
    async with (
        opened(runtime_factory, settings=parking_settings(poll_interval=0.05)) as worker,
        opened(runtime_factory, worker=False) as client,
    ):
        root = await start(client, tree)
        await waiting_version(client, node)
        await _deliver_unversioned(client, node, {"from": "client"})
        res = await api.wait_pipeline(client, root, timeout=10)
        assert res.data == states.FINISHED, res.message
        assert (await outputs(worker, node))["callback_data"] == {"from": "client"}


async def test_unwrap_returns_data_or_raises_the_refusal(runtime: Any) -> None:
    act = activity("echo", text="hello")
    s = EmptyStartEvent()
    s.extend(act).extend(EmptyEndEvent())
    await run(runtime, build_tree(s))
    data = (await api.get_execution_data(runtime, act.id)).unwrap()
    assert data is not None
    assert data["inputs"]["text"] == "hello"
    with pytest.raises(NotFoundError, match="does not exist"):
        (await api.get_execution_data(runtime, uid("nope"))).unwrap()
    with pytest.raises(InvalidOperationError, match="node_id"):
        (await api.skip_node(runtime, "")).unwrap()


def test_unwrap_of_an_internal_error_raises_an_error_of_the_hierarchy() -> None:
    cause = KeyError("boom")
    result: api.EngineAPIResult[None] = api.EngineAPIResult(False, "internal error", cause)
    with pytest.raises(AiobambooError, match="internal error") as raised:
        result.unwrap()
    assert raised.value.__cause__ is cause
    assert api.EngineAPIResult(True, "success", None, 3).unwrap() == 3


async def test_wait_pipeline_times_out_with_a_timeout_error(runtime: Any) -> None:
    tree, node = _waiting_tree()
    root = await start(runtime, tree)
    await waiting_version(runtime, node)
    res = await api.wait_pipeline(runtime, root, timeout=0.1)
    assert not res.result
    assert isinstance(res.exc, WaitTimeoutError), res.exc
    assert isinstance(res.exc, TimeoutError)
    assert "timed out" in res.message
    with pytest.raises(WaitTimeoutError):
        res.unwrap()


async def test_wait_pipeline_of_an_ended_pipeline_and_of_a_node_id(runtime: Any) -> None:
    """An ended pipeline answers from storage too; a node's id is not a pipeline's."""
    act = activity("echo", text="x")
    s = EmptyStartEvent()
    s.extend(act).extend(EmptyEndEvent())
    root = await start(runtime, build_tree(s))
    assert (await api.wait_pipeline(runtime, root, timeout=5)).data == states.FINISHED
    again = await api.wait_pipeline(runtime, root, timeout=5)
    assert again.data == states.FINISHED, again.message
    res = await api.wait_pipeline(runtime, act.id, timeout=5)
    assert not res.result
    assert isinstance(res.exc, InvalidOperationError), res.message
    assert "is not a root pipeline" in res.message


async def test_a_pipeline_that_ended_here_is_waited_for_without_reading_storage(
    runtime: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its end cannot change, so it is remembered; once purged, storage answers again."""
    s = EmptyStartEvent()
    s.extend(activity("echo", text="x")).extend(EmptyEndEvent())
    root = await run(runtime, build_tree(s))

    async def left_memory() -> bool:
        return root not in runtime.scheduler.runs

    await wait_for(left_memory, what="the run leaving memory")
    reads: list[str] = []
    store = runtime.scheduler.store
    for name in ("get_state", "get_run", "get_node_root", "load_run", "read_events"):
        monkeypatch.setattr(store, name, _counted(reads, name, getattr(store, name)))
    waited = await api.wait_pipeline(runtime, root, timeout=5)
    assert (waited.data, waited.message) == (states.FINISHED, f"pipeline {root} is FINISHED")
    assert reads == []
    monkeypatch.undo()
    purged = await api.purge_pipelines(runtime, finished_before=time.time() + 60)
    assert purged.data == 1, purged.message
    gone = await api.wait_pipeline(runtime, root, timeout=5)
    assert isinstance(gone.exc, NotFoundError), gone.message


def _counted(reads: list[str], name: str, method: Any) -> Any:
    async def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append(name)
        return await method(*args, **kwargs)

    return counted


async def test_state_tree_with_names_and_types(runtime: Any) -> None:
    inner = activity("echo", text="in")
    inner.name = "inner step"
    sub_start = EmptyStartEvent(name="sub start")
    sub_start.extend(inner).extend(EmptyEndEvent(name="sub end"))
    sub = SubProcess(start=sub_start, name="the sub")
    first = activity("echo", text="x")
    first.name = "first step"
    choose = ExclusiveGateway(conditions={0: "True == True"}, name="choose")
    s = EmptyStartEvent(name="begin")
    end = EmptyEndEvent(name="finish")
    s.extend(first).extend(sub).extend(choose).extend(end)
    tree = build_tree(s)
    tree["name"] = "named pipeline"
    root = await run(runtime, tree)

    plain = (await api.get_pipeline_states(runtime, root)).unwrap()
    assert plain is not None
    assert "name" not in plain[root]
    assert all("name" not in e and "type" not in e for e in plain[root]["children"].values())

    named = (await api.get_pipeline_states(runtime, root, with_names=True)).unwrap()
    assert named is not None
    assert (named[root]["name"], named[root]["type"]) == ("named pipeline", "Pipeline")
    children = named[root]["children"]
    assert (children[first.id]["name"], children[first.id]["type"]) == (
        "first step",
        "ServiceActivity",
    )
    assert (children[choose.id]["name"], children[choose.id]["type"]) == (
        "choose",
        "ExclusiveGateway",
    )
    assert children[inner.id]["name"] == "inner step"
    assert children[s.id]["type"] == "EmptyStartEvent"
    assert set(plain[root]) | {"name", "type"} == set(named[root])

    nested = (await api.get_pipeline_states(runtime, root, False, with_names=True)).unwrap()
    assert nested is not None
    sub_entry = nested[root]["children"][sub.id]
    assert (sub_entry["name"], sub_entry["type"]) == ("the sub", "SubProcess")
    assert sub_entry["children"][inner.id]["name"] == "inner step"

    children_of_sub = (await api.get_children_states(runtime, sub.id, with_names=True)).unwrap()
    assert children_of_sub is not None
    assert children_of_sub[sub.id]["children"][inner.id]["type"] == "ServiceActivity"
    res = await api.get_pipeline_states(runtime, root, with_names="yes")  # type: ignore[arg-type]
    assert not res.result
    assert "with_names" in res.message
