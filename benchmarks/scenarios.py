"""The scenarios of BENCHMARKS.md (S1-S6) as pipeline trees and drivers."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio

from aiobamboo import api
from aiobamboo.builder import (
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
from aiobamboo.component import Component, ComponentLibrary, Service

library = ComponentLibrary()


class Noop(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.ok = 1
        return True


class Waiter(Service):
    __need_schedule__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.ok = 1
        return True


class Increment(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        count = data.get_one_of_inputs("count", 0)
        # The first iteration sees the unrendered "${count}": no value exists yet.
        data.outputs.count = (count if isinstance(count, int) else 0) + 1
        return True


for _code, _service in (("bench_noop", Noop), ("bench_wait", Waiter), ("bench_inc", Increment)):
    library.register(
        type(
            f"{_service.__name__}Component",
            (Component,),
            {"code": _code, "name": _code, "bound_service": _service, "auto_register": False},
        )
    )


def _noop(**inputs: Any) -> ServiceActivity:
    act = ServiceActivity(component_code="bench_noop")
    for key, value in inputs.items():
        setattr(act.component.inputs, key, value)
    return act


def chain(n: int) -> tuple[dict[str, Any], int]:
    """S1: start -> n activities -> end."""
    start = EmptyStartEvent()
    node: Any = start
    for _ in range(n):
        node = node.extend(_noop())
    node.extend(EmptyEndEvent())
    return build_tree(start), n + 2


def seventeen() -> tuple[dict[str, Any], int]:
    """S2: the original benchmark's 17-node shape with splice inputs and a sub-process."""

    def act() -> ServiceActivity:
        return _noop(
            c1=Var(type=Var.SPLICE, value="${constant_1}"),
            c2=Var(type=Var.SPLICE, value="${constant_2}"),
        )

    sub_start = EmptyStartEvent()
    sub_start.extend(act()).extend(act()).extend(EmptyEndEvent())
    sub = SubProcess(
        start=sub_start,
        data=Data(
            inputs={
                "${constant_1}": Var(type=Var.PLAIN, value=""),
                "${constant_2}": Var(type=Var.PLAIN, value=""),
            }
        ),
        params=Params(
            {
                "${constant_1}": Var(type=Var.SPLICE, value="${constant_1}"),
                "${constant_2}": Var(type=Var.SPLICE, value="${constant_2}"),
            }
        ),
    )
    start = EmptyStartEvent()
    pg, cg1 = ParallelGateway(), ConvergeGateway()
    eg = ExclusiveGateway(
        conditions={0: '"${constant_1}" == "value_1"', 1: '"${constant_1}" != "value_1"'}
    )
    cg2 = ConvergeGateway()
    (
        start.extend(act())
        .extend(act())
        .extend(sub)
        .extend(pg)
        .connect(act(), act(), act())
        .to(pg)
        .converge(cg1)
        .extend(eg)
        .connect(act(), act())
        .to(eg)
        .converge(cg2)
        .extend(EmptyEndEvent())
    )
    data = Data(
        inputs={
            "${constant_1}": Var(type=Var.PLAIN, value="value_1"),
            "${constant_2}": Var(type=Var.PLAIN, value="value_2"),
        }
    )
    return build_tree(start, data=data), 17


def fan(n: int) -> tuple[dict[str, Any], int]:
    """S3: start -> parallel gateway -> n one-activity branches -> converge -> end."""
    start = EmptyStartEvent()
    pg = ParallelGateway()
    start.extend(pg).connect(*[_noop() for _ in range(n)]).to(pg).converge(
        ConvergeGateway()
    ).extend(EmptyEndEvent())
    return build_tree(start), n + 4


def single(code: str = "bench_noop") -> tuple[dict[str, Any], int]:
    """S4/S5: start -> one activity -> end."""
    start = EmptyStartEvent()
    start.extend(ServiceActivity(component_code=code)).extend(EmptyEndEvent())
    return build_tree(start), 3


def loop(iterations: int) -> tuple[dict[str, Any], int]:
    """S6: a counter loop through an exclusive gateway, with a 3-level sub-process in its body."""

    def nested(depth: int) -> SubProcess:
        start = EmptyStartEvent()
        body: Any = start.extend(_noop())
        if depth > 1:
            body = body.extend(nested(depth - 1))
        body.extend(EmptyEndEvent())
        return SubProcess(start=start)

    start = EmptyStartEvent()
    converge = ConvergeGateway()
    inc = ServiceActivity(component_code="bench_inc")
    inc.component.inputs.count = Var(type=Var.SPLICE, value="${count}")
    gate = ExclusiveGateway(
        conditions={0: f"${{count}} < {iterations}", 1: f"${{count}} >= {iterations}"}
    )
    start.extend(converge).extend(inc).extend(nested(3)).extend(gate)
    gate.connect(converge, EmptyEndEvent())
    data = Data(
        inputs={"${count}": NodeOutput(type=Var.PLAIN, source_act=inc.id, source_key="count")}
    )
    tree = build_tree(start, data=data)
    # per iteration: converge, inc, 3 sub-processes (each: start, act, end + the node), gateway
    return tree, 2 + iterations * (3 + 3 * 4)


