"""Shared helpers for the operation, race and event suites.

Waiting is always by polling committed state under ``anyio.fail_after``;
the only fixed delay is :func:`grace`, used to assert that something does
*not* happen (there is no signal for an absence).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import attrs

from aiobamboo import api
from aiobamboo.api import EngineAPIResult
from aiobamboo.builder import (
    ConvergeGateway,
    Data,
    Element,
    EmptyEndEvent,
    EmptyStartEvent,
    ParallelGateway,
    ServiceActivity,
    SubProcess,
    Var,
    build_tree,
)

from . import components_ops as components_ops
from .components import EXECUTIONS, GATES

T = TypeVar("T")

#: Upper bound for any wait on progress; generous so slow CI never flakes.
TIMEOUT = 15.0
#: Poll period while waiting for committed state.
POLL = 0.002
#: How long "nothing happens" is observed for.
GRACE = 0.15

PLACEMENTS = ["top", "parallel", "subprocess"]


# -- results -------------------------------------------------------------------------


def ok(res: EngineAPIResult[Any]) -> Any:
    """Assert success and return ``data``."""
    assert res.result, f"expected success, got refusal: {res.message!r} ({res.exc!r})"
    assert res.message == "success"
    return res.data


def refused(res: EngineAPIResult[Any], *fragments: str) -> str:
    """Assert a refusal whose message contains every fragment; return the message."""
    assert not res.result, f"expected a refusal, got success (data={res.data!r})"
    assert isinstance(res.message, str)
    assert res.message, "a refusal must say why"
    assert not res.message.startswith("internal error"), res.message
    for fragment in fragments:
        assert fragment in res.message, f"{fragment!r} not in {res.message!r}"
    return res.message


# -- waiting ---------------------------------------------------------------------------


async def wait_until(
    check: Callable[[], Awaitable[T | None]], what: str, limit: float = TIMEOUT
) -> T:
    """Poll ``check`` until it returns something other than None/False."""
    last: Any = None
    try:
        with anyio.fail_after(limit):
            while True:
                last = await check()
                if last is not None and last is not False:
                    return last
                await anyio.sleep(POLL)
    except TimeoutError:
        raise AssertionError(f"timed out after {limit} s waiting for {what}") from None


async def grace() -> None:
    """Give the engine time to do something it must not do (absence checks only)."""
    await anyio.sleep(GRACE)


async def tree_states(runtime: Any, root_id: str) -> dict[str, dict[str, Any]]:
    """Every committed state entry of the run, the root's included, by node id."""
    data = ok(await api.get_pipeline_states(runtime, root_id))
    if not data:
        return {}
    root = data[root_id]
    entries = dict(root["children"])
    entries[root_id] = root
    return entries


async def entry(runtime: Any, root_id: str, node_id: str) -> dict[str, Any] | None:
    return (await tree_states(runtime, root_id)).get(node_id)


async def state_of(runtime: Any, root_id: str, node_id: str) -> str | None:
    found = await entry(runtime, root_id, node_id)
    return None if found is None else str(found["state"])


async def wait_state(runtime: Any, root_id: str, node_id: str, *wanted: str) -> dict[str, Any]:
    """Wait until ``node_id`` has one of the ``wanted`` states; return its entry."""

    async def check() -> dict[str, Any] | None:
        found = await entry(runtime, root_id, node_id)
        if found is not None and str(found["state"]) in wanted:
            return found
        return None

    return await wait_until(check, f"{node_id} to be {'/'.join(wanted)}")


async def wait_outcome(runtime: Any, root_id: str, expected: str | None = None) -> str:
    """``wait_pipeline``; asserts the resting state when ``expected`` is given."""
    res = await api.wait_pipeline(runtime, root_id, timeout=TIMEOUT)
    assert res.result, f"wait_pipeline refused: {res.message!r}"
    state = res.data
    if expected is not None:
        assert state == expected, f"pipeline rested {state} ({res.message}), expected {expected}"
    return str(state)


async def wait_executions(node_id: str, count: int = 1) -> None:
    """Wait until component code of ``node_id`` (components.EXECUTIONS) ran ``count`` times."""

    async def check() -> bool:
        return EXECUTIONS[node_id] >= count

    await wait_until(check, f"{node_id} to execute {count} time(s)")


async def wait_gate_entered(runtime: Any, root_id: str, node_id: str, count: int = 1) -> None:
    """Wait until a ``gate`` node is RUNNING and blocked in its component."""
    await wait_state(runtime, root_id, node_id, "RUNNING")
    await wait_executions(node_id, count)


def new_gate(node_id: str) -> anyio.Event:
    GATES[node_id] = event = anyio.Event()
    return event


def open_gate(node_id: str) -> None:
    GATES.setdefault(node_id, anyio.Event()).set()


async def outputs(runtime: Any, node_id: str) -> dict[str, Any]:
    return dict(ok(await api.get_execution_data_outputs(runtime, node_id)))


async def inputs(runtime: Any, node_id: str) -> dict[str, Any]:
    return dict(ok(await api.get_execution_data_inputs(runtime, node_id)))


