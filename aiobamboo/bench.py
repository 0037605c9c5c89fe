"""The benchmark scenarios (S1-S7) as pipeline trees and drivers.

``aiobamboo bench`` runs them against a database of yours, and
``python -m benchmarks.run`` in the repository against fresh ones. Importing
this module registers the scenarios' components in
``ComponentLibrary.default`` too, so that a worker started with
``--import aiobamboo.bench`` runs them.
"""

from __future__ import annotations

import functools
import os
import secrets
import time
from array import array
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
    _component = type(
        f"{_service.__name__}Component",
        (Component,),
        {"code": _code, "name": _code, "bound_service": _service, "auto_register": False},
    )
    library.register(_component)
    ComponentLibrary.default.register(_component)


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


#: A scenario: called with an open runtime (S5 and S7 also take ``count=``).
Driver = Callable[..., Awaitable[dict[str, Any]]]

#: Concurrent callback senders in S5 and S7.
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
    """S5: ``count`` pipelines wait on a callback, then ``count`` callbacks from 100 clients.

    Driven as S7 (of which it is the small form): ``S7_STARTERS`` concurrent
    clients start the pipelines, each building its tree as it starts it, so
    that the peak RSS is the engine's. Building all the trees first and
    starting them from a task each, as this scenario once did, costs the
    benchmark's own process 72 MB at 10,000 pipelines (32 MB of trees, 40 MB
    of tasks) before the engine holds anything.
    """
    out = await s7(runtime, count=count)
    keys = (
        "seconds",
        "nodes",
        "callbacks_per_s",
        "callback_p50_ms",
        "callback_p99_ms",
        "start_to_all_waiting_s",
    )
    return {key: out[key] for key in keys}


async def s6(runtime: Any) -> dict[str, Any]:
    tree, nodes = loop(200)
    seconds = await _run_all(runtime, [tree], cycle_tolerate=True)
    return {"seconds": seconds, "nodes": nodes}


#: Pipelines S7 parks, then calls back.
S7_PIPELINES = 100_000
#: run_pipeline calls S7 keeps in flight while it starts its pipelines.
S7_STARTERS = 200
#: Digits of the pipeline's index in S7's node ids.
_INDEX_DIGITS = 7


