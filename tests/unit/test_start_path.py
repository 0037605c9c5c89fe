"""The start of a pipeline: its stored options, and the tasks that drive its run."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import anyio
import pytest

from aiobamboo import api, bench, codec
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
from aiobamboo.component import Component, ComponentLibrary, Service
from aiobamboo.engine import Settings
from aiobamboo.engine._scheduler import _options_json
from aiobamboo.exceptions import StorageError
from aiobamboo.testing import MemoryRuntime, MemoryStorage


def _options(**changes: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "root_pipeline_data": {},
        "root_pipeline_context": {},
        "subprocess_context": {},
        "cycle_tolerate": False,
        "start_node_id": None,
        "condition_rules": "standard",
    }
    options.update(changes)
    return options


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"cycle_tolerate": True},
        {"condition_rules": "bamboo"},
        {"root_pipeline_data": {"a": 1}},
        {"root_pipeline_context": {"b": [1, 2]}},
        {"subprocess_context": {"c": None}},
        {"start_node_id": "n1"},
    ],
)
def test_the_stored_options_are_their_codec_text_every_time(changes: dict[str, Any]) -> None:
    for _ in range(3):  # the bare ones come from a memo after the first
        assert _options_json(_options(**changes)) == codec.dumps(_options(**changes), "options")


async def test_a_started_run_stores_the_options_it_was_started_with() -> None:
    async with MemoryRuntime(components=bench.library) as runtime:
        trees = [bench.single()[0] for _ in range(3)]
        assert (await api.run_pipeline(runtime, trees[0])).result
        assert (await api.run_pipeline(runtime, trees[1], condition_rules="bamboo")).result
        assert (await api.run_pipeline(runtime, trees[2], cycle_tolerate=True)).result
        stored = [codec.loads(runtime.storage.runs[t["id"]].options_json) for t in trees]
    assert stored == [
        _options(),
        _options(condition_rules="bamboo"),
        _options(cycle_tolerate=True),
    ]


async def test_closing_the_runtime_cancels_and_awaits_the_tasks_of_its_runs() -> None:
    async with MemoryRuntime(components=bench.library) as runtime:
        scheduler = runtime.scheduler
        assert scheduler is not None
        for i in range(3):
            tree = bench.waiting_tree("t", i)
            assert (await api.run_pipeline(runtime, tree)).result
        await anyio.wait_all_tasks_blocked()
        tasks = list(scheduler._supervisors)
        assert len(tasks) == 3
        assert not any(task.done() for task in tasks)
    assert all(task.cancelled() for task in tasks)
    assert not scheduler._supervisors


async def test_a_run_task_that_fails_past_its_supervision_stops_the_engine() -> None:
    async with MemoryRuntime(
        components=bench.library, settings=Settings(recovery_delay=0.01)
    ) as runtime:
        scheduler = runtime.scheduler
        assert scheduler is not None
        broken = RuntimeError("engine bug")

        def note_ended(run: Any) -> None:
            raise broken

        scheduler._note_ended = note_ended  # type: ignore[method-assign]
        tree = bench.single()[0]
        assert (await api.run_pipeline(runtime, tree)).result
        with anyio.fail_after(5):
            failure = await scheduler.wait_failure()
        assert failure is broken
        refused = await api.run_pipeline(runtime, bench.single()[0])
        assert not refused.result
        assert "stopped" in refused.message
        assert not scheduler._supervisors
        # The failed task's exception was taken: asyncio does not log it as lost.
        await asyncio.sleep(0)


def _blocking_library(gate: anyio.Event) -> ComponentLibrary:
    class Blocked(Service):
        async def execute(self, data: Any, parent_data: Any) -> bool:
            await gate.wait()
            return True

    library = ComponentLibrary()
    library.register(
        type(
            "BlockedComponent",
            (Component,),
            {
                "code": "blocked",
                "name": "blocked",
                "bound_service": Blocked,
                "auto_register": False,
            },
        )
    )
    return library


async def test_a_new_run_is_created_with_its_first_steps_in_one_commit() -> None:
    async with MemoryRuntime(components=bench.library) as runtime:
        tree = bench.single()[0]
        assert (await api.run_pipeline(runtime, tree)).result
        assert (await api.wait_pipeline(runtime, tree["id"], timeout=5)).data == "FINISHED"
        # The creation with the activity's RUNNING state, then the rest.
        assert runtime.storage.commits == 2
        states = {row.node_id: row.state for row in runtime.storage.states.values()}
    assert set(states.values()) == {"FINISHED"}
    assert len(states) == 4


async def test_run_pipeline_returns_once_the_run_is_stored_not_once_it_moved_on() -> None:
    gate = anyio.Event()
    async with MemoryRuntime(components=_blocking_library(gate)) as runtime:
        start = EmptyStartEvent()
        start.extend(ServiceActivity(component_code="blocked")).extend(EmptyEndEvent())
        tree = build_tree(start)
        with anyio.fail_after(5):
            assert (await api.run_pipeline(runtime, tree)).result
        # Stored with its first node RUNNING (durable before the component runs).
        assert runtime.storage.runs[tree["id"]].status == "active"
        activity = next(iter(tree["activities"]))
        assert runtime.storage.states[activity].state == "RUNNING"
        gate.set()
        assert (await api.wait_pipeline(runtime, tree["id"], timeout=5)).data == "FINISHED"


async def test_a_run_whose_id_storage_holds_is_refused_and_not_reloaded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    storage = MemoryStorage()
    tree = bench.single()[0]
    async with MemoryRuntime(components=bench.library, storage=storage) as runtime:
        assert (await api.run_pipeline(runtime, tree)).result
        assert (await api.wait_pipeline(runtime, tree["id"], timeout=5)).data == "FINISHED"
    async with MemoryRuntime(components=bench.library, storage=storage) as runtime:
        scheduler = runtime.scheduler
        assert scheduler is not None
        with caplog.at_level(logging.WARNING):
            again = await api.run_pipeline(runtime, tree)
            await anyio.wait_all_tasks_blocked()
        assert not again.result
        assert "already exists" in again.message
        assert tree["id"] not in scheduler.runs
        assert tree["id"] not in scheduler._loading
        assert not scheduler._supervisors
        assert not any(r.levelno >= logging.ERROR for r in caplog.records), caplog.text
        assert storage.runs[tree["id"]].status == "finished"


async def test_a_failed_creation_is_the_callers_storage_error() -> None:
    async with MemoryRuntime(components=bench.library) as runtime:
        runtime.faults.fail_commits(1)
        tree = bench.single()[0]
        refused = await api.run_pipeline(runtime, tree)
        assert not refused.result
        assert "injected commit failure" in refused.message
        # The storage's own error, not the run's "being reloaded" refusal.
        assert type(refused.exc) is StorageError
        assert tree["id"] not in runtime.storage.runs


async def test_a_run_whose_creation_is_on_its_way_keeps_its_lease_through_renewals() -> None:
    runtime = MemoryRuntime(components=bench.library)
    # Leases renewed every 10 ms; each commit takes 50 ms to land.
    runtime.store.lease_seconds = 0.03
    async with runtime:
        runtime.faults.commit_delay = 0.05
        tree = bench.single()[0]
        started = await api.run_pipeline(runtime, tree)
        assert started.result, started.message
        runtime.faults.commit_delay = 0.0
        assert (await api.wait_pipeline(runtime, tree["id"], timeout=5)).data == "FINISHED"
        assert runtime.scheduler is not None
        assert not runtime.scheduler.creating
