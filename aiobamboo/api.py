"""The engine API: one coroutine per operation, each returning :class:`EngineAPIResult`.

Every function takes the runtime first. Refusals (a wrong state, an unknown
id, an invalid tree, a malformed argument) come back as ``result=False`` with
a message that says why, the exception in ``exc``; this module is the only
place where exceptions become results.
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, Generic, TypeVar

import attrs

from . import codec
from .engine import RunEvent, scheduler_of
from .engine._spec import parse_tree
from .exceptions import AiobambooError, InvalidOperationError, NotFoundError
from .runtime import HistoryRow, StateRow

__all__ = [
    "EngineAPIResult",
    "callback",
    "forced_fail_activity",
    "get_children_states",
    "get_data",
    "get_execution_data",
    "get_execution_data_inputs",
    "get_execution_data_outputs",
    "get_node_histories",
    "get_node_short_histories",
    "get_pipeline_states",
    "pause_node_appoint",
    "pause_pipeline",
    "resume_node_appoint",
    "resume_pipeline",
    "retry_node",
    "retry_subprocess",
    "revoke_pipeline",
    "run_pipeline",
    "skip_conditional_parallel_gateway",
    "skip_exclusive_gateway",
    "skip_node",
    "subscribe",
    "wait_pipeline",
]

logger = logging.getLogger("aiobamboo.api")
T = TypeVar("T")


@attrs.frozen
class EngineAPIResult(Generic[T]):
    """The outcome of an API call: ``result`` and ``message``; ``data`` on success."""

    result: bool
    message: str
    exc: Exception | None = None
    data: T | None = None

    @property
    def exc_trace(self) -> str | None:
        """The formatted exception, as the original's field of that name."""
        if self.exc is None:
            return None
        import traceback

        return "".join(traceback.format_exception(self.exc))


EngineAPIResult.__module__ = "aiobamboo.api"


async def _result(call: Callable[[], Awaitable[T]]) -> EngineAPIResult[T]:
    try:
        data = await call()
    except AiobambooError as exc:
        logger.info("refused: %s", exc)
        return EngineAPIResult(False, str(exc), exc, None)
    except Exception as exc:
        # Never raise to the caller (the contract), but say loudly that it was not a refusal.
        logger.exception("engine API call failed")
        return EngineAPIResult(False, f"internal error: {type(exc).__name__}: {exc}", exc, None)
    return EngineAPIResult(True, "success", None, data)


def _time(value: float | None) -> _dt.datetime | None:
    return None if value is None else _dt.datetime.fromtimestamp(value, tz=_dt.UTC)


def _check_id(value: Any, what: str = "node_id") -> str:
    if not isinstance(value, str) or not value:
        raise InvalidOperationError(f"{what} must be a non-empty string, got {value!r}")
    return value


# -- running ---------------------------------------------------------------------


async def run_pipeline(
    runtime: Any,
    pipeline: dict[str, Any],
    root_pipeline_data: dict[str, Any] | None = None,
    root_pipeline_context: dict[str, Any] | None = None,
    subprocess_context: dict[str, Any] | None = None,
    **options: Any,
) -> EngineAPIResult[None]:
    """Validate ``pipeline`` (mutating it as the original does), store it and start it.

    Options: ``cycle_tolerate`` (allow back edges), ``start_node_id``. The
    pipeline is durable once this returns ``result=True``.
    """

    async def call() -> None:
        unknown = set(options) - {"cycle_tolerate", "start_node_id", "queue", "priority"}
        if unknown:
            raise InvalidOperationError(f"unknown run_pipeline options: {sorted(unknown)}")
        if not isinstance(pipeline, dict):
            raise InvalidOperationError("pipeline must be a dict (the tree build_tree returns)")
        for name, value in (
            ("root_pipeline_data", root_pipeline_data),
            ("root_pipeline_context", root_pipeline_context),
            ("subprocess_context", subprocess_context),
        ):
            if value is not None and not isinstance(value, dict):
                raise InvalidOperationError(f"{name} must be a dict")
        await scheduler_of(runtime).run_pipeline(
            pipeline,
            root_pipeline_data=root_pipeline_data,
            root_pipeline_context=root_pipeline_context,
            subprocess_context=subprocess_context,
            cycle_tolerate=bool(options.get("cycle_tolerate", False)),
            start_node_id=options.get("start_node_id"),
        )

    return await _result(call)