Driver = Callable[[Any], Awaitable[dict[str, Any]]]

#: Concurrent callback senders in S5.
CALLBACK_CLIENTS = 100


async def _start(runtime: Any, tree: dict[str, Any], **options: Any) -> None:
    result = await api.run_pipeline(runtime, tree, **options)
    assert result.result, result.message


async def _start_all(runtime: Any, trees: list[dict[str, Any]], **options: Any) -> None:
    """Start every pipeline at once: concurrent clients, as "started at once" means."""
    async with anyio.create_task_group() as tg:
        for tree in trees:
            tg.start_soon(functools.partial(_start, runtime, tree, **options))


async def _run_all(runtime: Any, trees: list[dict[str, Any]], **options: Any) -> float:
    began = time.perf_counter()
    await _start_all(runtime, trees, **options)
    for tree in trees:
        waited = await api.wait_pipeline(runtime, tree["id"], timeout=600)
        assert waited.data == "FINISHED", waited.message
    return time.perf_counter() - began


async def s1(runtime: Any) -> dict[str, Any]:
    tree, nodes = chain(1000)
    return {"seconds": await _run_all(runtime, [tree]), "nodes": nodes}


async def s2(runtime: Any) -> dict[str, Any]:
    built = [seventeen() for _ in range(100)]
    seconds = await _run_all(runtime, [t for t, _ in built])
    return {"seconds": seconds, "nodes": sum(n for _, n in built)}


async def s3(runtime: Any) -> dict[str, Any]:
    tree, nodes = fan(100)
    return {"seconds": await _run_all(runtime, [tree]), "nodes": nodes}


async def s4(runtime: Any) -> dict[str, Any]:
    built = [single() for _ in range(1000)]
    seconds = await _run_all(runtime, [t for t, _ in built])
    return {"seconds": seconds, "nodes": sum(n for _, n in built)}


async def s5(runtime: Any, count: int = 10_000) -> dict[str, Any]:
    built = [single("bench_wait") for _ in range(count)]
    began = time.perf_counter()
    await _start_all(runtime, [t for t, _ in built])
    node_ids = [next(iter(tree["activities"])) for tree, _ in built]
    versions: list[str] = []
    for tree, node_id in zip((t for t, _ in built), node_ids, strict=True):
        while True:
            children = await api.get_children_states(runtime, tree["id"])
            state = (children.data or {}).get(tree["id"], {}).get("children", {}).get(node_id)
            if state and state["state"] == "RUNNING":
                versions.append(state["version"])
                break
            await anyio.sleep(0.01)
    all_waiting = time.perf_counter()
    latencies: list[float] = []

    async def deliver(chunk: list[int]) -> None:
        for i in chunk:
            t0 = time.perf_counter()
            result = await api.callback(runtime, node_ids[i], versions[i], {"n": i})
            assert result.result, result.message
            latencies.append(time.perf_counter() - t0)

    # CALLBACK_CLIENTS concurrent clients deliver the callbacks (a webhook receiver
    # serving that many requests at once); each waits until its callback is durable.
    async with anyio.create_task_group() as tg:
        for k in range(CALLBACK_CLIENTS):
            tg.start_soon(deliver, list(range(k, count, CALLBACK_CLIENTS)))
    delivered = time.perf_counter()
    for tree, _ in built:
        waited = await api.wait_pipeline(runtime, tree["id"], timeout=600)
        assert waited.data == "FINISHED", waited.message
    finished = time.perf_counter()
    latencies.sort()
    return {
        "seconds": finished - began,
        "nodes": sum(n for _, n in built),
        "callbacks_per_s": count / (delivered - all_waiting),
        "callback_p50_ms": latencies[len(latencies) // 2] * 1000,
        "callback_p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "start_to_all_waiting_s": all_waiting - began,
    }


async def s6(runtime: Any) -> dict[str, Any]:
    tree, nodes = loop(200)
    seconds = await _run_all(runtime, [tree], cycle_tolerate=True)
    return {"seconds": seconds, "nodes": nodes}


SCENARIOS: dict[str, Driver] = {"S1": s1, "S2": s2, "S3": s3, "S4": s4, "S5": s5, "S6": s6}
