"""Conformance checks of a store's roles, one role at a time.

Each check opens ``factory(components=..., worker=False)`` (a client: its
scheduler claims nothing, so the store is the checks' alone) and talks to
``runtime.store`` directly, through the role's protocol only. A new runtime
can pass the journal checks before it has a read model, and so on.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from ..exceptions import InvalidOperationError
from ..runtime import (
    RUN_ACTIVE,
    RUN_FINISHED,
    RUN_REVOKED,
    CallbackRow,
    Coordination,
    EventLog,
    EventRow,
    ExecutionDataRow,
    HistoryRow,
    Journal,
    NodeDataRow,
    ProcessRow,
    ReadModel,
    Retention,
    RunRow,
    ScheduleRow,
    StateRow,
    TimerRow,
    WriteBatch,
)

__all__ = ["ROLE_CHECKS"]

RuntimeFactory = Callable[..., Any]
Check = Callable[[RuntimeFactory], Awaitable[None]]


def _uid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


def _state(node_id: str, root_id: str, parent_id: str, state: str = "RUNNING") -> StateRow:
    return StateRow(node_id, root_id, parent_id, "", state, "v1", 1, 1, 0, False, False, 1.0)


def _process(pid: str, root_id: str, node_id: str) -> ProcessRow:
    return ProcessRow(pid, root_id, None, node_id, None, (), "running", None, (), ())


def _new_run(root_id: str, *nodes: str) -> WriteBatch:
    return WriteBatch(
        root_id=root_id,
        new_run=RunRow(root_id, '{"tree": 1}', "{}", RUN_ACTIVE, time.time()),
        new_nodes=(root_id, *nodes),
        states={n: _state(n, root_id, root_id) for n in nodes},
    )


async def _role(factory: RuntimeFactory, role: type[Any]) -> Any:
    runtime = factory(worker=False)
    store = runtime.store
    assert isinstance(store, role), f"{type(store).__name__} does not implement {role.__name__}"
    return runtime


async def check_journal_stores_and_rebuilds_a_run(factory: RuntimeFactory) -> None:
    """commit a new run; get_run, get_node_root and load_run give it back."""
    root, node = _uid("p"), _uid("n")
    async with await _role(factory, Journal) as runtime:
        store: Journal = runtime.store
        await store.commit(_new_run(root, node))
        run = await store.get_run(root)
        assert run is not None, "get_run lost a committed run"
        assert run.tree_json == '{"tree": 1}', run
        assert await store.get_node_root(node) == root
        assert await store.get_node_root(_uid("n")) is None
        snapshot = await store.load_run(root)
        assert snapshot is not None, "load_run lost a committed run"
        assert [s.node_id for s in snapshot.states] == [node], snapshot.states
        assert await store.load_run(_uid("p")) is None


async def check_journal_refuses_a_taken_run(factory: RuntimeFactory) -> None:
    """A new run with a taken root id, or with another run's node ids, changes nothing."""
    root, node = _uid("p"), _uid("n")
    async with await _role(factory, Journal) as runtime:
        store: Journal = runtime.store
        await store.commit(_new_run(root, node))
        for taken in (_new_run(root, _uid("n")), _new_run(_uid("p"), node)):
            try:
                await store.commit(taken)
            except InvalidOperationError:
                pass
            else:
                raise AssertionError(f"a run reusing ids was stored: {taken.root_id}")
            assert taken.root_id == root or await store.get_run(taken.root_id) is None


