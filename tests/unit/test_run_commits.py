"""A run's commits while several of its processes run: gathered, and safe to cancel."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .test_engine_fast_paths import _bare_run


class _Store:
    """Keeps every batch committed to it."""

    def __init__(self) -> None:
        self.batches: list[Any] = []

    async def commit(self, batch: Any) -> None:
        self.batches.append(batch)


def _run_with_branches(running: int) -> tuple[Any, _Store]:
    """A bare run whose ``running`` processes all run, and the store it commits to."""
    from aiobamboo.engine._run import Process

    run = _bare_run()
    store = _Store()
    run.store = store
    for i in range(running):
        run.processes[f"p{i}"] = Process(f"p{i}", None, "s", None, ["r"])
    return run, store


async def _step(run: Any, node_id: str) -> None:
    run.new_state(node_id, "r", "RUNNING")
    await run.checkpoint("node-running")


def _committed(store: _Store) -> list[set[str]]:
    return [set(batch.states) for batch in store.batches]


async def test_commits_of_running_siblings_in_one_pass_go_out_together() -> None:
    run, store = _run_with_branches(2)
    await asyncio.gather(_step(run, "s"), _step(run, "e"))
    assert _committed(store) == [{"s", "e"}]
    assert not run.pending


async def test_a_lone_process_commits_without_waiting_for_others() -> None:
    run, store = _run_with_branches(1)
    await asyncio.gather(_step(run, "s"), _step(run, "e"))
    # The first commit took only what was recorded when it was made.
    assert _committed(store) == [{"s"}, {"e"}]


async def test_a_commit_cancelled_while_it_gathers_leaves_its_changes_to_the_next() -> None:
    run, store = _run_with_branches(2)
    first = asyncio.ensure_future(_step(run, "s"))
    second = asyncio.ensure_future(_step(run, "e"))
    # One pass: the first commit waits for the pass to end, the second for the first.
    await asyncio.sleep(0)
    assert not store.batches
    first.cancel()
    await asyncio.wait_for(second, 5)
    with pytest.raises(asyncio.CancelledError):
        await first
    # Nothing was lost or committed twice, and the run is not broken.
    assert _committed(store) == [{"s", "e"}]
    assert run.broken is None
    assert not run.pending
    assert run.settled
