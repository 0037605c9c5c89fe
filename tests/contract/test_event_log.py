"""The durable event log: a client runtime sees a worker's events, in commit order, and
resumes after the last id it saw without losing or repeating any; old events are purged.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

import aiobamboo.engine._coordination as coordination
from aiobamboo import api
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, SubProcess, build_tree
from aiobamboo.engine import RunEvent, Settings

from .ops_helpers import (
    GRACE,
    TIMEOUT,
    act,
    chain,
    linear,
    ok,
    outputs,
    start,
    wait_outcome,
    wait_state,
    wait_until,
)
from .parking_helpers import needs_shared_storage, opened, parking_settings

KINDS = {"state", "pipeline_failed", "pipeline_finished", "pipeline_revoked"}


@pytest.fixture
async def pair(runtime_factory: Any) -> AsyncIterator[tuple[Any, Any]]:
    """A worker whose runs park whenever they wait, and a client on the same storage."""
    needs_shared_storage(runtime_factory.kind)
    async with (
        opened(runtime_factory, settings=parking_settings(poll_interval=0.05)) as worker,
        opened(runtime_factory, worker=False, settings=Settings(poll_interval=0.05)) as client,
    ):
        yield worker, client


def brief(events: list[RunEvent]) -> list[tuple[int, str, str, str, str]]:
    return [(e.id, e.kind, e.root_id, e.node_id, e.state) for e in events]


async def read_until(
    events: AsyncIterator[RunEvent], done: Any, limit: float = TIMEOUT
) -> list[RunEvent]:
    """Events up to and including the first for which ``done(event)`` is true."""
    seen: list[RunEvent] = []
    with anyio.fail_after(limit):
        async for event in events:
            assert event.kind in KINDS, event
            seen.append(event)
            if done(event):
                return seen
    raise AssertionError(f"the stream ended early: {brief(seen)}")


def finished(root: str) -> Any:
    return lambda e: e.kind == "pipeline_finished" and e.root_id == root


async def nothing_more(events: AsyncIterator[RunEvent]) -> list[RunEvent]:
    extra: list[RunEvent] = []
    with anyio.move_on_after(GRACE):
        async for event in events:
            extra.append(event)  # noqa: PERF401 (the list must survive the cancel)
    return extra


def states_of(seen: list[RunEvent], node_id: str) -> list[str]:
    return [e.state for e in seen if e.kind == "state" and e.node_id == node_id]


def position(seen: list[RunEvent], node_id: str, state: str) -> int:
    for i, event in enumerate(seen):
        if event.kind == "state" and event.node_id == node_id and event.state == state:
            return i
    raise AssertionError(f"no {node_id} {state} in {brief(seen)}")


def assert_increasing(seen: list[RunEvent]) -> None:
    ids = [e.id for e in seen]
    assert all(a < b for a, b in itertools.pairwise(ids)), ids


def assert_one_linear_run(seen: list[RunEvent], root: str, order: list[str]) -> None:
    """Each node RUNNING then FINISHED, one after the other, the root's end last."""
    assert_increasing(seen)
    assert all(e.root_id == root for e in seen)
    assert (seen[0].kind, seen[0].node_id, seen[0].state) == ("state", root, "RUNNING")
    for node_id in order:
        assert states_of(seen, node_id) == ["RUNNING", "FINISHED"], node_id
    for before, after in itertools.pairwise(order):
        assert position(seen, before, "FINISHED") < position(seen, after, "RUNNING")
    assert (seen[-2].kind, seen[-2].node_id, seen[-2].state) == ("state", root, "FINISHED")
    assert (seen[-1].kind, seen[-1].node_id) == ("pipeline_finished", root)


async def answer_callbacks(client: Any, root: str, waiters: list[Any]) -> None:
    """From the client: a callback to each waiter, in turn, once it waits."""
    for waiter in waiters:
        found = await wait_state(client, root, waiter.id, "RUNNING")

        async def executed(node_id: str = waiter.id) -> bool:
            return bool(await outputs(client, node_id))

        await wait_until(executed, f"{waiter.id} to execute")
        ok(await api.callback(client, waiter.id, found["version"], {"to": waiter.id}))


