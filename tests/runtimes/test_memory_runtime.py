"""The memory runtime's own promises: its fault hooks, its storage, one worker at a time.

The runtimes here are clients (``worker=False``): the rows written are not real
pipelines, and a worker would try to run them.
"""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from aiobamboo.engine import Settings
from aiobamboo.exceptions import InvalidOperationError, StorageError
from aiobamboo.runtime import RUN_ACTIVE, RUN_FINISHED, ProcessRow, RunRow, StateRow, WriteBatch
from aiobamboo.testing import MemoryRuntime, MemoryStorage


def _state(node_id: str, root_id: str, state: str = "RUNNING") -> StateRow:
    return StateRow(node_id, root_id, root_id, "", state, "v1", 1, 1, 0, False, False, 1.0)


def _new_run(root_id: str, *nodes: str) -> WriteBatch:
    run = RunRow(root_id, "{}", "{}", RUN_ACTIVE, 1.0)
    batch = WriteBatch(root_id=root_id, new_run=run, new_nodes=[root_id, *nodes])
    batch.states[root_id] = _state(root_id, root_id)
    batch.processes["c1"] = ProcessRow(
        "c1", root_id, None, "n1", None, (root_id,), "running", None, (), ()
    )
    return batch


async def test_a_failed_commit_stores_nothing_and_a_lost_answer_stores_everything() -> None:
    async with MemoryRuntime(worker=False) as rt:
        rt.faults.fail_commits(1)
        with pytest.raises(StorageError, match="injected commit failure"):
            await rt.store.commit(_new_run("p1", "n1"))
        assert await rt.store.get_run("p1") is None
        assert rt.storage.commits == 0
        rt.faults.lose_answers(1)
        with pytest.raises(StorageError, match="answer lost"):
            await rt.store.commit(_new_run("p1", "n1"))
        assert (await rt.store.get_run("p1")) is not None
        assert await rt.store.get_node_root("n1") == "p1"
        assert (rt.faults.injected, rt.faults.pending, rt.storage.commits) == (2, 0, 1)


async def test_faults_aim_at_the_batches_their_filter_accepts() -> None:
    async with MemoryRuntime(worker=False) as rt:
        await rt.store.commit(_new_run("p1", "n1"))
        rt.faults.fail_commits(1, when=lambda b: "n1" in b.states)
        other = WriteBatch(root_id="p1")
        other.states["p1"] = _state("p1", "p1", "SUSPENDED")
        await rt.store.commit(other)
        aimed = WriteBatch(root_id="p1")
        aimed.states["n1"] = _state("n1", "p1")
        with pytest.raises(StorageError):
            await rt.store.commit(aimed)
        assert await rt.store.get_state("n1") is None
        state = await rt.store.get_state("p1")
        assert state is not None
        assert state.state == "SUSPENDED"


async def test_delayed_commits_land_in_call_order() -> None:
    async with MemoryRuntime(worker=False) as rt:
        await rt.store.commit(_new_run("p1", "n1"))
        rt.faults.commit_delay = 0.01
        order = ["RUNNING", "FAILED", "READY", "FINISHED"]

        async def write(state: str) -> None:
            batch = WriteBatch(root_id="p1")
            batch.states["n1"] = _state("n1", "p1", state)
            await rt.store.commit(batch)

        async with anyio.create_task_group() as tg:
            for state in order:
                tg.start_soon(write, state)
                await anyio.lowlevel.checkpoint()
        state = await rt.store.get_state("n1")
        assert state is not None
        assert state.state == "FINISHED"