def waiting_tree(tag: str, i: int) -> dict[str, Any]:
    """S7: start -> one callback activity -> end, with ids that end in the index ``i``.

    The ids carry the index so that the driver needs no table of them: at
    100,000 pipelines, a dict of ids and versions would weigh some 20 MB in
    the very process whose memory S7 measures.
    """
    suffix = f"{tag}{i:0{_INDEX_DIGITS}d}"
    start = EmptyStartEvent(id="s" + suffix)
    start.extend(ServiceActivity(id="a" + suffix, component_code="bench_wait")).extend(
        EmptyEndEvent(id="e" + suffix)
    )
    return build_tree(start, id="p" + suffix)


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmHWM, VmRSS) of process ``pid`` in MB: its peak resident set so far, and now."""
    found: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                found[key] = int(value.split()[0]) / 1024
    return found["VmHWM"], found["VmRSS"]


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time that process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _start_waiting(runtime: Any, tag: str, count: int) -> None:
    indices = iter(range(count))  # shared: each starter takes the next index

    async def starter() -> None:
        for i in indices:
            result = await api.run_pipeline(runtime, waiting_tree(tag, i))
            assert result.result, result.message

    async with anyio.create_task_group() as tg:
        for _ in range(min(S7_STARTERS, count)):
            tg.start_soon(starter)


async def _verify_finished(runtime: Any, tag: str, count: int) -> None:
    indices = iter(range(count))

    async def check() -> None:
        for i in indices:
            waited = await api.wait_pipeline(runtime, f"p{tag}{i:0{_INDEX_DIGITS}d}", timeout=60)
            assert waited.data == "FINISHED", (i, waited.message)

    async with anyio.create_task_group() as tg:
        for _ in range(min(CALLBACK_CLIENTS, count)):
            tg.start_soon(check)


async def s7(
    runtime: Any, count: int = S7_PIPELINES, engine_pid: int | None = None
) -> dict[str, Any]:
    """S7: ``count`` pipelines wait on a callback (parked), then ``count`` callbacks arrive.

    Waiting and finishing are seen through ``api.subscribe``: one stream of the
    committed events instead of a state query per pipeline. ``engine_pid`` is
    the process that runs the pipelines (this one when embedded), whose memory
    is read when a tenth of the pipelines wait, when all wait, and at the end.
    """
    pid = os.getpid() if engine_pid is None else engine_pid
    tag = secrets.token_hex(4)
    activity_prefix, root_prefix = "a" + tag, "p" + tag
    mark = max(1, count // 10)
    # Each version is "v" + 32 hex digits, kept as its 16 bytes.
    versions = bytearray(16 * count)
    seen = bytearray(count)
    out: dict[str, Any] = {"pipelines": count, "nodes": 3 * count}
    out["rss_before_mb"] = memory_mb(pid)[1]
    async with api.subscribe(runtime) as events:
        began = time.perf_counter()
        waiting = 0
        async with anyio.create_task_group() as tg:
            tg.start_soon(_start_waiting, runtime, tag, count)
            async for event in events:
                if (
                    event.kind != "state"
                    or event.state != "RUNNING"
                    or not event.node_id.startswith(activity_prefix)
                ):
                    continue
                i = int(event.node_id[-_INDEX_DIGITS:])
                if seen[i]:
                    continue
                version: str = event.data["version"]
                assert version.startswith("v"), version
                assert len(version) == 33, version
                seen[i] = 1
                versions[16 * i : 16 * i + 16] = bytes.fromhex(version[1:])
                waiting += 1
                if waiting == mark:
                    out["hwm_mark_mb"], out["rss_mark_mb"] = memory_mb(pid)
                if waiting == count:
                    break
        all_waiting = time.perf_counter()
        out["hwm_all_waiting_mb"], out["rss_all_waiting_mb"] = memory_mb(pid)
        cpu_before = cpu_seconds(pid), time.process_time()
        latencies = array("d")

        async def deliver(k: int) -> None:
            for i in range(k, count, CALLBACK_CLIENTS):
                node_id = f"{activity_prefix}{i:0{_INDEX_DIGITS}d}"
                version = "v" + versions[16 * i : 16 * i + 16].hex()
                t0 = time.perf_counter()
                result = await api.callback(runtime, node_id, version, {"n": i})
                assert result.result, result.message
                latencies.append(time.perf_counter() - t0)

        # As in S5: that many concurrent clients, each waiting until its callback is durable.
        async with anyio.create_task_group() as tg:
            for k in range(min(CALLBACK_CLIENTS, count)):
                tg.start_soon(deliver, k)
        delivered = time.perf_counter()
        finished = bytearray(count)
        done = 0
        async for event in events:
            if event.kind == "pipeline_finished" and event.root_id.startswith(root_prefix):
                i = int(event.root_id[-_INDEX_DIGITS:])
                if not finished[i]:
                    finished[i] = 1
                    done += 1
                    if done == count:
                        break
        all_finished = time.perf_counter()
    # CPU from the first callback until every pipeline finished, per pipeline: a
    # callback may be stored before its pipeline moves, so delivery alone says little.
    out["engine_cpu_us_per_callback"] = (cpu_seconds(pid) - cpu_before[0]) / count * 1e6
    out["own_cpu_us_per_callback"] = (time.process_time() - cpu_before[1]) / count * 1e6
    out["hwm_end_mb"], out["rss_end_mb"] = memory_mb(pid)
    # Checked through each pipeline's state, not only its event; outside the timings.
    await _verify_finished(runtime, tag, count)
    out["verify_s"] = time.perf_counter() - all_finished
    ordered = sorted(latencies)
    out.update(
        {
            "seconds": all_finished - began,
            "start_to_all_waiting_s": all_waiting - began,
            "callbacks_s": delivered - all_waiting,
            "callbacks_per_s": count / (delivered - all_waiting),
            "callback_p50_ms": ordered[len(ordered) // 2] * 1000,
            "callback_p99_ms": ordered[int(len(ordered) * 0.99)] * 1000,
            "delivered_to_all_finished_s": all_finished - delivered,
            "finished_per_s": count / (all_finished - all_waiting),
        }
    )
    return out


SCENARIOS: dict[str, Driver] = {
    "S1": s1,
    "S2": s2,
    "S3": s3,
    "S4": s4,
    "S5": s5,
    "S6": s6,
    "S7": s7,
}
