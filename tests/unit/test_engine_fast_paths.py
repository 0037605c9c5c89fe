"""The engine's cheap paths: run_pipeline's start slots, and rows built positionally."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest


def _bare_run() -> Any:
    """A run of start -> end held by no scheduler or storage: its steps are called by hand."""
    from aiobamboo.engine._run import Run
    from aiobamboo.engine._spec import parse_tree

    tree = {
        "id": "r",
        "start_event": {"id": "s", "type": "EmptyStartEvent", "incoming": "", "outgoing": "f"},
        "end_event": {"id": "e", "type": "EmptyEndEvent", "incoming": ["f"], "outgoing": ""},
        "activities": {},
        "gateways": {},
        "flows": {"f": {"id": "f", "source": "s", "target": "e", "is_default": False}},
        "data": {"inputs": {}, "outputs": []},
    }
    return Run(None, parse_tree(tree, {}), {})  # type: ignore[arg-type]


async def test_start_slots_serve_waiters_in_order_and_pass_on_a_cancelled_waiters_slot() -> None:
    from aiobamboo.engine._scheduler import _Slots

    slots = _Slots(1)
    order: list[str] = []
    release = anyio.Event()

    async def hold(name: str) -> None:
        async with slots:
            order.append(name)
            await release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold, "a")
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as gone:
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                async with slots:
                    pass
        cancelled = asyncio.ensure_future(hold("cancelled"))
        tg.start_soon(hold, "b")
        tg.start_soon(hold, "c")
        await anyio.wait_all_tasks_blocked()
        cancelled.cancel()
        release.set()
    assert order == ["a", "b", "c"]
    assert slots._free == 1


def test_a_state_row_has_each_field_of_its_state() -> None:
    import attrs

    from aiobamboo import states
    from aiobamboo.engine._run import State

    st = State("n", "r", "p", "name", states.RUNNING, "v1", 2, 3, 4, True, True, 5.0, 6.0, 7.0)
    row = st.row()
    for field in attrs.fields(type(row)):
        assert getattr(row, field.name) == getattr(st, field.name), field.name
    assert type(row.state) is str


def test_a_process_row_has_each_field_of_its_process() -> None:
    import attrs

    from aiobamboo.engine._run import P_JOINING, Process

    run = _bare_run()
    proc = Process("c", "p", "s", "e", ["r", "sub"], P_JOINING, "sub", ["c1"], ["c1"])
    run.put_process(proc)
    row = run.batch.processes["c"]
    assert row.root_id == "r"
    for field in attrs.fields(type(row)):
        if field.name != "root_id":
            value = getattr(proc, field.name)
            expected = tuple(value) if isinstance(value, list) else value
            assert getattr(row, field.name) == expected, field.name
    run.put_exec_data("s", {"i": 1}, {"o": 2})
    assert attrs.astuple(run.batch.execution_data["s"]) == ("s", "r", '{"i":1}', '{"o":2}')


async def test_hydrate_resolves_variables_with_and_without_references_alike() -> None:
    from aiobamboo.component import ComponentLibrary
    from aiobamboo.engine._context import hydrate
    from aiobamboo.engine._env import Env, Settings
    from aiobamboo.engine._spec import PLAIN, SPLICE, ContextVar

    run = _bare_run()
    env = Env(Settings(), ComponentLibrary())
    ctx = run.contexts["r"]
    ctx["${a}"] = ContextVar(PLAIN, 1)
    ctx["${b}"] = ContextVar(SPLICE, "text")
    # No variable references another: each is resolved, splice ones rendered.
    assert await hydrate(env, run, "r", ["a", "b", "missing"]) == {"a": 1, "b": "text"}
    ctx["${c}"] = ContextVar(SPLICE, "${b}-${a}")
    got = await hydrate(env, run, "r", ["c"])
    assert got == {"a": 1, "b": "text", "c": "text-1"}
    assert list(got) == ["a", "b", "c"]  # dependencies first


async def test_a_component_call_is_awaited_alike_whether_it_suspends_or_not() -> None:
    from aiobamboo.component import ComponentLibrary
    from aiobamboo.engine._env import Env, Settings, Step
    from aiobamboo.engine._run import Process
    from aiobamboo.engine.handlers._activity import _call_abandonable

    run = _bare_run()
    env = Env(Settings(), ComponentLibrary())
    proc = Process("p", None, "s", None, ["r"])
    step = Step(env, run, proc, run.spec.nodes["s"], run.new_state("s", "r", "RUNNING"))
    seen: list[Any] = []

    async def at_once(value: Any) -> Any:
        return value

    async def suspending(value: Any) -> Any:
        for _ in range(3):
            await asyncio.sleep(0)
            # A call in flight can be abandoned: it is registered meanwhile.
            seen.append(len(run.in_flight))
        try:
            await asyncio.sleep(0)
            raise KeyError("inner")
        except KeyError:
            pass  # what is thrown into it and caught stays inside
        return value

    async def raising_later() -> None:
        await asyncio.sleep(0)
        raise RuntimeError("after a suspension")

    async def raising_at_once() -> None:
        raise RuntimeError("before any suspension")

    assert await _call_abandonable(step, at_once, 0) == (False, None)
    assert await _call_abandonable(step, at_once, "x") == (True, None)
    assert await _call_abandonable(step, suspending, 0) == (False, None)
    assert await _call_abandonable(step, suspending, None) == (True, None)
    assert seen == [1] * 6
    assert not run.in_flight
    ok, ex_data = await _call_abandonable(step, raising_later)
    assert not ok
    assert ex_data is not None
    assert "after a suspension" in ex_data
    ok, ex_data = await _call_abandonable(step, raising_at_once)
    assert not ok
    assert ex_data is not None
    assert "before any suspension" in ex_data
    assert not run.in_flight
