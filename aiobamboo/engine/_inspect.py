"""Looking at pipelines without driving them: debug views, execution times, input previews.

Everything here reads what storage committed (a run held by another worker is
seen as that worker last stored it) or works on a tree the caller passes; no
run is claimed, loaded for driving, or changed.
"""

from __future__ import annotations

import copy
import enum
import time
from typing import TYPE_CHECKING, Any

import attrs

from .. import codec, validator
from ..exceptions import InvalidOperationError, NotFoundError
from ..runtime import StateRow
from ._context import hydrate, new_budget, references_of, render_values, render_within
from ._run import Run
from ._spec import (
    ACTIVITY,
    PLAIN,
    SUBPROCESS,
    ContextVar,
    NodeSpec,
    RunSpec,
    context_key,
    parse_tree,
)

if TYPE_CHECKING:
    from ._scheduler import Scheduler


class ContextValueType(enum.IntEnum):
    """How a context value is resolved; the original's names and numbers."""

    PLAIN = 1
    SPLICE = 2
    COMPUTE = 3


#: The tree's names for the context value types (``Var.PLAIN`` ...).
_TYPE_NAMES = {"plain": ContextValueType.PLAIN, "splice": ContextValueType.SPLICE}
_TYPE_NAMES["lazy"] = ContextValueType.COMPUTE


