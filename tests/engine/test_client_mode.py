"""A client-only runtime (worker=False) starts and controls pipelines a worker runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio

from aiobamboo import api
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
from aiobamboo.component import Component, Service
from aiobamboo.exceptions import NotFoundError
from aiobamboo_sqlite import SQLiteRuntime
from contract import components  # noqa: F401 - registers the test components


def _callback_tree() -> tuple[dict[str, Any], str]:
    start = EmptyStartEvent()
    node = ServiceActivity(component_code="callback")
    start.extend(node).extend(EmptyEndEvent())
    return build_tree(start), node.id


async def _running_version(runtime: Any, root_id: str, node_id: str) -> str:
    with anyio.fail_after(10):
        while True:
            states = await api.get_pipeline_states(runtime, root_id)
            child = (states.data or {}).get(root_id, {}).get("children", {}).get(node_id)
            if child and child["state"] == "RUNNING":
                return str(child["version"])
            await anyio.sleep(0.01)


async def test_client_starts_and_calls_back_through_the_worker(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    async with SQLiteRuntime(db) as worker, SQLiteRuntime(db, worker=False) as client:
        tree, node_id = _callback_tree()
        assert (await api.run_pipeline(client, tree)).result
        version = await _running_version(client, tree["id"], node_id)
        # The worker holds the run: the client's callback travels as a command.
        sent = await api.callback(client, node_id, version, {"from": "client"})
        assert sent.result, sent.message
        waited = await api.wait_pipeline(client, tree["id"], timeout=10)
        assert waited.data == "FINISHED", waited.message
        outputs = await api.get_execution_data_outputs(worker, node_id)
        assert outputs.data["callback_data"] == {"from": "client"}


async def test_client_refusal_keeps_its_type_and_message(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    async with SQLiteRuntime(db) as worker, SQLiteRuntime(db, worker=False) as client:
        tree, node_id = _callback_tree()
        assert (await api.run_pipeline(worker, tree)).result
        await _running_version(client, tree["id"], node_id)
        refused = await api.callback(client, node_id, "v-not-the-version", {})
        assert not refused.result
        assert isinstance(refused.exc, NotFoundError)
        assert "with version v-not-the-version does not exist" in refused.message
        resumed = await api.resume_pipeline(client, tree["id"])
        assert not resumed.result
        assert "state is: RUNNING" in resumed.message


async def test_operation_without_a_worker_times_out_and_is_withdrawn(tmp_path: Path) -> None:
    from aiobamboo.engine import Settings

    db = tmp_path / "shared.db"
    async with SQLiteRuntime(db, worker=False, settings=Settings(command_timeout=0.3)) as client:
        tree, _ = _callback_tree()
        assert (await api.run_pipeline(client, tree)).result
        paused = await api.pause_pipeline(client, tree["id"])
        assert not paused.result
        assert "is a worker running" in paused.message
    # A worker opened later runs the pipeline; the withdrawn pause never applies.
    async with SQLiteRuntime(db) as worker:
        with anyio.fail_after(10):
            while True:
                states = await api.get_pipeline_states(worker, tree["id"])
                root = states.data[tree["id"]]
                if len(root["children"]) >= 2:
                    break
                await anyio.sleep(0.01)
        assert root["state"] == "RUNNING"


_gate: anyio.Event | None = None


class _GatedMultiCallbackService(Service):
    """Takes callbacks one at a time; each schedule() waits for the test's gate."""

    __need_schedule__ = True
    __multi_callback_enabled__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        assert _gate is not None
        await _gate.wait()
        if callback_data == "last":
            self.finish_schedule()
        return True


class _GatedMultiCallback(Component):
    code = "client_mode_gated_multi_callback"
    bound_service = _GatedMultiCallbackService


async def test_a_waiting_command_does_not_hold_up_the_others(tmp_path: Path) -> None:
    """A callback queued behind a busy schedule waits; commands for other runs go on."""
    global _gate
    _gate = anyio.Event()
    db = tmp_path / "shared.db"
    async with SQLiteRuntime(db) as worker, SQLiteRuntime(db, worker=False) as client:
        start = EmptyStartEvent()
        gated = ServiceActivity(component_code=_GatedMultiCallback.code)
        start.extend(gated).extend(EmptyEndEvent())
        busy = build_tree(start)
        other, _ = _callback_tree()
        assert (await api.run_pipeline(worker, busy)).result
        assert (await api.run_pipeline(worker, other)).result
        version = await _running_version(client, busy["id"], gated.id)
        # Taken at once: its schedule() now waits on the gate.
        assert (await api.callback(client, gated.id, version, "first")).result
        answers: list[Any] = []
        async with anyio.create_task_group() as tg:

            async def queued() -> None:
                answers.append(await api.callback(client, gated.id, version, "last"))

            tg.start_soon(queued)
            # Wait until the worker has taken that command and waits on the schedule.
            run = worker.scheduler.runs[busy["id"]]
            with anyio.fail_after(10):
                while True:
                    if run.pickups:
                        break
                    await anyio.sleep(0.01)
            with anyio.fail_after(10):
                paused = await api.pause_pipeline(client, other["id"])
            assert paused.result, paused.message
            assert not answers  # still queued behind the busy schedule
            _gate.set()
        assert answers[0].result, answers[0].message
        waited = await api.wait_pipeline(client, busy["id"], timeout=10)
        assert waited.data == "FINISHED", waited.message