# ======================================================================================
# a client sees a worker's events
# ======================================================================================


async def test_a_client_sees_the_workers_events_in_commit_order(pair: tuple[Any, Any]) -> None:
    worker, client = pair
    first, waiter, last = act("echo"), act("callback"), act("echo")
    inner = act("echo")
    sub_start = EmptyStartEvent()
    chain(sub_start, inner, EmptyEndEvent())
    sub = SubProcess(start=sub_start)
    s, end = EmptyStartEvent(), EmptyEndEvent()
    chain(s, first, waiter, sub, last, end)
    tree = build_tree(s)
    root = tree["id"]
    async with (
        api.subscribe(client, root) as from_client,
        api.subscribe(worker, root) as from_worker,
    ):
        await start(worker, tree)
        async with anyio.create_task_group() as tg:
            tg.start_soon(answer_callbacks, client, root, [waiter])
            seen = await read_until(from_client, finished(root))
        mine = await read_until(from_worker, finished(root))
        assert await nothing_more(from_client) == []

    assert brief(seen) == brief(mine)
    assert_one_linear_run(seen, root, [s.id, first.id, waiter.id, sub.id, last.id, end.id])
    assert position(seen, sub.id, "RUNNING") < position(seen, inner.id, "RUNNING")
    assert position(seen, inner.id, "FINISHED") < position(seen, sub.id, "FINISHED")
    assert seen[position(seen, inner.id, "RUNNING")].data["parent_id"] == sub.id
    # What was delivered is what storage holds, in the same order.
    assert brief(seen) == [
        (r.id, r.kind, r.root_id, r.node_id, r.state)
        for r in await client.store.read_events(0, root, 1000)
    ]


async def test_a_subscriber_from_now_on_sees_nothing_of_the_past(pair: tuple[Any, Any]) -> None:
    worker, client = pair
    before = linear(act("echo"))
    await start(worker, before)
    await wait_outcome(worker, before["id"], "FINISHED")
    tree = linear(act("echo"))
    async with api.subscribe(client) as events:
        await start(worker, tree)
        seen = await read_until(events, finished(tree["id"]))
    assert {e.root_id for e in seen} == {tree["id"]}


# ======================================================================================
# resuming from a cursor
# ======================================================================================


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_resuming_after_the_last_id_seen_neither_loses_nor_repeats(
    pair: tuple[Any, Any], seed: int
) -> None:
    worker, client = pair
    rng = random.Random(seed)
    waiters = [act("callback") for _ in range(4)]
    elems = [e for w in waiters for e in (w, act("echo"))]
    tree = linear(*elems)
    root = tree["id"]
    pieces: list[list[RunEvent]] = []

    async def subscriber() -> None:
        cursor: int | None = None
        while not (pieces and pieces[-1] and pieces[-1][-1].kind == "pipeline_finished"):
            piece: list[RunEvent] = []
            pieces.append(piece)
            async with api.subscribe(client, root, after=cursor) as events:
                if cursor is None:
                    started.set()
                want = rng.randint(1, 5)
                with anyio.fail_after(TIMEOUT):
                    async for event in events:
                        piece.append(event)
                        cursor = event.id
                        if len(piece) == want or event.kind == "pipeline_finished":
                            break
            # Disconnected: the worker goes on committing meanwhile.
            await anyio.sleep(rng.random() * 0.05)

    started = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(subscriber)
        await started.wait()
        await start(worker, tree)
        tg.start_soon(answer_callbacks, client, root, waiters)
    assert len(pieces) > 3, "the subscriber did not disconnect along the way"

    seen = [e for piece in pieces for e in piece]
    async with api.subscribe(client, root, after=0) as events:
        whole = await read_until(events, finished(root))
    assert brief(seen) == brief(whole)
    order = [tree["start_event"]["id"], *(e.id for e in elems), tree["end_event"]["id"]]
    assert_one_linear_run(seen, root, order)