async def wait_pipeline(
    runtime: Any,
    pipeline_id: str,
    timeout: float | None = None,  # noqa: ASYNC109 - the contract names this parameter
) -> EngineAPIResult[str]:
    """Wait until the pipeline cannot progress without an operator; ``data`` is the state.

    FINISHED, REVOKED or SUSPENDED (the root): at once. Otherwise once nothing
    runs or waits for a poll or callback and some node is FAILED (``"FAILED"``)
    or paused by pause_node_appoint (``"SUSPENDED"``); the message names them.
    """

    async def call() -> tuple[str, str]:
        _check_id(pipeline_id, "pipeline_id")
        try:
            return await scheduler_of(runtime).wait_pipeline(pipeline_id, timeout)
        except TimeoutError:
            raise InvalidOperationError(
                f"timed out after {timeout} s waiting for pipeline {pipeline_id}"
            ) from None

    res = await _result(call)
    if not res.result or res.data is None:
        return EngineAPIResult(res.result, res.message, res.exc, None)
    state, message = res.data
    return EngineAPIResult(True, message, None, state)


def subscribe(
    runtime: Any, pipeline_id: str | None = None
) -> AbstractAsyncContextManager[AsyncIterator[RunEvent]]:
    """Committed state changes, in order per pipeline: ``async with subscribe(rt) as events:``.

    Each :class:`~aiobamboo.engine.RunEvent` is one of ``state``,
    ``pipeline_failed``, ``pipeline_finished``, ``pipeline_revoked``. Events of
    this runtime's scheduler only; a slow consumer never slows the engine.
    """
    return scheduler_of(runtime).subscribe(pipeline_id)


# -- operator actions ---------------------------------------------------------------


def _op(name: str) -> Callable[..., Awaitable[EngineAPIResult[None]]]:
    async def operation(
        runtime: Any, node_id: str, *args: Any, **kwargs: Any
    ) -> EngineAPIResult[None]:
        async def call() -> None:
            _check_id(node_id)
            await scheduler_of(runtime).operate(name, node_id, *args)

        return await _result(call)

    operation.__name__ = operation.__qualname__ = name
    return operation


async def pause_pipeline(runtime: Any, pipeline_id: str) -> EngineAPIResult[None]:
    """Pause a pipeline or sub-process: running nodes finish, nothing new starts."""
    return await _op("pause_pipeline")(runtime, pipeline_id)


async def resume_pipeline(runtime: Any, pipeline_id: str) -> EngineAPIResult[None]:
    """Resume a paused pipeline or sub-process."""
    return await _op("resume_pipeline")(runtime, pipeline_id)


async def revoke_pipeline(runtime: Any, pipeline_id: str) -> EngineAPIResult[None]:
    """Revoke a root pipeline: nothing further runs, waits are dropped."""
    return await _op("revoke_pipeline")(runtime, pipeline_id)


async def pause_node_appoint(runtime: Any, node_id: str) -> EngineAPIResult[None]:
    """Make the pipeline stop before ``node_id`` (not reached yet, or READY)."""
    return await _op("pause_node_appoint")(runtime, node_id)


async def resume_node_appoint(runtime: Any, node_id: str) -> EngineAPIResult[None]:
    """Let a process paused before ``node_id`` go on."""
    return await _op("resume_node_appoint")(runtime, node_id)


async def retry_node(
    runtime: Any, node_id: str, data: dict[str, Any] | None = None
) -> EngineAPIResult[None]:
    """Run a FAILED node again.

    ``data`` replaces its inputs; keys listed in ``data["_escape_render_keys"]`` stay unrendered.
    """
    return await _op("retry_node")(runtime, node_id, data)