def context_value_type(value: Any) -> ContextValueType:
    """``value`` as a :class:`ContextValueType`: the enum, its number, or the tree's name."""
    if isinstance(value, str) and value.lower() in _TYPE_NAMES:
        return _TYPE_NAMES[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return ContextValueType(value)
        except ValueError:
            pass
    raise InvalidOperationError(
        f"context value type must be a ContextValueType, 1, 2, 3, 'plain', 'splice' or 'lazy', "
        f"got {value!r:.80}"
    )


@attrs.frozen
class ContextValue:
    """One value of a pipeline's context: the original's ``ContextValue``.

    ``key`` is the variable's key (``"${name}"``; a bare ``name`` is accepted
    where one is passed in), ``code`` the lazy variable type of a COMPUTE value.
    """

    key: str
    type: ContextValueType
    value: Any
    code: str | None = None


@attrs.frozen
class ProcessInfo:
    """One process (branch of execution) of a run, as storage holds it.

    The original's fields (``process_id``, ``destination_id``,
    ``root_pipeline_id``, ``pipeline_stack``, ``parent_id``) and where it is:
    ``current_node_id``, ``status`` (running, sleeping, suspended, joining,
    dead), ``suspended_by`` and its ``children``.
    """

    process_id: str
    destination_id: str | None
    root_pipeline_id: str
    pipeline_stack: list[str]
    parent_id: str | None
    current_node_id: str
    status: str
    suspended_by: str | None
    children: list[str]


async def stored_run(scheduler: Scheduler, root_id: str) -> Run:
    """The run as storage last committed it, rebuilt for reading (never driven)."""
    snap = await scheduler.store.load_run(root_id)
    if snap is None:
        raise NotFoundError(f"node({root_id}) does not exist")
    run = scheduler._build(codec.loads(snap.run.tree_json), codec.loads(snap.run.options_json))
    run.restore(snap)
    return run


def _pipeline_of(run: Run, pipeline_id: str) -> None:
    if pipeline_id in run.spec.pipelines:
        return
    node = run.spec.nodes.get(pipeline_id)
    if node is None:
        raise NotFoundError(f"node({pipeline_id}) does not exist")
    raise InvalidOperationError(f"{pipeline_id} is not a pipeline or a sub-process")


async def pipeline_debug_info(scheduler: Scheduler, pipeline_id: str) -> dict[str, Any]:
    """``{"context_values": [ContextValue], "processes": [ProcessInfo]}`` of a pipeline.

    The context is the pipeline's own (a sub-process has its own); the processes
    are those whose pipeline stack holds it (every process of the run for the root).
    """
    run = await stored_run(scheduler, await scheduler.root_of(pipeline_id))
    _pipeline_of(run, pipeline_id)
    context = [
        ContextValue(key, ContextValueType(var.type), var.value, var.custom_type)
        for key, var in sorted(run.contexts.get(pipeline_id, {}).items())
    ]
    processes = [
        ProcessInfo(
            process_id=proc.id,
            destination_id=proc.destination_id,
            root_pipeline_id=run.root_id,
            pipeline_stack=list(proc.stack),
            parent_id=proc.parent_id,
            current_node_id=proc.current_node_id,
            status=str(proc.status),
            suspended_by=proc.suspended_by,
            children=list(proc.children),
        )
        for proc in run.processes.values()
        if pipeline_id in proc.stack
    ]
    return {"context_values": context, "processes": processes}


def node_description(spec: RunSpec, node_id: str) -> dict[str, Any]:
    """The node as the engine reads it from the tree: the original's ``Node`` fields."""
    node = spec.nodes.get(node_id)
    if node is None:
        raise NotFoundError(f"node({node_id}) does not exist")
    described: dict[str, Any] = {
        "id": node.id,
        "type": node.type,
        "name": node.name,
        "targets": dict(node.targets),
        "target_flows": list(node.targets),
        "target_nodes": list(node.targets.values()),
        "root_pipeline_id": spec.root_id,
        "parent_pipeline_id": node.pipeline_id,
        "can_skip": node.can_skip,
        "can_retry": node.can_retry,
    }
    if node.kind == ACTIVITY:
        described.update(
            code=node.code,
            version=node.version,
            error_ignorable=node.error_ignorable,
            loop_config=None if node.loop is None else attrs.asdict(node.loop),
        )
    return described


def execution_time(node_id: str, row: StateRow | None) -> dict[str, Any]:
    """``{"state", "start_time", "archived_time", "execution_time"}`` of a node's state row.

    Seconds from the start to the archive time, or to now while the node runs.
    """
    from datetime import UTC, datetime

    if row is None:
        raise InvalidOperationError(f"node({node_id}) has no state: it has not been reached")
    if row.started_time is None:
        raise InvalidOperationError(f"node({node_id}) has not started (state {row.state})")
    end = row.archived_time if row.archived_time is not None else time.time()
    return {
        "state": row.state,
        "start_time": datetime.fromtimestamp(row.started_time, tz=UTC),
        "archived_time": None
        if row.archived_time is None
        else datetime.fromtimestamp(row.archived_time, tz=UTC),
        "execution_time": end - row.started_time,
    }


# -- previews --------------------------------------------------------------------


def _parent_param(key: str, entry: Any) -> ContextVar:
    if not isinstance(entry, dict) or "value" not in entry:
        raise InvalidOperationError(
            f'parent_params[{key!r}] must be a dict {{"type": ..., "value": ...}}, '
            f"got {entry!r:.80}"
        )
    kind = context_value_type(entry.get("type", "plain"))
    code = entry.get("custom_type") or entry.get("code")
    return ContextVar(int(kind), entry["value"], code)


async def _render(
    scheduler: Scheduler, run: Run, pipeline_id: str, node: NodeSpec
) -> dict[str, Any]:
    """The node's inputs (an activity) or params (a sub-process), rendered in ``pipeline_id``."""
    raw = node.inputs
    render = {k: v.value for k, v in raw.items() if v.need_render}
    budget = new_budget()
    namespace = await hydrate(
        scheduler.env, run, pipeline_id, references_of(render.values()), budget=budget
    )
    # A node's first entry: the counters it would render with.
    namespace.update({"_loop": 1, "_inner_loop": 1})
    rendered = await render_within(budget, render_values, render, namespace)
    rendered.update({k: v.value for k, v in raw.items() if not v.need_render})
    return rendered


async def preview_inputs(
    scheduler: Scheduler,
    pipeline: dict[str, Any],
    node_id: str,
    subprocess_stack: list[str],
    root_pipeline_data: dict[str, Any],
    parent_params: dict[str, Any],
) -> dict[str, Any]:
    """The inputs ``node_id`` would be rendered with, from the tree alone; nothing runs.

    ``subprocess_stack``: the sub-process ids from the root down to the node's
    pipeline; each one's params are rendered into its child's context, as a run
    does. ``parent_params`` (``{key: {"type", "value"}}``) override the top
    pipeline's context. Lazy variables are evaluated. No node has outputs yet,
    so variables fed by outputs have their declared value.
    """
    tree = copy.deepcopy(pipeline)
    # Processed as run_pipeline would (an already processed tree stays as it is).
    validator.validate_and_process_pipeline(tree, cycle_tolerate=True)
    spec = parse_tree(tree)
    run = Run(scheduler.store, spec, root_pipeline_data)
    top = spec.root_id
    for key, entry in parent_params.items():
        run.contexts[top][context_key(key)] = _parent_param(key, entry)
    for sub_id in subprocess_stack:
        sub = spec.nodes.get(sub_id)
        if sub is None or sub.pipeline_id != top:
            raise NotFoundError(f"node({sub_id}) does not exist in pipeline {top}")
        if sub.kind != SUBPROCESS:
            raise InvalidOperationError(f"{sub_id} is not a sub-process, actual: {sub.type}")
        params = await _render(scheduler, run, top, sub)
        for key, value in params.items():
            run.contexts.setdefault(sub_id, {})[context_key(key)] = ContextVar(PLAIN, value)
        top = sub_id
    node = spec.nodes.get(node_id)
    if node is None or node.pipeline_id != top:
        raise NotFoundError(f"node({node_id}) does not exist in pipeline {top}")
    if node.kind not in (ACTIVITY, SUBPROCESS):
        raise InvalidOperationError(f"can not preview inputs for node type: {node.type}")
    return await _render(scheduler, run, top, node)


__all__ = [
    "ContextValue",
    "ContextValueType",
    "ProcessInfo",
    "context_value_type",
    "execution_time",
    "node_description",
    "pipeline_debug_info",
    "preview_inputs",
    "stored_run",
]
