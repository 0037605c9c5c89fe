"""Which changes go out together: the commits of parallel branches, on every runtime.

Branches that run side by side record into their run's one pending batch. A
commit made while siblings are running lets the current pass of the event
loop end before it takes the batch, so branches that reach their commit
points together (their first activities, above all) share one commit; and a
fork has no commit of its own: it goes out with the first step of its
branches, before any of their components runs.
"""

from __future__ import annotations

from typing import Any

from aiobamboo import states
from aiobamboo.builder import (
    ConvergeGateway,
    EmptyEndEvent,
    EmptyStartEvent,
    ParallelGateway,
    build_tree,
)

from .components import EXECUTIONS
from .helpers import activity, finish, flat_states, start, uid

BRANCHES = 4


def _spy(runtime: Any) -> list[Any]:
    """Every batch committed through ``runtime`` from now on, in order."""
    batches: list[Any] = []
    commit = runtime.store.commit

    async def recording(batch: Any) -> None:
        batches.append(batch)
        await commit(batch)

    runtime.store.commit = recording
    return batches


def _running(batch: Any) -> set[str]:
    return {node_id for node_id, row in batch.states.items() if row.state == states.RUNNING}


async def test_branches_started_together_go_out_in_one_commit(runtime: Any) -> None:
    s, pg, cg = EmptyStartEvent(), ParallelGateway(id=uid("pg")), ConvergeGateway()
    branches = [activity("echo", uid("branch")) for _ in range(BRANCHES)]
    s.extend(pg).connect(*branches).to(pg).converge(cg).extend(EmptyEndEvent())
    tree = build_tree(s)
    batches = _spy(runtime)
    root_id = await start(runtime, tree)
    await finish(runtime, root_id)

    ids = {b.id for b in branches}
    ours = [b for b in batches if b.root_id == root_id]
    firsts = [b for b in ours if _running(b) & ids]
    # One commit carries every branch's RUNNING state, the fork's FINISHED
    # gateway and the branches' processes.
    assert len(firsts) == 1, [sorted(_running(b) & ids) for b in firsts]
    first = firsts[0]
    assert _running(first) >= ids
    gateway = first.states.get(pg.id)
    assert gateway is not None, "the fork went out in a commit of its own"
    assert gateway.state == states.FINISHED
    assert len(first.processes) == BRANCHES + 1  # the parent, joining, and its children
    # No commit before it holds the fork alone.
    assert all(pg.id not in b.states for b in ours[: ours.index(first)])
    found = await flat_states(runtime, root_id)
    assert all(found[b]["state"] == states.FINISHED for b in ids)
    assert all(EXECUTIONS[b] == 1 for b in ids)