async def test_concurrent_commits_without_a_delay_land_in_call_order() -> None:
    async with MemoryRuntime(worker=False) as rt:
        await rt.store.commit(_new_run("p1", "n1"))
        before = rt.storage.commits

        async def write(state: str) -> None:
            batch = WriteBatch(root_id="p1")
            batch.states["n1"] = _state("n1", "p1", state)
            await rt.store.commit(batch)

        async with anyio.create_task_group() as tg:
            for state in ("RUNNING", "FAILED", "FINISHED"):
                tg.start_soon(write, state)
        assert rt.storage.commits == before + 3
        state = await rt.store.get_state("n1")
        assert state is not None
        assert state.state == "FINISHED"


async def test_a_delayed_commit_still_in_flight_at_close_fails() -> None:
    rt = MemoryRuntime(worker=False)
    outcome: list[BaseException | None] = []
    async with rt:
        await rt.store.commit(_new_run("p1", "n1"))
        rt.faults.commit_delay = 60
        rt.store._committer.close_timeout = 0.05
        batch = WriteBatch(root_id="p1")
        batch.states["n1"] = _state("n1", "p1", "FAILED")

        async def write() -> None:
            try:
                await rt.store.commit(batch)
            except StorageError as exc:
                outcome.append(exc)
            else:
                outcome.append(None)

        async with anyio.create_task_group() as tg:
            tg.start_soon(write)
            await anyio.sleep(0.01)
            await rt.store.aclose()
    await anyio.lowlevel.checkpoint()
    assert len(outcome) == 1
    assert isinstance(outcome[0], StorageError)
    assert not rt.store._writing
    assert "n1" not in rt.storage.states


async def test_new_runs_refuse_taken_ids_and_ended_runs_keep_no_processes() -> None:
    async with MemoryRuntime(worker=False) as rt:
        await rt.store.commit(_new_run("p1", "n1"))
        with pytest.raises(InvalidOperationError, match="already exists"):
            await rt.store.commit(_new_run("p1", "n9"))
        with pytest.raises(InvalidOperationError, match="reuses node ids"):
            await rt.store.commit(_new_run("p2", "n1"))
        assert await rt.store.get_run("p2") is None
        await rt.store.commit(WriteBatch(root_id="p1", run_status=RUN_FINISHED))
        snap = await rt.store.load_run("p1")
        assert snap is not None
        assert (snap.run.status, list(snap.processes)) == (RUN_FINISHED, [])


async def test_one_worker_per_storage_and_the_storage_outlives_its_runtime() -> None:
    storage = MemoryStorage()
    async with MemoryRuntime(storage, worker=False) as client:
        await client.store.commit(_new_run("p1", "n1"))
    async with MemoryRuntime(storage, settings=Settings(poll_interval=60)):
        with pytest.raises(StorageError, match="in use by another worker"):
            async with MemoryRuntime(storage):
                pass
    async with MemoryRuntime(storage, worker=False) as reopened:
        assert await reopened.store.get_run("p1") is not None
        assert await reopened.store.claim_runs(10) == ["p1"]
        assert await reopened.store.claim_runs(10) == []


def test_an_ended_run_loses_its_processes_and_timers_and_keeps_its_events() -> None:
    import attrs

    from aiobamboo.runtime import EventRow, TimerRow

    storage = MemoryStorage()
    for root in ("p1", "p2"):
        batch = _new_run(root, f"n-{root}")
        batch.processes = {
            f"c-{root}": attrs.evolve(batch.processes["c1"], id=f"c-{root}", root_id=root)
        }
        batch.timers[f"t-{root}"] = TimerRow(f"t-{root}", root, f"n-{root}", "v1", "poll", 9.0)
        storage.apply(batch, None, 60.0)
    event = EventRow("p1", "n-p1", "state", "FINISHED", '{"a":1}', 5.0)
    ended = WriteBatch(root_id="p1", run_status=RUN_FINISHED)
    ended.events.append(event)
    storage.apply(ended, None, 60.0)
    assert list(storage.processes) == ["c-p2"]
    assert list(storage.timers) == ["t-p2"]
    assert storage.events == [attrs.evolve(event, id=1)]
    assert storage.runs["p1"].status == RUN_FINISHED