async def check_journal_applies_a_group_in_call_order(factory: RuntimeFactory) -> None:
    """Concurrent commits: the later write of a row wins; ending a run drops its processes.

    Processes written after the run ended (in the same group) are kept, as
    if the batches were applied one at a time.
    """
    root, node = _uid("p"), _uid("n")
    async with await _role(factory, Journal) as runtime:
        store: Journal = runtime.store
        await store.commit(_new_run(root, node))
        steps = [
            WriteBatch(root_id=root, processes={"a": _process("a", root, node)}),
            WriteBatch(root_id=root, states={node: _state(node, root, root, "FAILED")}),
            WriteBatch(root_id=root, run_status=RUN_FINISHED),
            WriteBatch(root_id=root, states={node: _state(node, root, root, "FINISHED")}),
            WriteBatch(root_id=root, processes={"b": _process("b", root, node)}),
        ]
        await asyncio.gather(*(store.commit(step) for step in steps))
        snapshot = await store.load_run(root)
        assert snapshot is not None
        assert snapshot.run.status == RUN_FINISHED, snapshot.run
        assert [s.state for s in snapshot.states] == ["FINISHED"], snapshot.states
        assert [p.id for p in snapshot.processes] == ["b"], snapshot.processes


async def check_read_model_answers_the_api(factory: RuntimeFactory) -> None:
    """States by node, root and parent; execution data; node data; histories by loop."""
    root, node, child = _uid("p"), _uid("n"), _uid("n")
    batch = _new_run(root, node, child)
    batch.states[child] = _state(child, root, node)
    batch.execution_data[node] = ExecutionDataRow(node, root, '{"i": 1}', '{"o": 2}')
    batch.node_data[node] = NodeDataRow(node, root, '{"x": 3}')
    batch.histories.extend(
        HistoryRow(_uid("h"), root, node, 1.0, 2.0, loop, False, 0, "v1", "{}", "{}", float(loop))
        for loop in (1, 2)
    )
    async with await _role(factory, ReadModel) as runtime:
        await runtime.store.commit(batch)
        store: ReadModel = runtime.store
        state = await store.get_state(node)
        assert state is not None, "get_state lost a committed state"
        assert state.parent_id == root, state
        assert await store.get_state(_uid("n")) is None
        assert {s.node_id for s in await store.get_states_by_root(root)} == {node, child}
        assert [s.node_id for s in await store.get_states_by_parent(node)] == [child]
        data = await store.get_execution_data(node)
        assert data is not None, "get_execution_data lost committed data"
        assert data.outputs_json == '{"o": 2}', data
        node_data = await store.get_node_data(node)
        assert node_data is not None, "get_node_data lost committed data"
        assert node_data.inputs_json == '{"x": 3}', node_data
        assert [h.loop for h in await store.get_histories(node)] == [1, 2]
        assert [h.loop for h in await store.get_histories(node, 2)] == [2]


async def check_coordination_claims_and_releases(factory: RuntimeFactory) -> None:
    """A run nobody holds is claimed once, renewed by its holder, and released."""
    root = _uid("p")
    async with await _role(factory, Coordination) as runtime:
        await runtime.store.commit(_new_run(root, _uid("n")))
        store: Coordination = runtime.store
        assert await store.claim_runs(10, [root]) == [root]
        assert await store.claim_runs(10, [root]) == [], "a held run was claimed again"
        assert await store.renew_leases([root]) == [root]
        await store.release_runs([root])
        assert await store.claim_runs(10, [root]) == [root], "a released run stayed held"
        await store.release_runs([root])


async def check_coordination_delivers_commands(factory: RuntimeFactory) -> None:
    """A command reaches the holder of its run once; completing it reaches the sender."""
    root = _uid("p")
    async with await _role(factory, Coordination) as runtime:
        await runtime.store.commit(_new_run(root, _uid("n")))
        store: Coordination = runtime.store
        assert await store.claim_runs(1, [root]) == [root]
        first = await store.submit_command(root, "pause", "{}")
        second = await store.submit_command(root, "resume", "{}")
        withdrawn = await store.submit_command(root, "revoke", "{}")
        assert await store.cancel_command(withdrawn), "a pending command was not withdrawn"
        taken = await store.pending_commands([root])
        assert [c.id for c in taken] == [first, second], taken
        assert await store.pending_commands([root]) == [], "a command was taken twice"
        assert not await store.cancel_command(first), "a taken command was withdrawn"
        await store.complete_command(first, True, "done")
        done = await store.get_command(first)
        assert done is not None, "get_command lost a command"
        assert (done.ok, done.message) == (True, "done"), done
        await store.wait_for_signal(0.01)
        await store.release_runs([root])