async def test_event_ids_grow_across_pipelines_and_each_keeps_its_order(
    pair: tuple[Any, Any],
) -> None:
    worker, client = pair
    runs = []
    for _ in range(6):
        before, waiter, after = act("echo"), act("callback"), act("echo")
        runs.append((linear(before, waiter, after), [before, waiter, after]))
    roots = {tree["id"] for tree, _ in runs}
    done: set[str] = set()

    def all_done(event: RunEvent) -> bool:
        if event.kind == "pipeline_finished":
            done.add(event.root_id)
        return done == roots

    async with api.subscribe(client) as events:
        async with anyio.create_task_group() as tg:
            for tree, nodes in runs:
                await start(worker, tree)
                tg.start_soon(answer_callbacks, client, tree["id"], [nodes[1]])
            seen = await read_until(events, all_done, 30)

    assert_increasing(seen)
    assert {e.root_id for e in seen} == roots
    for tree, nodes in runs:
        root = tree["id"]
        mine = [e for e in seen if e.root_id == root]
        order = [tree["start_event"]["id"], *(n.id for n in nodes), tree["end_event"]["id"]]
        assert_one_linear_run(mine, root, order)
        async with api.subscribe(client, root, after=0) as events:
            assert brief(await read_until(events, finished(root))) == brief(mine)


# ======================================================================================
# retention
# ======================================================================================


async def test_purged_events_are_gone_and_a_cursor_resumes_at_the_survivors(
    runtime_factory: Any,
) -> None:
    async with opened(runtime_factory, settings=Settings(event_retention=3600.0)) as rt:
        old, new = linear(act("echo")), linear(act("echo"))
        await start(rt, old)
        await wait_outcome(rt, old["id"], "FINISHED")
        async with api.subscribe(rt, old["id"], after=0) as events:
            old_events = await read_until(events, finished(old["id"]))
        cutoff = time.time()
        await anyio.sleep(0.01)
        await start(rt, new)
        await wait_outcome(rt, new["id"], "FINISHED")
        async with api.subscribe(rt, new["id"], after=0) as events:
            new_events = await read_until(events, finished(new["id"]))

        assert await rt.store.purge_events(cutoff) == len(old_events)
        assert await rt.store.purge_events(cutoff) == 0
        rows = await rt.store.read_events(0, None, 1000)
        assert [r.id for r in rows] == [e.id for e in new_events]
        # A cursor inside the purged range, or before it, resumes at the first survivor.
        for cursor in (0, old_events[len(old_events) // 2].id, old_events[-1].id):
            async with api.subscribe(rt, after=cursor) as events:
                assert brief(await read_until(events, finished(new["id"]))) == brief(new_events)


@pytest.mark.parametrize("retention", [0.6, None], ids=["kept-0.6s", "kept-for-ever"])
async def test_a_worker_purges_events_older_than_the_retention(
    runtime_factory: Any, monkeypatch: pytest.MonkeyPatch, retention: float | None
) -> None:
    # Every claim round looks for old events (a worker looks once a minute).
    monkeypatch.setattr(coordination, "PURGE_EVERY", 0.0)
    settings = Settings(event_retention=retention, poll_interval=0.05)
    async with opened(runtime_factory, settings=settings) as rt:
        tree = linear(act("echo"))
        root = tree["id"]
        await start(rt, tree)
        await wait_outcome(rt, root, "FINISHED")
        assert await rt.store.read_events(0, root, 1000) != []

        async def purged() -> bool:
            return await rt.store.read_events(0, root, 1000) == []

        if retention is None:
            await anyio.sleep(0.8)
            assert not await purged()
        else:
            await wait_until(purged, "the worker to purge the old events", 5.0)
            # Events younger than the retention are kept.
            fresh = linear(act("echo"))
            await start(rt, fresh)
            await wait_outcome(rt, fresh["id"], "FINISHED")
            assert await rt.store.read_events(0, fresh["id"], 1000) != []
