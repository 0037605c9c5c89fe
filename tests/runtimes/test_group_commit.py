"""The group committer's promises, kept by every runtime: nothing acknowledged is dropped.

- a commit whose caller is cancelled is still written;
- closing writes every commit queued before it returns;
- a commit after closing is refused with StorageError.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import anyio
import pytest

from aiobamboo.exceptions import StorageError
from aiobamboo.runtime import RUN_ACTIVE, RunRow, StateRow, WriteBatch


def _new_run() -> WriteBatch:
    root = "p" + uuid.uuid4().hex
    node = "n" + uuid.uuid4().hex
    now = time.time()
    state = StateRow(node, root, root, "RUNNING", "running", "v1", 1, 1, 0, False, False, now)
    return WriteBatch(
        root_id=root,
        new_run=RunRow(root, "{}", "{}", RUN_ACTIVE, now),
        new_nodes=(root, node),
        states={node: state},
    )


async def _stored(runtime: Any, batch: WriteBatch) -> bool:
    return (
        await runtime.store.get_run(batch.root_id) is not None
        and await runtime.store.get_state(next(iter(batch.states))) is not None
    )


async def test_a_cancelled_caller_does_not_take_its_commit_back(runtime_factory: Any) -> None:
    async with await runtime_factory(worker=False) as runtime:
        batch = _new_run()
        task = asyncio.ensure_future(runtime.store.commit(batch))
        await asyncio.sleep(0)  # the batch is queued
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with anyio.fail_after(10):
            while True:  # poll: nobody is told when it lands
                if await _stored(runtime, batch):
                    break
                await anyio.sleep(0.01)


async def test_closing_writes_every_queued_commit(runtime_factory: Any) -> None:
    batches = [_new_run() for _ in range(20)]
    runtime = await runtime_factory(worker=False)
    async with runtime:
        commits = [asyncio.ensure_future(runtime.store.commit(b)) for b in batches]
        await asyncio.sleep(0)  # every batch is queued; leaving closes the store now
    with anyio.fail_after(10):  # none is left waiting
        outcomes = await asyncio.gather(*commits, return_exceptions=True)
    assert outcomes == [None] * len(batches)
    if runtime_factory.kind == "sqlite-memory":
        return  # nothing outlives the connection to check
    async with await runtime_factory(worker=False) as again:
        for batch in batches:
            assert await _stored(again, batch), batch.root_id


async def test_a_commit_after_closing_is_refused(runtime_factory: Any) -> None:
    runtime = await runtime_factory(worker=False)
    async with runtime:
        pass
    with anyio.fail_after(10), pytest.raises(StorageError, match="not open"):
        await runtime.store.commit(_new_run())


async def test_runs_started_together_are_stored_but_the_refused_one(
    runtime_factory: Any,
) -> None:
    """New runs that share a group go in together; one whose id or node is taken is
    refused alone, leaving nothing of it behind, and the others are stored."""
    async with await runtime_factory(worker=False) as runtime:
        first = _new_run()
        await runtime.store.commit(first)
        taken_id = _new_run()
        taken_id.new_run = RunRow(first.root_id, "{}", "{}", RUN_ACTIVE, time.time())
        taken_id.new_nodes = (first.root_id, *taken_id.states)
        taken_node = _new_run()
        taken_node.new_nodes = (taken_node.root_id, *first.states)
        fine = [_new_run() for _ in range(5)]
        results = await asyncio.gather(
            *(runtime.store.commit(b) for b in (fine[0], taken_id, *fine[1:3], taken_node)),
            *(runtime.store.commit(b) for b in fine[3:]),
            return_exceptions=True,
        )
        assert [type(r).__name__ for r in results] == [
            "NoneType",
            "InvalidOperationError",
            "NoneType",
            "NoneType",
            "InvalidOperationError",
            "NoneType",
            "NoneType",
        ]
        assert "already exists" in str(results[1])
        assert "reuses node ids" in str(results[4])
        for batch in fine:
            assert await _stored(runtime, batch)
        for refused in (taken_id, taken_node):
            assert await runtime.store.get_state(next(iter(refused.states))) is None
        assert await runtime.store.get_run(taken_node.root_id) is None
        assert await runtime.store.get_node_root(taken_node.root_id) is None
