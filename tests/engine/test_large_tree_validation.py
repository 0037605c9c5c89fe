"""run_pipeline with a large tree does not stall the event loop while it validates it."""

from __future__ import annotations

import time
from typing import Any

import anyio
import anyio.abc

from aiobamboo import api, validator
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
from aiobamboo.engine._scheduler import THREAD_VALIDATION_NODES

#: Nodes in the large tree: validating it takes about a second.
LARGE = 25_000


def _chain(length: int, code: str) -> dict[str, Any]:
    start = EmptyStartEvent()
    tail: Any = start
    for _ in range(length):
        tail = tail.extend(ServiceActivity(component_code=code))
    tail.extend(EmptyEndEvent())
    return build_tree(start)


async def test_a_large_tree_is_validated_off_the_event_loop() -> None:
    from aiobamboo_sqlite import SQLiteRuntime

    # An unknown component fails the first node at once: nothing else runs.
    tree = _chain(LARGE, "no_such_component_for_large_tree")
    assert validator.count_nodes(tree) > THREAD_VALIDATION_NODES
    gaps: list[float] = []
    async with SQLiteRuntime(":memory:") as runtime:
        done = anyio.Event()

        async def tick(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            last = time.perf_counter()
            task_status.started()
            while not done.is_set():
                await anyio.sleep(0.005)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async with anyio.create_task_group() as tg:
            await tg.start(tick)  # ticking before run_pipeline begins
            began = time.perf_counter()
            res = await api.run_pipeline(runtime, tree)
            took = time.perf_counter() - began
            done.set()
        assert res.result, res.message
        waited = await api.wait_pipeline(runtime, tree["id"], timeout=30)
        assert waited.data == "FAILED", waited.message
    # Validated and processed in place, as on the event loop.
    assert all(isinstance(node["incoming"], list) for node in tree["activities"].values())
    # On the loop, one gap would have been about as long as the whole call
    # (relative, so that a loaded machine slows both alike).
    assert max(gaps) < took / 2, (max(gaps), took)


async def test_a_large_invalid_tree_is_refused_as_on_the_event_loop() -> None:
    from aiobamboo_sqlite import SQLiteRuntime

    tree = _chain(THREAD_VALIDATION_NODES * 2, "no_such_component_for_large_tree")
    # A dangling flow: its target does not exist.
    next(iter(tree["flows"].values()))["target"] = "nowhere"
    async with SQLiteRuntime(":memory:") as runtime:
        for _ in range(2):  # the refused attempt leaves nothing behind that refuses the next
            res = await api.run_pipeline(runtime, tree)
            assert res.result is False
            assert "nowhere" in res.message, res.message
        assert not (await api.get_pipeline_states(runtime, tree["id"])).data


def test_count_nodes_counts_every_nested_pipeline_and_tolerates_garbage() -> None:
    from aiobamboo.builder import SubProcess

    inner = EmptyStartEvent()
    inner.extend(ServiceActivity(component_code="x")).extend(EmptyEndEvent())
    outer = EmptyStartEvent()
    outer.extend(SubProcess(start=inner)).extend(EmptyEndEvent())
    # start, sub-process, end + the sub-process's start, activity, end
    assert validator.count_nodes(build_tree(outer)) == 6
    looped: dict[str, Any] = {"activities": {}}
    looped["activities"]["a"] = {"type": "SubProcess", "pipeline": looped}
    for garbage in (None, [], "tree", {"activities": 5, "gateways": None}, looped):
        assert validator.count_nodes(garbage) < 10
