"""Small helpers shared by the behavioural (contract) tests: build, run, wait, read.

Waiting is always event- or poll-driven with a deadline (``anyio.fail_after``),
never a fixed sleep for progress.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio

from aiobamboo import api, states

from . import components, components_flow

assert components  # registers the shared test components
assert components_flow  # registers the flow_ components


async def drop_schema(rt: Any) -> None:
    """Drop a PostgreSQL test schema made by conftest (no-op for SQLite)."""
    if getattr(rt, "_test_drop_schema", False):
        import asyncpg

        conn = await asyncpg.connect(rt.dsn)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{rt.schema}" CASCADE')
        finally:
            await conn.close()


#: Pause between two polls of the state tree (not a wait for progress).
POLL = 0.005


def uid(prefix: str = "n") -> str:
    """A fresh node or pipeline id, so tests never share GATES/EXECUTIONS keys."""
    return f"{prefix}{uuid.uuid4().hex[:10]}"


async def start(runtime: Any, tree: dict[str, Any], **kwargs: Any) -> str:
    """Run ``tree`` and assert that the engine accepted it; the root id."""
    res = await api.run_pipeline(runtime, tree, **kwargs)
    assert res.result, res.message
    return str(tree["id"])


async def finish(runtime: Any, pipeline_id: str, expected: str = states.FINISHED) -> str:
    """Wait for the pipeline to come to rest and assert its resting state."""
    res = await api.wait_pipeline(runtime, pipeline_id, timeout=5)
    assert res.result, res.message
    assert res.data == expected, (res.data, res.message)
    return res.message


async def run(
    runtime: Any, tree: dict[str, Any], expected: str = states.FINISHED, **kwargs: Any
) -> str:
    """Run ``tree`` to rest; the root id."""
    root_id = await start(runtime, tree, **kwargs)
    await finish(runtime, root_id, expected)
    return root_id


async def not_stored(runtime: Any, node_id: str) -> None:
    """Assert that no stored pipeline holds ``node_id``: every read refuses it as unknown."""
    from aiobamboo.exceptions import NotFoundError

    res = await api.get_pipeline_states(runtime, node_id)
    assert not res.result, res.data
    assert isinstance(res.exc, NotFoundError), res.message
    assert res.message == f"node({node_id}) does not exist"


async def flat_states(runtime: Any, root_id: str) -> dict[str, dict[str, Any]]:
    """``{node_id: entry}`` for the root and every node with a state, at any depth."""
    res = await api.get_pipeline_states(runtime, root_id)
    assert res.result, res.message
    if not res.data:
        return {}
    root = dict(res.data[root_id])
    children = root.pop("children")
    return {root_id: root, **children}


async def state_of(runtime: Any, node_id: str) -> str | None:
    """The node's state name, ``None`` when it has no state."""
    entry = await entry_of(runtime, node_id)
    return None if entry is None else str(entry["state"])


async def entry_of(runtime: Any, node_id: str) -> dict[str, Any] | None:
    res = await api.get_children_states(runtime, node_id)
    assert res.result, res.message
    return res.data.get(node_id) if res.data else None


async def wait_state(runtime: Any, node_id: str, state: str, within: float = 5) -> dict[str, Any]:
    """Poll until ``node_id`` is in ``state``; its state entry."""
    entry: dict[str, Any] | None = None
    try:
        with anyio.fail_after(within):
            while True:
                entry = await entry_of(runtime, node_id)
                if entry is not None and entry["state"] == state:
                    return entry
                await anyio.sleep(POLL)
    except TimeoutError:
        seen = None if entry is None else entry["state"]
        raise AssertionError(f"{node_id} not {state} after {within} s (last: {seen})") from None


async def wait_for(predicate: Any, within: float = 5, what: str = "condition") -> Any:
    """Poll ``await predicate()`` until it returns something truthy; that value."""
    try:
        with anyio.fail_after(within):
            while True:
                value = await predicate()
                if value:
                    return value
                await anyio.sleep(POLL)
    except TimeoutError:
        raise AssertionError(f"{what} not reached after {within} s") from None


async def outputs(runtime: Any, node_id: str) -> dict[str, Any]:
    res = await api.get_execution_data_outputs(runtime, node_id)
    assert res.result, res.message
    return dict(res.data)


async def inputs(runtime: Any, node_id: str) -> dict[str, Any]:
    res = await api.get_execution_data_inputs(runtime, node_id)
    assert res.result, res.message
    return dict(res.data)


async def waiting_version(runtime: Any, node_id: str, within: float = 5) -> str:
    """Wait until ``node_id`` runs and has stored its execute outputs; its version."""
    entry = await wait_state(runtime, node_id, states.RUNNING, within)

    async def executed() -> bool:
        return bool(await outputs(runtime, node_id))

    await wait_for(executed, within, f"{node_id} executed")
    return str(entry["version"])


async def deliver(
    runtime: Any, node_id: str, version: str, data: Any, within: float = 5
) -> api.EngineAPIResult[None]:
    """``api.callback``, retried only while the node's process is not asleep yet.

    A callback that races the end of ``execute`` is refused with "can not find
    sleep process" (as in the original); callers of a real system retry too.
    """
    res: api.EngineAPIResult[None] | None = None
    with anyio.fail_after(within):
        while True:
            res = await api.callback(runtime, node_id, version, data)
            if res.result or "can not find sleep process" not in res.message:
                return res
            await anyio.sleep(POLL)


def activity(code: str, node_id: str | None = None, /, **inputs: Any) -> Any:
    """A ServiceActivity; plain values become PLAIN inputs, `Var`s are kept as given."""
    from aiobamboo.builder import ServiceActivity, Var

    act = ServiceActivity(component_code=code, id=node_id or uid("a"))
    for key, value in inputs.items():
        act.component.inputs[key] = value if isinstance(value, Var) else Var(Var.PLAIN, value)
    return act


def splice(value: Any) -> Any:
    from aiobamboo.builder import Var

    return Var(Var.SPLICE, value)


def plain(value: Any) -> Any:
    from aiobamboo.builder import Var

    return Var(Var.PLAIN, value)


def open_gate(node_id: str) -> None:
    """Let a ``gate`` activity (running or not reached yet) pass."""
    gate = components.GATES.get(node_id)
    if gate is None:
        gate = components.GATES[node_id] = anyio.Event()
    gate.set()
