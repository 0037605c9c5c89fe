"""Conformance checks for runtimes: ``await check_runtime(factory)``.

A third runtime proves it keeps the contract the engine relies on by passing
these checks. ``factory()`` must return a fresh, unopened runtime on the same
storage every time it is called (the checks open and close several, to test
that nothing is lost between them)::

    from aiobamboo.testing import check_runtime

    async def test_my_runtime(tmp_path):
        await check_runtime(lambda: MyRuntime(tmp_path / "db"))

Each check runs pipelines through :mod:`aiobamboo.api` with components of its
own (a private :class:`~aiobamboo.component.ComponentLibrary`), so the checks
need no set-up. They raise ``AssertionError`` naming every failed check.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import anyio

from .. import api, states
from ..builder import (
    ConvergeGateway,
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    NodeOutput,
    ParallelGateway,
    Params,
    ServiceActivity,
    SubProcess,
    Var,
    build_tree,
)
from ..component import Component, ComponentLibrary, Service
from ._roles import ROLE_CHECKS

__all__ = ["CHECKS", "ROLES", "check_runtime"]

RuntimeFactory = Callable[..., Any]


class _Echo(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.echo = data.get_one_of_inputs("text")
        return True


class _Fail(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        return bool(data.get_one_of_inputs("ok", False))


class _Wait(Service):
    __need_schedule__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.got = callback_data
        return True


def _library() -> ComponentLibrary:
    library = ComponentLibrary()
    for code, service in (("check_echo", _Echo), ("check_fail", _Fail), ("check_wait", _Wait)):
        library.register(
            type(
                f"{service.__name__}Component",
                (Component,),
                {"code": code, "name": code, "bound_service": service, "auto_register": False},
            )
        )
    return library


LIBRARY = _library()


T = TypeVar("T")


def _data(result: api.EngineAPIResult[T]) -> T:
    assert result.result, result.message
    assert result.data is not None, "the call returned no data"
    return result.data


def _uid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


async def _wait_for(runtime: Any, pipeline_id: str, expected: str, within: float = 20.0) -> None:
    result = await api.wait_pipeline(runtime, pipeline_id, timeout=within)
    assert result.result, result.message
    assert result.data == expected, (
        f"pipeline is {result.data}, expected {expected}: {result.message}"
    )


async def _version_of(runtime: Any, root_id: str, node_id: str, within: float = 20.0) -> str:
    with anyio.fail_after(within):
        while True:
            tree = (await api.get_pipeline_states(runtime, root_id)).data or {}
            node = tree.get(root_id, {}).get("children", {}).get(node_id)
            if node and node["state"] == states.RUNNING:
                return str(node["version"])
            await anyio.sleep(0.01)


async def check_every_node_kind(factory: RuntimeFactory) -> None:
    """Events, activities, a sub-process, parallel and exclusive gateways, data flow."""
    sub_start = EmptyStartEvent()
    inner = ServiceActivity(component_code="check_echo")
    inner.component.inputs.text = Var(type=Var.SPLICE, value="${word}")
    sub_start.extend(inner).extend(EmptyEndEvent())
    sub = SubProcess(
        start=sub_start,
        data=Data(inputs={"${word}": Var(type=Var.PLAIN, value="")}),
        params=Params({"${word}": Var(type=Var.SPLICE, value="${greeting}")}),
    )
    start, pg, eg = (
        EmptyStartEvent(),
        ParallelGateway(),
        ExclusiveGateway(conditions={0: "${greeting} == 'hi'", 1: "${greeting} != 'hi'"}),
    )
    first = ServiceActivity(component_code="check_echo")
    first.component.inputs.text = Var(type=Var.SPLICE, value="${greeting}")
    chosen, other = (
        ServiceActivity(component_code="check_echo"),
        ServiceActivity(component_code="check_echo"),
    )
    start.extend(first).extend(pg).connect(sub, ServiceActivity(component_code="check_echo")).to(
        pg
    ).converge(ConvergeGateway()).extend(eg).connect(chosen, other).to(eg).converge(
        ConvergeGateway()
    ).extend(EmptyEndEvent())
    data = Data(
        inputs={
            "${greeting}": Var(type=Var.PLAIN, value="hi"),
            "${said}": NodeOutput(type=Var.PLAIN, source_act=first.id, source_key="echo"),
        },
        outputs=["${said}"],
    )
    tree = build_tree(start, data=data)
    async with factory(components=LIBRARY) as runtime:
        assert (await api.run_pipeline(runtime, tree)).result
        await _wait_for(runtime, tree["id"], states.FINISHED)
        found = _data(await api.get_pipeline_states(runtime, tree["id"]))[tree["id"]]["children"]
        assert found[chosen.id]["state"] == states.FINISHED
        assert other.id not in found, "the branch not taken has a state"
        inner_out = _data(await api.get_execution_data_outputs(runtime, inner.id))
        assert inner_out["echo"] == "hi", inner_out
        root_out = _data(await api.get_execution_data_outputs(runtime, tree["id"]))
        assert root_out == {"${said}": "hi"}, root_out


async def check_failure_retry_and_histories(factory: RuntimeFactory) -> None:
    """A failure stays at its node; retry with new data; a history row is kept."""
    start = EmptyStartEvent()
    node = ServiceActivity(component_code="check_fail")
    start.extend(node).extend(EmptyEndEvent())
    tree = build_tree(start)
    async with factory(components=LIBRARY) as runtime:
        assert (await api.run_pipeline(runtime, tree)).result
        await _wait_for(runtime, tree["id"], states.FAILED)
        retried = await api.retry_node(runtime, node.id, data={"ok": True})
        assert retried.result, retried.message
        await _wait_for(runtime, tree["id"], states.FINISHED)
        histories = _data(await api.get_node_histories(runtime, node.id))
        assert len(histories) == 1, histories
        assert histories[0]["retry"] == 0, histories
        refused = await api.retry_node(runtime, node.id)
        assert not refused.result, "a FINISHED node was retried"
        assert refused.message


async def check_restart_keeps_callbacks(factory: RuntimeFactory) -> None:
    """A pipeline waiting for a callback survives closing and reopening the runtime."""
    start = EmptyStartEvent()
    node = ServiceActivity(component_code="check_wait")
    start.extend(node).extend(EmptyEndEvent())
    tree = build_tree(start)
    async with factory(components=LIBRARY) as runtime:
        assert (await api.run_pipeline(runtime, tree)).result
        version = await _version_of(runtime, tree["id"], node.id)
    async with factory(components=LIBRARY) as runtime:
        with anyio.fail_after(20):
            while True:
                sent = await api.callback(runtime, node.id, version, {"after": "restart"})
                if sent.result:
                    break
                assert "sleep process" in sent.message, sent.message
                await anyio.sleep(0.01)
        await _wait_for(runtime, tree["id"], states.FINISHED)
        outputs = _data(await api.get_execution_data_outputs(runtime, node.id))
        assert outputs["got"] == {"after": "restart"}, outputs


async def check_refusals(factory: RuntimeFactory) -> None:
    """Duplicate pipelines and unknown ids are refused with a reason."""
    start = EmptyStartEvent()
    start.extend(ServiceActivity(component_code="check_echo")).extend(EmptyEndEvent())
    tree = build_tree(start)
    async with factory(components=LIBRARY) as runtime:
        assert (await api.run_pipeline(runtime, tree)).result
        again = await api.run_pipeline(runtime, tree)
        assert not again.result, "a pipeline id was accepted twice"
        assert "already exists" in again.message, again.message
        unknown = await api.pause_pipeline(runtime, _uid("p"))
        assert not unknown.result, "an unknown pipeline was paused"
        assert "does not exist" in unknown.message, unknown.message
        unknown_states = await api.get_pipeline_states(runtime, _uid("p"))
        assert not unknown_states.result, "the states of an unknown pipeline were answered"
        assert "does not exist" in unknown_states.message, unknown_states.message
        await _wait_for(runtime, tree["id"], states.FINISHED)


async def check_many_at_once(factory: RuntimeFactory) -> None:
    """Fifty pipelines started together all finish (commits shared between them)."""
    trees = []
    for _ in range(50):
        start = EmptyStartEvent()
        start.extend(ServiceActivity(component_code="check_echo")).extend(EmptyEndEvent())
        trees.append(build_tree(start))
    async with factory(components=LIBRARY) as runtime:
        async with anyio.create_task_group() as tg:
            for tree in trees:
                tg.start_soon(api.run_pipeline, runtime, tree)
        for tree in trees:
            await _wait_for(runtime, tree["id"], states.FINISHED)


CHECKS: tuple[Callable[[RuntimeFactory], Awaitable[None]], ...] = (
    check_every_node_kind,
    check_failure_retry_and_histories,
    check_restart_keeps_callbacks,
    check_refusals,
    check_many_at_once,
)


#: Every role a runtime is checked in, in the order a new runtime is written.
ROLES: tuple[str, ...] = (*ROLE_CHECKS, "engine")


async def check_runtime(factory: RuntimeFactory, *, roles: Iterable[str] = ROLES) -> None:
    """Run the conformance checks of ``roles``; raise AssertionError listing those that failed.

    ``factory(**options)`` must return a fresh, unopened runtime (an
    :class:`~aiobamboo.host.Engine`) on the same storage each time it is
    called; the checks pass ``components=`` and ``worker=``. The roles:

    - ``journal``, ``read model``, ``coordination``, ``event log``, ``retention``: the
      store's protocols, called directly on ``runtime.store``;
    - ``engine``: pipelines run through :mod:`aiobamboo.api` (every role at once).

    A new runtime can be written one role at a time:
    ``await check_runtime(factory, roles=["journal"])`` first.
    """
    selected = list(roles)
    unknown = [r for r in selected if r not in ROLES]
    if unknown:
        raise ValueError(f"unknown roles {unknown}; the roles are {list(ROLES)}")
    checks = [
        (role, check)
        for role in selected
        for check in (CHECKS if role == "engine" else ROLE_CHECKS[role])
    ]
    failures = []
    for role, check in checks:
        began = time.monotonic()
        try:
            await check(factory)
        except Exception as exc:
            failures.append(f"{role}: {check.__name__} ({time.monotonic() - began:.1f} s): {exc!r}")
    if failures:
        raise AssertionError("runtime conformance failed:\n" + "\n".join(failures))