async def check_coordination_parks_and_wakes(factory: RuntimeFactory) -> None:
    """A parked run is claimed only by name, by a due timer, or by a pending command."""
    root, node = _uid("p"), _uid("n")
    batch = _new_run(root, node)
    batch.timers["t"] = TimerRow("t", root, node, "v1", "poll", 1000.0)
    async with await _role(factory, Coordination) as runtime:
        await runtime.store.commit(batch)
        store: Coordination = runtime.store
        assert await store.claim_runs(1, [root]) == [root]
        held = await store.get_run_holder(root)
        assert held is not None, "get_run_holder lost a run"
        assert held.owner == store.owner_id, held
        assert not held.parked, held
        assert await store.park_runs([root]) == [root], "a held run was not parked"
        parked = await store.get_run_holder(root)
        assert parked is not None, "get_run_holder lost a parked run"
        assert parked.owner is None, parked
        assert parked.parked, parked
        assert await store.get_run_holder(_uid("p")) is None, "an unknown run has a holder"
        assert root not in await store.claim_runs(100), "a parked run was claimed as ready"
        assert await store.claim_woken(100, 999.0) == [], "a timer woke a run before it was due"
        assert await store.claim_woken(100, 1000.0) == [root], "a due timer did not wake its run"
        assert await store.park_runs([root]) == [root]
        await runtime.store.commit(
            WriteBatch(root_id=root, timers={"t": TimerRow("t", root, node, "v1", "poll", None)})
        )
        assert await store.claim_woken(100, 10**10) == [], "a fired timer woke its run again"
        command = await store.submit_command(root, "pause", "{}")
        assert await store.claim_woken(100, 0.0) == [root], "a command did not wake its run"
        assert await store.park_runs([root]) == [], "a run was parked with a command waiting"
        await store.pending_commands([root])
        await store.complete_command(command, True, "")
        assert await store.park_runs([root]) == [root]
        assert await store.claim_runs(1, [root]) == [root], "a parked run was not claimed by name"
        await store.release_runs([root])


async def check_coordination_delivers_callbacks_to_parked_runs(factory: RuntimeFactory) -> None:
    """deliver_callback stores one callback for a parked run whose node waits for it."""
    root, node = _uid("p"), _uid("n")
    batch = _new_run(root, node)  # the node is RUNNING at version v1
    batch.processes["c"] = ProcessRow("c", root, None, node, None, (), "sleeping", None, (), ())
    batch.schedules["s"] = ScheduleRow("s", root, node, "v1", 1, "c", False, False, 0)

    def callback(version: str = "v1") -> CallbackRow:
        return CallbackRow(_uid("b"), root, node, version, '{"x": 1}', False, time.time())

    async with await _role(factory, Coordination) as runtime:
        await runtime.store.commit(batch)
        store: Coordination = runtime.store
        assert await store.claim_runs(1, [root]) == [root]
        assert not await store.deliver_callback(callback()), "delivered to a held run"
        assert await store.park_runs([root]) == [root]
        assert not await store.deliver_callback(callback("v2")), "delivered to another version"
        assert await store.deliver_callback(callback()), "not delivered to a waiting node"
        assert not await store.deliver_callback(callback()), "a second callback was stored"
        assert await store.claim_runs(1, [root]) == [root], "the run was not handed to a worker"
        snapshot = await runtime.store.load_run(root)
        assert snapshot is not None
        assert [c.data_json for c in snapshot.callbacks] == ['{"x": 1}'], snapshot.callbacks
        await store.release_runs([root])