async def retry_subprocess(runtime: Any, node_id: str) -> EngineAPIResult[None]:
    """Run a FAILED sub-process node again."""
    return await _op("retry_subprocess")(runtime, node_id)


async def skip_node(runtime: Any, node_id: str) -> EngineAPIResult[None]:
    """Mark a FAILED activity (or start event) FINISHED and go on after it."""
    return await _op("skip_node")(runtime, node_id)


async def skip_exclusive_gateway(runtime: Any, node_id: str, flow_id: str) -> EngineAPIResult[None]:
    """Take ``flow_id`` out of a FAILED exclusive gateway."""
    return await _op("skip_exclusive_gateway")(runtime, node_id, flow_id)


async def skip_conditional_parallel_gateway(
    runtime: Any, node_id: str, flow_ids: list[str], converge_gateway_id: str
) -> EngineAPIResult[None]:
    """Fork ``flow_ids`` out of a FAILED conditional parallel gateway."""
    return await _op("skip_conditional_parallel_gateway")(
        runtime, node_id, list(flow_ids), converge_gateway_id
    )


async def forced_fail_activity(
    runtime: Any, node_id: str, ex_data: str, send_post_set_state_signal: bool = True
) -> EngineAPIResult[None]:
    """Fail a RUNNING activity now; its in-flight work is discarded when it returns."""
    return await _op("forced_fail_activity")(runtime, node_id, ex_data, send_post_set_state_signal)


async def callback(runtime: Any, node_id: str, version: str, data: Any) -> EngineAPIResult[None]:
    """Deliver callback ``data`` to the attempt ``version`` of a waiting activity.

    The data is durable once this returns ``result=True``.
    """
    return await _op("callback")(runtime, node_id, version, data)


# -- reads -------------------------------------------------------------------------


def _state_entry(row: StateRow, *, parent_id: str | None = None) -> dict[str, Any]:
    return {
        "id": row.node_id,
        "state": row.state,
        "root_id:": row.root_id,
        "root_id": row.root_id,
        "parent_id": row.parent_id if parent_id is None else parent_id,
        "version": row.version,
        "loop": row.loop,
        "retry": row.retry,
        "skip": row.skip,
        "error_ignorable": row.error_ignored,
        "error_ignored": row.error_ignored,
        "created_time": _time(row.created_time),
        "started_time": _time(row.started_time),
        "archived_time": _time(row.archived_time),
        "children": {},
    }


async def get_pipeline_states(
    runtime: Any, root_id: str, flat_children: bool = True
) -> EngineAPIResult[dict[str, Any]]:
    """The state tree of a root pipeline (``{}`` when it has no state)."""

    async def call() -> dict[str, Any]:
        rows = await scheduler_of(runtime).store.get_states_by_root(_check_id(root_id, "root_id"))
        root_row = next((r for r in rows if r.node_id == root_id), None)
        if root_row is None:
            return {}
        # As the original: the root entry's parent_id is the root id itself.
        root = _state_entry(root_row, parent_id=root_id)
        entries = {r.node_id: _state_entry(r) for r in rows if r.node_id != root_id}
        if flat_children:
            root["children"] = entries
        else:
            for node_id, entry in entries.items():
                parent = entries.get(entry["parent_id"], root)
                parent["children"][node_id] = entry
        return {root_id: root}

    return await _result(call)


async def get_children_states(runtime: Any, node_id: str) -> EngineAPIResult[dict[str, Any]]:
    """A node's state with the states directly inside it (``{}`` when it has none)."""

    async def call() -> dict[str, Any]:
        store = scheduler_of(runtime).store
        row = await store.get_state(_check_id(node_id))
        if row is None:
            return {}
        entry = _state_entry(row, parent_id=row.root_id)
        for child in await store.get_states_by_parent(node_id):
            if child.node_id != node_id:
                entry["children"][child.node_id] = _state_entry(child)
        return {node_id: entry}

    return await _result(call)


