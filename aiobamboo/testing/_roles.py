"""Conformance checks of a store's roles, one role at a time.

Each check opens ``factory(components=..., worker=False)`` (a client: its
scheduler claims nothing, so the store is the checks' alone) and talks to
``runtime.store`` directly, through the role's protocol only. A new runtime
can pass the journal checks before it has a read model, and so on.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ..exceptions import InvalidOperationError
from ..runtime import (
    RUN_ACTIVE,
    RUN_FINISHED,
    Coordination,
    ExecutionDataRow,
    HistoryRow,
    Journal,
    NodeDataRow,
    ProcessRow,
    ReadModel,
    RunRow,
    StateRow,
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
    ),
}