async def check_event_log_in_commit_order(factory: RuntimeFactory) -> None:
    """Committed events come back in commit order, after a cursor, by run; purged by age."""
    root, other = _uid("p"), _uid("p")

    def event(root_id: str, n: int, at: float) -> EventRow:
        return EventRow(root_id, f"n{n}", "state", "RUNNING", f'{{"n": {n}}}', at)

    async with await _role(factory, EventLog) as runtime:
        store: EventLog = runtime.store
        start = await store.last_event_id()
        seen = store.events_seen
        first = _new_run(root, _uid("n"))
        first.events.extend([event(root, 1, 10.0), event(root, 2, 10.0)])
        await runtime.store.commit(first)
        second = _new_run(other, _uid("n"))
        second.events.append(event(other, 3, 20.0))
        await runtime.store.commit(second)
        await store.wait_for_events(seen, 5.0)
        assert store.events_seen > seen, "committing events did not wake their readers"
        rows = await store.read_events(start)
        assert [r.data_json for r in rows] == ['{"n": 1}', '{"n": 2}', '{"n": 3}'], rows
        ids = [r.id for r in rows]
        assert ids == sorted(set(ids)), ids
        assert ids[0] > start, (start, ids)
        assert await store.last_event_id() == ids[-1]
        assert [r.id for r in await store.read_events(ids[0])] == ids[1:]
        assert [r.id for r in await store.read_events(start, other)] == [ids[2]]
        assert [r.id for r in await store.read_events(start, limit=1)] == ids[:1]
        await store.purge_events(15.0)
        assert [r.id for r in await store.read_events(start)] == [ids[2]], "purge missed"


def _dated_run(root_id: str, created: float, *nodes: str, state: str = "RUNNING") -> WriteBatch:
    """A new run named "the root", created at ``created``, whose root node is in ``state``."""
    batch = _new_run(root_id, *nodes)
    assert batch.new_run is not None
    tree = json.dumps({"id": root_id, "name": "the root"})
    batch.new_run = attrs.evolve(batch.new_run, created_time=created, tree_json=tree)
    batch.states[root_id] = attrs.evolve(
        _state(root_id, root_id, root_id, state), created_time=created
    )
    return batch


def _end(root_id: str, status: str, at: float) -> WriteBatch:
    """Mark a run ended (finished or revoked) at ``at``, as the engine does."""
    state = "FINISHED" if status == RUN_FINISHED else "REVOKED"
    root = attrs.evolve(_state(root_id, root_id, root_id, state), archived_time=at)
    return WriteBatch(root_id=root_id, run_status=status, states={root_id: root})


async def check_retention_lists_runs_by_page(factory: RuntimeFactory) -> None:
    """Runs newest first, filtered by state and creation time, paged by a stable key."""
    base = 3e9 + uuid.uuid4().int % 10**6 * 100.0  # a range of time no other check uses
    roots = [_uid("p") for _ in range(5)]
    async with await _role(factory, Retention) as runtime:
        for i, root in enumerate(roots):
            await runtime.store.commit(_dated_run(root, base + i, _uid("n")))
        await runtime.store.commit(_end(roots[1], RUN_FINISHED, base + 50))
        store: Retention = runtime.store
        window: dict[str, Any] = {"created_after": base, "created_before": base + 100}
        everything = await store.list_runs(**window)
        assert [r.root_id for r in everything] == roots[::-1], everything
        first = everything[-1]
        assert (first.status, first.state, first.name) == (RUN_ACTIVE, "RUNNING", "the root")
        assert first.created_time == base, first
        page = await store.list_runs(limit=2, **window)
        assert [r.root_id for r in page] == [roots[4], roots[3]], page
        # A run created between two pages shifts nothing: the key, not an offset, pages on.
        await runtime.store.commit(_dated_run(_uid("p"), base + 10, _uid("n")))
        key = (page[-1].created_time, page[-1].root_id)
        page = await store.list_runs(limit=2, before_key=key, **window)
        assert [r.root_id for r in page] == [roots[2], roots[1]], page
        key = (page[-1].created_time, page[-1].root_id)
        page = await store.list_runs(limit=2, before_key=key, **window)
        assert [r.root_id for r in page] == [roots[0]], page
        finished = await store.list_runs(state="FINISHED", **window)
        assert [(r.root_id, r.status) for r in finished] == [(roots[1], RUN_FINISHED)], finished
        assert finished[0].archived_time == base + 50, finished
        middle = await store.list_runs(created_after=base + 1, created_before=base + 3)
        assert [r.root_id for r in middle] == [roots[2], roots[1]], middle