async def get_execution_data_inputs(runtime: Any, node_id: str) -> EngineAPIResult[dict[str, Any]]:
    """The node's rendered inputs (``{}`` when it has none)."""

    async def call() -> dict[str, Any]:
        row = await scheduler_of(runtime).store.get_execution_data(_check_id(node_id))
        return codec.loads(row.inputs_json) if row else {}

    return await _result(call)


async def get_execution_data_outputs(runtime: Any, node_id: str) -> EngineAPIResult[dict[str, Any]]:
    """The node's outputs (``{}`` when it has none)."""

    async def call() -> dict[str, Any]:
        row = await scheduler_of(runtime).store.get_execution_data(_check_id(node_id))
        return codec.loads(row.outputs_json) if row else {}

    return await _result(call)


async def get_execution_data(runtime: Any, node_id: str) -> EngineAPIResult[dict[str, Any]]:
    """``{"inputs", "outputs"}``; refused when the node has no execution data."""

    async def call() -> dict[str, Any]:
        row = await scheduler_of(runtime).store.get_execution_data(_check_id(node_id))
        if row is None:
            raise NotFoundError(f"execution data of node({node_id}) does not exist")
        return {"inputs": codec.loads(row.inputs_json), "outputs": codec.loads(row.outputs_json)}

    return await _result(call)


async def get_data(runtime: Any, node_id: str) -> EngineAPIResult[dict[str, Any]]:
    """The node's raw data: ``{"inputs": {key: {"need_render", "value"}}, "outputs": {...}}``."""

    async def call() -> dict[str, Any]:
        scheduler = scheduler_of(runtime)
        root_id = await scheduler.root_of(_check_id(node_id))
        run_row = await scheduler.store.get_run(root_id)
        if run_row is None:
            raise NotFoundError(f"node({node_id}) does not exist")
        options = codec.loads(run_row.options_json)
        if node_id == root_id:
            inputs = {
                k: {"need_render": False, "value": v}
                for k, v in (options.get("root_pipeline_data") or {}).items()
            }
            return {"inputs": inputs, "outputs": {}}
        spec = parse_tree(codec.loads(run_row.tree_json), options.get("subprocess_context"))
        node = spec.nodes[node_id]
        override = await scheduler.store.get_node_data(node_id)
        if override is not None:
            inputs = codec.loads(override.inputs_json)
        else:
            inputs = {
                k: {"need_render": v.need_render, "value": v.value} for k, v in node.inputs.items()
            }
        return {"inputs": inputs, "outputs": dict(node.outputs)}

    return await _result(call)


def _history(row: HistoryRow, short: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "id": row.id,
        "node_id": row.node_id,
        "started_time": _time(row.started_time),
        "archived_time": _time(row.archived_time),
        "retry": row.retry,
        "loop": row.loop,
        "skip": row.skip,
        "version": row.version,
    }
    if not short:
        entry["inputs"] = codec.loads(row.inputs_json)
        entry["outputs"] = codec.loads(row.outputs_json)
    return entry


async def get_node_histories(
    runtime: Any, node_id: str, loop: int = -1
) -> EngineAPIResult[list[dict[str, Any]]]:
    """The node's earlier attempts, oldest first (``loop=-1``: every loop)."""

    async def call() -> list[dict[str, Any]]:
        rows = await scheduler_of(runtime).store.get_histories(_check_id(node_id), loop)
        return [_history(r, False) for r in rows]

    return await _result(call)


async def get_node_short_histories(
    runtime: Any, node_id: str, loop: int = -1
) -> EngineAPIResult[list[dict[str, Any]]]:
    """As :func:`get_node_histories`, without inputs and outputs."""

    async def call() -> list[dict[str, Any]]:
        rows = await scheduler_of(runtime).store.get_histories(_check_id(node_id), loop)
        return [_history(r, True) for r in rows]

    return await _result(call)
