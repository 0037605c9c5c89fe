"""Polling and callbacks through ``aiobamboo.api`` only."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from aiobamboo import api, states
from aiobamboo.builder import (
    ConvergeGateway,
    EmptyEndEvent,
    EmptyStartEvent,
    ParallelGateway,
    SubProcess,
    build_tree,
)

from . import components
from .helpers import (
    activity,
    deliver,
    drop_schema,
    entry_of,
    finish,
    open_gate,
    outputs,
    run,
    start,
    state_of,
    uid,
    wait_for,
    wait_state,
    waiting_version,
)


def _chain(*acts: Any) -> Any:
    s = EmptyStartEvent()
    current = s
    for act in acts:
        current = current.extend(act)
    current.extend(EmptyEndEvent())
    return s


# -- polling -------------------------------------------------------------------------------


async def test_polling_finishes_after_n_polls(runtime: Any) -> None:
    poller = activity("poll", uid("poll"), polls=4)
    after = activity("echo", uid("after"))
    await run(runtime, build_tree(_chain(poller, after)))

    entry = await entry_of(runtime, poller.id)
    assert entry is not None
    assert entry["state"] == states.FINISHED
    out = await outputs(runtime, poller.id)
    assert out["polls"] == 4
    assert out["_result"] is True
    assert await state_of(runtime, after.id) == states.FINISHED


async def test_each_poll_gets_parent_data_with_empty_outputs(runtime: Any) -> None:
    """As the original: parent_data holds the root pipeline data as inputs and no
    outputs, at every call; what one poll writes there is gone at the next."""
    poller = activity("parent_poll", uid("poll"), polls=3)
    await run(runtime, build_tree(_chain(poller)))
    out = await outputs(runtime, poller.id)
    assert out["polls"] == 3
    assert out["parent_outputs"] == [{}, {}, {}]


async def test_plain_def_execute_and_schedule_run_on_worker_threads(runtime: Any) -> None:
    poller = activity("flow_sync_poll", uid("poll"), polls=2)
    await run(runtime, build_tree(_chain(poller)))
    threads = (await outputs(runtime, poller.id))["threads"]
    assert len(threads) == 3  # one execute, two polls
    assert threading.current_thread().name not in threads


async def test_polling_inside_a_subprocess(runtime: Any) -> None:
    poller = activity("poll", uid("poll"), polls=2)
    sub = SubProcess(id=uid("sub"), start=_chain(poller))
    root_id = await run(runtime, build_tree(_chain(sub)))
    assert (await outputs(runtime, poller.id))["polls"] == 2
    assert await state_of(runtime, sub.id) == states.FINISHED
    assert await state_of(runtime, root_id) == states.FINISHED


async def test_a_poll_that_raises_fails_the_node_with_the_traceback(runtime: Any) -> None:
    poller = activity("flow_poll_fail", uid("poll"))
    root_id = await start(runtime, build_tree(_chain(poller)))
    await finish(runtime, root_id, states.FAILED)
    assert await state_of(runtime, poller.id) == states.FAILED
    out = await outputs(runtime, poller.id)
    assert out["polls"] == 2
    assert out["_result"] is False
    assert "RuntimeError: poll exploded" in out["ex_data"]


async def test_a_failing_poll_on_an_error_ignorable_node_is_ignored(runtime: Any) -> None:
    poller = activity("flow_poll_fail", uid("poll"))
    poller.error_ignorable = True
    await run(runtime, build_tree(_chain(poller, activity("echo"))))
    entry = await entry_of(runtime, poller.id)
    assert entry is not None
    assert entry["state"] == states.FINISHED
    assert entry["error_ignored"] is True


# -- single callback ---------------------------------------------------------------------


async def test_callback_with_the_version_from_the_state_tree_finishes_the_node(
    runtime: Any,
) -> None:
    waiter = activity("callback", uid("cb"))
    after = activity("echo", uid("after"))
    root_id = await start(runtime, build_tree(_chain(waiter, after)))
    await wait_state(runtime, waiter.id, states.RUNNING)

    tree = (await api.get_pipeline_states(runtime, root_id)).data
    assert tree is not None
    version = tree[root_id]["children"][waiter.id]["version"]
    assert version == await waiting_version(runtime, waiter.id)
    assert after.id not in tree[root_id]["children"]

    res = await deliver(runtime, waiter.id, version, {"answer": 42})
    assert res.result, res.message
    await finish(runtime, root_id)
    out = await outputs(runtime, waiter.id)
    assert out["callback_data"] == {"answer": 42}
    assert out["waiting"] is True
    assert out["_result"] is True
    entry = await entry_of(runtime, waiter.id)
    assert entry is not None
    assert entry["version"] == version  # finishing keeps the version
    assert components.EXECUTIONS[waiter.id] == 1


async def test_callback_before_the_node_waits_is_refused(runtime: Any) -> None:
    gate = activity("gate", uid("gate"))
    waiter = activity("callback", uid("cb"))
    root_id = await start(runtime, build_tree(_chain(gate, waiter)))
    await wait_state(runtime, gate.id, states.RUNNING)

    res = await api.callback(runtime, waiter.id, "v0000", {"early": True})
    assert res.result is False
    assert waiter.id in res.message
    assert await state_of(runtime, waiter.id) is None

    open_gate(gate.id)
    version = await waiting_version(runtime, waiter.id)
    res = await deliver(runtime, waiter.id, version, {"late": True})
    assert res.result, res.message
    await finish(runtime, root_id)
    assert (await outputs(runtime, waiter.id))["callback_data"] == {"late": True}


async def test_callback_with_a_wrong_version_is_refused(runtime: Any) -> None:
    waiter = activity("callback", uid("cb"))
    root_id = await start(runtime, build_tree(_chain(waiter)))
    version = await waiting_version(runtime, waiter.id)

    res = await deliver(runtime, waiter.id, "v-not-a-version", {})
    assert res.result is False
    assert "v-not-a-version" in res.message
    assert await state_of(runtime, waiter.id) == states.RUNNING

    res = await deliver(runtime, waiter.id, version, {"ok": 1})
    assert res.result, res.message
    await finish(runtime, root_id)


async def test_callback_to_an_old_attempt_after_a_retry_says_version_not_exist(
    runtime: Any,
) -> None:
    waiter = activity("callback", uid("cb"))
    root_id = await start(runtime, build_tree(_chain(waiter)))
    old = await waiting_version(runtime, waiter.id)
    res = await deliver(runtime, waiter.id, old, {"fail": True})
    assert res.result, res.message
    await finish(runtime, root_id, states.FAILED)

    res = await api.retry_node(runtime, waiter.id)
    assert res.result, res.message

    async def new_version() -> str | None:
        entry = await entry_of(runtime, waiter.id)
        if entry and entry["state"] == states.RUNNING and entry["version"] != old:
            return str(entry["version"])
        return None

    new = await wait_for(new_version, what="the retried attempt")
    stale = await deliver(runtime, waiter.id, old, {"stale": True})
    assert stale.result is False
    assert f"node version {old} not exist" in stale.message

    res = await deliver(runtime, waiter.id, new, {"fresh": True})
    assert res.result, res.message
    await finish(runtime, root_id)
    assert (await outputs(runtime, waiter.id))["callback_data"] == {"fresh": True}


async def test_second_callback_after_finish_is_refused(runtime: Any) -> None:
    waiter = activity("callback", uid("cb"))
    gate = activity("gate", uid("gate"))
    root_id = await start(runtime, build_tree(_chain(waiter, gate)))
    version = await waiting_version(runtime, waiter.id)
    res = await deliver(runtime, waiter.id, version, {"n": 1})
    assert res.result, res.message
    await wait_state(runtime, waiter.id, states.FINISHED)

    again = await api.callback(runtime, waiter.id, version, {"n": 2})
    assert again.result is False
    assert again.message

    open_gate(gate.id)
    await finish(runtime, root_id)
    after_end = await api.callback(runtime, waiter.id, version, {"n": 3})
    assert after_end.result is False
    assert (await outputs(runtime, waiter.id))["callback_data"] == {"n": 1}


async def test_malformed_callback_data_is_refused_and_the_node_keeps_waiting(
    runtime: Any,
) -> None:
    waiter = activity("callback", uid("cb"))
    root_id = await start(runtime, build_tree(_chain(waiter)))
    version = await waiting_version(runtime, waiter.id)

    bad = await deliver(runtime, waiter.id, version, {"items": {1, 2, 3}})
    assert bad.result is False
    assert "set" in bad.message
    assert await state_of(runtime, waiter.id) == states.RUNNING

    res = await deliver(runtime, waiter.id, version, {"items": [1, 2, 3]})
    assert res.result, res.message
    await finish(runtime, root_id)
    assert (await outputs(runtime, waiter.id))["callback_data"] == {"items": [1, 2, 3]}


async def test_callback_saying_fail_fails_the_node(runtime: Any) -> None:
    waiter = activity("callback", uid("cb"))
    after = activity("echo", uid("after"))
    root_id = await start(runtime, build_tree(_chain(waiter, after)))
    version = await waiting_version(runtime, waiter.id)
    res = await deliver(runtime, waiter.id, version, {"fail": True})
    assert res.result, res.message

    message = await finish(runtime, root_id, states.FAILED)
    assert waiter.id in message
    assert await state_of(runtime, waiter.id) == states.FAILED
    assert await state_of(runtime, after.id) is None
    assert await state_of(runtime, root_id) == states.RUNNING
    out = await outputs(runtime, waiter.id)
    assert out["ex_data"] == "callback said fail"
    assert out["_result"] is False
    assert out["callback_data"] == {"fail": True}


async def test_callback_to_unknown_or_non_waiting_nodes_is_refused(runtime: Any) -> None:
    res = await api.callback(runtime, uid("nope"), "v1", {})
    assert res.result is False
    assert res.message

    plain_node = activity("echo", uid("echo"))
    waiter = activity("callback", uid("cb"))
    root_id = await start(runtime, build_tree(_chain(plain_node, waiter)))
    await waiting_version(runtime, waiter.id)
    echo_entry = await entry_of(runtime, plain_node.id)
    assert echo_entry is not None
    res = await api.callback(runtime, plain_node.id, echo_entry["version"], {})
    assert res.result is False
    res = await api.callback(runtime, root_id, "v1", {})
    assert res.result is False


# -- multiple callbacks -------------------------------------------------------------------


async def test_multi_callback_waits_until_finish_schedule(runtime: Any) -> None:
    waiter = activity("multi_callback", uid("multi"), count=3)
    root_id = await start(runtime, build_tree(_chain(waiter)))
    await wait_state(runtime, waiter.id, states.RUNNING)

    async def received() -> list[Any]:
        return list((await outputs(runtime, waiter.id)).get("received") or [])

    await wait_for(lambda: _has_key(runtime, waiter.id, "received"), what="execute done")
    version = str((await entry_of(runtime, waiter.id) or {})["version"])
    for n in (1, 2):
        res = await deliver(runtime, waiter.id, version, {"n": n})
        assert res.result, res.message

    async def two_received() -> bool:
        return len(await received()) == 2

    await wait_for(two_received, what="two callbacks handled")
    assert await state_of(runtime, waiter.id) == states.RUNNING

    res = await deliver(runtime, waiter.id, version, {"n": 3})
    assert res.result, res.message
    await finish(runtime, root_id)
    assert await received() == [{"n": 1}, {"n": 2}, {"n": 3}]
    assert (await outputs(runtime, waiter.id))["_result"] is True

    late = await api.callback(runtime, waiter.id, version, {"n": 4})
    assert late.result is False


async def _has_key(runtime: Any, node_id: str, key: str) -> bool:
    return key in await outputs(runtime, node_id)


# -- durability ----------------------------------------------------------------------------


async def test_a_reopened_runtime_resumes_callbacks_and_reruns_interrupted_nodes(
    runtime_factory: Any,
) -> None:
    if runtime_factory.kind == "sqlite-memory":
        pytest.skip("an in-memory database does not outlive its runtime")
    components.EXECUTIONS.clear()
    waiter, after_cb = activity("callback", uid("cb")), activity("echo", uid("after_cb"))
    before, gate = activity("echo", uid("before")), activity("gate", uid("gate"))
    after_gate = activity("echo", uid("after_gate"))
    cb_tree = build_tree(_chain(waiter, after_cb))
    gate_tree = build_tree(_chain(before, gate, after_gate))

    first = await runtime_factory()
    try:
        async with first:
            cb_root = await start(first, cb_tree)
            gate_root = await start(first, gate_tree)
            version = await waiting_version(first, waiter.id)
            await wait_state(first, gate.id, states.RUNNING)

            async def gate_entered() -> bool:
                return components.EXECUTIONS[gate.id] == 1

            await wait_for(gate_entered, what="the gate's execute")
        # The runtime closed while the gate was blocked: that execution is lost.
        assert components.EXECUTIONS[gate.id] == 1
        open_gate(gate.id)  # the re-run passes at once

        second = await runtime_factory()
        async with second:
            assert await state_of(second, waiter.id) == states.RUNNING
            res = await deliver(second, waiter.id, version, {"after": "restart"})
            assert res.result, res.message
            await finish(second, cb_root)
            await finish(second, gate_root)

            assert (await outputs(second, waiter.id))["callback_data"] == {"after": "restart"}
            assert (await outputs(second, gate.id))["passed"] is True
            assert await state_of(second, after_gate.id) == states.FINISHED
            assert await state_of(second, after_cb.id) == states.FINISHED
    finally:
        await drop_schema(first)

    assert components.EXECUTIONS[waiter.id] == 1  # waiting is not re-executed
    assert components.EXECUTIONS[before.id] == 1  # FINISHED before the close: not again
    assert components.EXECUTIONS[gate.id] == 2  # RUNNING at the close: at least once more
    assert components.EXECUTIONS[after_gate.id] == 1
    assert components.EXECUTIONS[after_cb.id] == 1


async def test_an_accepted_callback_survives_a_close(runtime_factory: Any) -> None:
    if runtime_factory.kind == "sqlite-memory":
        pytest.skip("an in-memory database does not outlive its runtime")
    waiter = activity("callback", uid("cb"))
    tree = build_tree(_chain(waiter))
    first = await runtime_factory()
    try:
        async with first:
            root_id = await start(first, tree)
            version = await waiting_version(first, waiter.id)
            res = await deliver(first, waiter.id, version, {"durable": True})
            assert res.result, res.message
        second = await runtime_factory()
        async with second:
            await finish(second, root_id)
            assert (await outputs(second, waiter.id))["callback_data"] == {"durable": True}
            again = await api.callback(second, waiter.id, version, {"durable": False})
            assert again.result is False
    finally:
        await drop_schema(first)


async def test_multi_callbacks_delivered_back_to_back_are_all_handled_in_order(
    runtime: Any,
) -> None:
    waiter = activity("multi_callback", uid("multi"), count=6)
    root_id = await start(runtime, build_tree(_chain(waiter)))
    await wait_for(lambda: _has_key(runtime, waiter.id, "received"), what="execute done")
    version = str((await entry_of(runtime, waiter.id) or {})["version"])
    for n in range(6):
        res = await deliver(runtime, waiter.id, version, {"n": n})
        assert res.result, res.message
    await finish(runtime, root_id)
    received = (await outputs(runtime, waiter.id))["received"]
    assert received == [{"n": n} for n in range(6)]


async def test_callback_failure_on_an_error_ignorable_node_is_ignored(runtime: Any) -> None:
    waiter = activity("callback", uid("cb"))
    waiter.error_ignorable = True
    after = activity("echo", uid("after"))
    root_id = await start(runtime, build_tree(_chain(waiter, after)))
    version = await waiting_version(runtime, waiter.id)
    res = await deliver(runtime, waiter.id, version, {"fail": True})
    assert res.result, res.message
    await finish(runtime, root_id)
    entry = await entry_of(runtime, waiter.id)
    assert entry is not None
    assert entry["state"] == states.FINISHED
    assert entry["error_ignored"] is True
    assert (await outputs(runtime, waiter.id))["_result"] is False
    assert await state_of(runtime, after.id) == states.FINISHED


async def test_a_reopened_runtime_joins_parallel_branches_and_retries_failed_nodes(
    runtime_factory: Any,
) -> None:
    if runtime_factory.kind == "sqlite-memory":
        pytest.skip("an in-memory database does not outlive its runtime")
    gate = activity("gate", uid("gate"))
    b1, b2 = activity("echo", uid("b1")), activity("echo", uid("b2"))
    after = activity("echo", uid("after"))
    b1.extend(b2)
    s, pg, cg = EmptyStartEvent(), ParallelGateway(), ConvergeGateway(id=uid("cg"))
    s.extend(pg).connect(gate, b1).to(pg).converge(cg).extend(after).extend(EmptyEndEvent())
    parallel_tree = build_tree(s)
    bad = activity("fail", uid("bad"))
    failing_tree = build_tree(_chain(bad))

    first = await runtime_factory()
    try:
        async with first:
            parallel_root = await start(first, parallel_tree)
            failing_root = await start(first, failing_tree)
            await wait_state(first, b2.id, states.FINISHED)
            await wait_state(first, gate.id, states.RUNNING)
            await finish(first, failing_root, states.FAILED)
        open_gate(gate.id)

        second = await runtime_factory()
        async with second:
            await finish(second, parallel_root)
            found = (await api.get_pipeline_states(second, parallel_root)).data
            assert found is not None
            children = found[parallel_root]["children"]
            assert children[cg.id]["loop"] == 1
            assert children[after.id]["state"] == states.FINISHED

            assert await state_of(second, bad.id) == states.FAILED
            res = await api.retry_node(second, bad.id, data={"ok": True})
            assert res.result, res.message
            await finish(second, failing_root)
    finally:
        await drop_schema(first)

    assert components.EXECUTIONS[b1.id] == 1
    assert components.EXECUTIONS[b2.id] == 1
    assert components.EXECUTIONS[gate.id] == 2
    assert components.EXECUTIONS[after.id] == 1
    assert components.EXECUTIONS[bad.id] == 2


async def test_a_waiting_activity_lets_go_of_what_only_its_execute_needed(runtime: Any) -> None:
    """While it waits for its callback, the node holds no service or data of its execute
    (a process may wait for days, and every waiting one holds its own), and no service
    is made for the wait itself: one for execute, one for the callback's schedule."""
    import gc

    components.WATCHED_MADE.clear()
    waiter = activity("watched_callback", uid("cb"), x=1)
    root_id = await start(runtime, build_tree(_chain(waiter)))
    version = await waiting_version(runtime, waiter.id)
    gc.collect()
    service, inputs = (ref() for ref in components.EXECUTE_REFS.pop(waiter.id))
    assert service is None, "the execute's service outlived it"
    assert inputs is None, "the execute's data outlived it"
    res = await deliver(runtime, waiter.id, version, {"answer": 1})
    assert res.result, res.message
    await finish(runtime, root_id)
    assert components.WATCHED_MADE["services"] == 2