async def check_retention_purges_ended_runs(factory: RuntimeFactory) -> None:
    """Every row of an ended run goes, a batch at a time; active and recent runs stay."""
    old, revoked, recent, parked = (_uid("p") for _ in range(4))
    node, paused, other = _uid("n"), _uid("n"), _uid("n")
    batch = _dated_run(old, 1.0, node, paused)
    batch.states[paused] = _state(paused, "", old)  # an appointed pause: stored without a root
    batch.execution_data[node] = ExecutionDataRow(node, old, "{}", "{}")
    batch.node_data[node] = NodeDataRow(node, old, "{}")
    batch.histories.append(HistoryRow(_uid("h"), old, node, 1.0, 2.0, 1, False))
    batch.schedules["s" + old] = ScheduleRow("s" + old, old, node, "v1", 1, "c", True, False, 1)
    batch.callbacks["b" + old] = CallbackRow("b" + old, old, node, "v1", "{}", True, 1.0)
    batch.timers["t" + old] = TimerRow("t" + old, old, node, "v1", "poll", None)
    batch.events.append(EventRow(old, node, "state", "FINISHED", "{}", 2.0))
    async with await _role(factory, Retention) as runtime:
        start = await runtime.store.last_event_id()
        await runtime.store.commit(batch)
        command = await runtime.store.submit_command(old, "pause", "{}")
        await runtime.store.commit(_end(old, RUN_FINISHED, 5.0))
        await runtime.store.commit(_dated_run(revoked, 2.0, _uid("n")))
        await runtime.store.commit(_end(revoked, RUN_REVOKED, 6.0))
        await runtime.store.commit(_dated_run(recent, 3.0, _uid("n")))
        await runtime.store.commit(_end(recent, RUN_FINISHED, 500.0))
        await runtime.store.commit(_dated_run(parked, 4.0, other))
        assert await runtime.store.claim_runs(1, [parked]) == [parked]
        assert await runtime.store.park_runs([parked]) == [parked]
        store: Retention = runtime.store
        assert await store.purge_runs(100.0, 1) == [old], "not the oldest ended run first"
        assert await store.purge_runs(100.0, 10) == [revoked], "a revoked run stayed"
        assert await store.purge_runs(100.0, 10) == [], "an active or recent run was purged"
        assert await runtime.store.get_run(old) is None, "the run stayed"
        assert await runtime.store.load_run(old) is None
        assert await runtime.store.get_node_root(node) is None, "its nodes stayed"
        for gone in (node, paused, old):
            assert await runtime.store.get_state(gone) is None, f"the state of {gone} stayed"
        assert await runtime.store.get_execution_data(node) is None
        assert await runtime.store.get_node_data(node) is None
        assert await runtime.store.get_histories(node) == []
        assert await runtime.store.read_events(start, old) == [], "its events stayed"
        assert await runtime.store.get_command(command) is None, "its commands stayed"
        for kept in (recent, parked):
            assert await runtime.store.get_run(kept) is not None, f"{kept} was purged"
        assert await runtime.store.get_state(other) is not None
        assert await runtime.store.claim_runs(1, [parked]) == [parked], "the parked run changed"
        await runtime.store.release_runs([parked])


ROLE_CHECKS: dict[str, tuple[Check, ...]] = {
    "journal": (
        check_journal_stores_and_rebuilds_a_run,
        check_journal_refuses_a_taken_run,
        check_journal_applies_a_group_in_call_order,
    ),
    "read model": (check_read_model_answers_the_api,),
    "coordination": (
        check_coordination_claims_and_releases,
        check_coordination_delivers_commands,
        check_coordination_parks_and_wakes,
        check_coordination_delivers_callbacks_to_parked_runs,
    ),
    "event log": (check_event_log_in_commit_order,),
    "retention": (check_retention_lists_runs_by_page, check_retention_purges_ended_runs),
}
