"""Components that break the rules fail their node, never the engine."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiobamboo import api, states
from aiobamboo.builder import (
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    ExecutableEndEvent,
    ServiceActivity,
    Var,
    build_tree,
)
from aiobamboo.engine import Settings

from . import components_misbehaving as mis
from .components import EXECUTIONS, GATES
from .helpers import (
    activity,
    drop_schema,
    entry_of,
    finish,
    outputs,
    run,
    splice,
    start,
    uid,
    wait_for,
    wait_state,
)


def _linear(*nodes: Any, end: Any = None, data: Data | None = None) -> dict[str, Any]:
    s = EmptyStartEvent()
    tail = s
    for node in nodes:
        tail = tail.extend(node)
    tail.extend(end or EmptyEndEvent())
    return build_tree(s, data=data)


async def _still_runs(runtime: Any) -> None:
    """A new pipeline on the same runtime still runs to the end."""
    await run(runtime, _linear(activity("echo", uid("after"), text="still here")))


# -- BaseExceptions -----------------------------------------------------------------


@pytest.mark.parametrize("exc", sorted(mis.RAISES))
@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("where", ["execute", "schedule"])
async def test_a_base_exception_from_a_component_fails_its_node(
    runtime: Any, exc: str, mode: str, where: str
) -> None:
    node = activity(f"mis_raise_{mode}", uid("raising"), exc=exc, where=where)
    root_id = await start(runtime, _linear(node))
    await finish(runtime, root_id, states.FAILED)

    entry = await entry_of(runtime, node.id)
    assert entry is not None
    assert entry["state"] == states.FAILED
    ex_data = (await outputs(runtime, node.id))["ex_data"]
    assert mis.RAISES[exc][1] in ex_data
    assert ex_data.startswith("Traceback (most recent call last)")
    await _still_runs(runtime)


@pytest.mark.parametrize("exc", sorted(mis.RAISES))
@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("hook", ["pre_execute", "node_finish"])
async def test_a_base_exception_from_a_hook_is_logged_like_an_exception(
    runtime: Any, exc: str, mode: str, hook: str, caplog: pytest.LogCaptureFixture
) -> None:
    node = activity(f"mis_raise_{mode}", uid("hooked"), exc=exc, where=hook)
    with caplog.at_level(logging.ERROR, logger="aiobamboo.engine"):
        await run(runtime, _linear(node))
    logged = f"hook {hook} of node {node.id} raised"
    assert any(logged in r.getMessage() for r in caplog.records), caplog.text
    assert mis.RAISES[exc][1] in caplog.text
    await _still_runs(runtime)


@pytest.mark.parametrize("code", ["mis_exit_async", "mis_exit_sync"])
async def test_a_lazy_variable_raising_system_exit_fails_the_node_needing_it(
    runtime: Any, code: str
) -> None:
    needs = activity("echo", uid("needs"), text=splice("${bad}"))
    data = Data(inputs={"${bad}": Var(Var.LAZY, "x", custom_type=code)})
    root_id = await start(runtime, _linear(needs, data=data))
    await finish(runtime, root_id, states.FAILED)
    assert "SystemExit: 3" in (await outputs(runtime, needs.id))["ex_data"]
    await _still_runs(runtime)


@pytest.mark.parametrize("code", ["mis_ExitAsync", "mis_ExitSync"])
async def test_an_end_event_handler_raising_system_exit_fails_the_end_event(
    runtime: Any, code: str
) -> None:
    end = ExecutableEndEvent(type=code, id=uid("end"))
    root_id = await start(runtime, _linear(activity("echo", uid("a")), end=end))
    await finish(runtime, root_id, states.FAILED)
    assert (await entry_of(runtime, end.id) or {}).get("state") == states.FAILED
    assert "SystemExit: 3" in (await outputs(runtime, end.id))["ex_data"]
    await _still_runs(runtime)


async def test_a_node_raising_system_exit_when_resumed_after_a_restart_fails(
    runtime_factory: Any,
) -> None:
    if runtime_factory.kind == "sqlite-memory":
        pytest.skip("an in-memory database does not outlive its runtime")
    node = activity("mis_exit_on_resume", uid("resumed"))
    mis.RESUME_MODE[node.id] = "wait"
    first = await runtime_factory()
    try:
        async with first:
            root_id = await start(first, _linear(node))
            await wait_for(lambda: _executed(node.id), what="the first execution")
        # Closed mid-execute: the node is RUNNING in storage and runs again on open.
        mis.RESUME_MODE[node.id] = "exit"
        second = await runtime_factory()
        async with second:
            await finish(second, root_id, states.FAILED)
            assert EXECUTIONS[node.id] == 2
            assert "SystemExit: 3" in (await outputs(second, node.id))["ex_data"]
            await _still_runs(second)
    finally:
        GATES.pop(node.id, None)
        await drop_schema(first)


async def _executed(node_id: str) -> bool:
    return EXECUTIONS[node_id] > 0


async def test_the_api_refuses_work_once_the_engine_stopped(
    runtime_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_claim_loop(scheduler: Any) -> None:
        raise RuntimeError("claim loop broke")

    monkeypatch.setattr("aiobamboo.engine._scheduler.claim_loop", broken_claim_loop)
    rt = await runtime_factory()
    try:
        async with rt:

            async def refused() -> api.EngineAPIResult[None] | None:
                res = await api.run_pipeline(rt, _linear(activity("echo", uid("a"))))
                return None if res.result else res

            res = await wait_for(refused, what="a refusal")
            assert "stopped" in res.message
            assert "claim loop broke" in res.message
    finally:
        await drop_schema(rt)


async def test_a_worker_whose_engine_stopped_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiobamboo.worker import run_worker

    async def broken_claim_loop(scheduler: Any) -> None:
        raise RuntimeError("claim loop broke")

    monkeypatch.setattr("aiobamboo.engine._scheduler.claim_loop", broken_claim_loop)
    with anyio.fail_after(10):
        assert await run_worker(str(tmp_path / "worker.db")) == 1


# -- a loop node whose outputs cannot be collected ------------------------------------


async def test_a_loop_node_with_outputs_that_are_not_a_dict_fails_once(runtime: Any) -> None:
    looping = ServiceActivity(
        component_code="mis_loop_bad_outputs",
        id=uid("looping"),
        loop_config={"enable": True, "loop_times": 3, "outputs_key": "${collected}"},
    )
    root_id = await start(runtime, _linear(looping))
    await finish(runtime, root_id, states.FAILED)

    entry = await entry_of(runtime, looping.id)
    assert entry is not None
    assert (entry["state"], entry["loop"]) == (states.FAILED, 1)
    assert EXECUTIONS[looping.id] == 1
    out = await outputs(runtime, looping.id)
    assert out["_result"] is False
    assert 'outputs["outputs"]' in out["ex_data"]
    assert "must be a dict" in out["ex_data"]


# -- components that ignore cancellation ----------------------------------------------


@pytest.mark.parametrize("swallow", ["base", "cancelled"])
@pytest.mark.parametrize("follow_up", ["retry_node", "skip_node"])
async def test_forced_fail_of_a_component_ignoring_cancellation_keeps_the_node_operable(
    runtime_factory: Any, swallow: str, follow_up: str, caplog: pytest.LogCaptureFixture
) -> None:
    deaf = activity("mis_deaf", uid("deaf"), swallow=swallow)
    after = activity("echo", uid("after"))
    rt = await runtime_factory(settings=Settings(abandon_timeout=0.1))
    try:
        async with rt:
            root_id = await start(rt, _linear(deaf, after))
            await wait_for(lambda: _executed(deaf.id), what="the deaf execution")
            with caplog.at_level(logging.WARNING, logger="aiobamboo.engine"):
                res = await api.forced_fail_activity(rt, deaf.id, "stop")
                assert res.result, res.message
                await wait_state(rt, deaf.id, states.FAILED)
                res = await getattr(api, follow_up)(rt, deaf.id)
                assert res.result, res.message
                await finish(rt, root_id)
            assert "DeafService.execute of node " + deaf.id in caplog.text
            assert (await entry_of(rt, after.id) or {}).get("state") == states.FINISHED
            # The abandoned attempt never wrote its outputs.
            assert "late" not in await outputs(rt, deaf.id)
    finally:
        mis.RELEASED.add(deaf.id)
        await drop_schema(rt)


async def test_closing_a_runtime_does_not_wait_for_a_component_ignoring_cancellation(
    runtime_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    deaf = activity("mis_deaf", uid("deaf"), swallow="base")
    rt = await runtime_factory(settings=Settings(abandon_timeout=0.1))
    try:
        with caplog.at_level(logging.WARNING, logger="aiobamboo.engine"), anyio.fail_after(10):
            async with rt:
                await start(rt, _linear(deaf))
                await wait_for(lambda: _executed(deaf.id), what="the deaf execution")
                closing = anyio.current_time()
        assert anyio.current_time() - closing < 3
        assert "DeafService.execute of node " + deaf.id in caplog.text
    finally:
        mis.RELEASED.add(deaf.id)
        await drop_schema(rt)


# -- blocking the event loop ----------------------------------------------------------


async def test_a_component_blocking_the_event_loop_is_named_in_a_warning(
    runtime_factory: Any, caplog: pytest.LogCaptureFixture
) -> None:
    blocking = activity("mis_blocking", uid("blocking"), seconds=0.5)
    rt = await runtime_factory(settings=Settings(loop_stall_warning=0.1))
    try:
        async with rt:
            with caplog.at_level(logging.WARNING, logger="aiobamboo.engine"):
                await run(rt, _linear(blocking))
    finally:
        await drop_schema(rt)
    # Once per stall; a busy machine may add stalls of its own, naming nobody.
    named = f"BlockingService.execute of node {blocking.id}"
    stalls = [r.getMessage() for r in caplog.records if "event loop has not run" in r.getMessage()]
    assert len([m for m in stalls if named in m]) == 1, stalls


# -- what a return value means ----------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, states.FINISHED),
        (True, states.FINISHED),
        (1, states.FINISHED),
        ("no", states.FINISHED),
        ({"a": 1}, states.FINISHED),
        (False, states.FAILED),
        (0, states.FAILED),
        ("", states.FAILED),
        ([], states.FAILED),
    ],
)
@pytest.mark.parametrize("method", ["execute", "schedule"])
async def test_a_return_value_counts_by_its_truth_and_none_is_success(
    runtime: Any, value: Any, expected: str, method: str
) -> None:
    node = activity("mis_returns", uid("returns"), value=value, in_schedule=method == "schedule")
    root_id = await start(runtime, _linear(node))
    await finish(runtime, root_id, expected)
    assert (await outputs(runtime, node.id))["_result"] is (expected == states.FINISHED)