async def histories(runtime: Any, node_id: str, loop: int = -1) -> list[dict[str, Any]]:
    return list(ok(await api.get_node_histories(runtime, node_id, loop)))


async def start(runtime: Any, tree: dict[str, Any], **options: Any) -> str:
    ok(await api.run_pipeline(runtime, tree, **options))
    return str(tree["id"])


async def stored_processes(runtime: Any, root_id: str) -> list[Any]:
    """The process rows in storage (runtime interface ``load_run``)."""
    snap = await runtime.store.load_run(root_id)
    return [] if snap is None else list(snap.processes)


# -- trees -----------------------------------------------------------------------------


def act(code: str, skippable: bool = True, retryable: bool = True, **inputs: Any) -> Any:
    """A ServiceActivity with plain inputs (a Var value is used as given)."""
    node = ServiceActivity(component_code=code, skippable=skippable, retryable=retryable)
    for key, value in inputs.items():
        node.component.inputs[key] = value if isinstance(value, Var) else Var(Var.PLAIN, value)
    return node


def chain(first: Element, *rest: Element) -> Element:
    """Link ``first -> rest[0] -> ...`` and return the last element."""
    current = first
    for elem in rest:
        current = current.extend(elem)
    return current


def linear(*elems: Element, data: Data | None = None) -> dict[str, Any]:
    """``start -> elems... -> end``."""
    s = EmptyStartEvent()
    chain(s, *elems).extend(EmptyEndEvent())
    return build_tree(s, data=data)


@attrs.define
class Placed:
    """A tree with the part under test at ``where``."""

    tree: dict[str, Any]
    where: str
    sub_id: str | None = None
    sibling_id: str | None = None

    @property
    def root_id(self) -> str:
        return str(self.tree["id"])


def place(
    where: str,
    build: Callable[[Element], Element],
    *,
    variables: dict[str, Any] | None = None,
) -> Placed:
    """Build a pipeline with the sub-graph ``build(prev) -> tail`` at ``where``.

    ``top``: directly in the root; ``parallel``: one branch of a parallel gateway
    whose other branch is an ``echo`` node; ``subprocess``: inside a SubProcess.
    ``variables`` (``{"${x}": Var}``) go into the data of the pipeline that holds
    the sub-graph.
    """
    data = Data(inputs=variables or {})
    s = EmptyStartEvent()
    if where == "top":
        build(s).extend(EmptyEndEvent())
        return Placed(build_tree(s, data=data), where)
    if where == "parallel":
        pg, cg = ParallelGateway(), ConvergeGateway()
        s.extend(pg)
        build(pg).extend(cg)
        sibling = act("echo", text="sibling")
        pg.extend(sibling).extend(cg)
        cg.extend(EmptyEndEvent())
        return Placed(build_tree(s, data=data), where, sibling_id=sibling.id)
    if where == "subprocess":
        sub_start = EmptyStartEvent()
        build(sub_start).extend(EmptyEndEvent())
        sub = SubProcess(start=sub_start, data=data)
        s.extend(sub).extend(EmptyEndEvent())
        return Placed(build_tree(s), where, sub_id=sub.id)
    raise ValueError(where)


def steps(*elems: Element) -> Callable[[Element], Element]:
    """A ``build`` for :func:`place` that chains ``elems`` after the given element."""

    def build(prev: Element) -> Element:
        return chain(prev, *elems)

    return build


# -- interleaving ----------------------------------------------------------------------


async def jitter(rng: random.Random, most: int = 6) -> None:
    """A random number of bare scheduling checkpoints; for one seed in three, also a random
    sub-10 ms pause, so that work which needs a storage round trip can overtake."""
    for _ in range(rng.randint(0, most)):
        await anyio.lowlevel.checkpoint()
    if rng.random() < 1 / 3:
        await anyio.sleep(rng.random() * 0.01)


async def race(
    rng: random.Random | None,
    *calls: Callable[[], Awaitable[EngineAPIResult[Any]]],
) -> list[EngineAPIResult[Any]]:
    """Start every call concurrently (after random checkpoints when ``rng`` is given)."""
    results: list[EngineAPIResult[Any] | None] = [None] * len(calls)

    async def one(index: int, call: Callable[[], Awaitable[EngineAPIResult[Any]]]) -> None:
        if rng is not None:
            await jitter(rng)
        results[index] = await call()

    async with anyio.create_task_group() as tg:
        for index, call in enumerate(calls):
            tg.start_soon(one, index, call)
    assert all(r is not None for r in results)
    return [r for r in results if r is not None]


def flow_id(tree: dict[str, Any], source: str, target: str) -> str:
    """The id of the flow ``source -> target``, searched in nested sub-process trees too."""
    for fid, flow in tree["flows"].items():
        if flow["source"] == source and flow["target"] == target:
            return str(fid)
    for node in tree["activities"].values():
        if node["type"] == "SubProcess":
            try:
                return flow_id(node["pipeline"], source, target)
            except LookupError:
                pass
    raise LookupError(f"no flow {source} -> {target}")
