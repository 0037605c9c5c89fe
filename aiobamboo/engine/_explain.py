"""Why a pipeline is not moving: what each process waits on, and what would unblock it.

Read from the run in this scheduler's memory when it is here, else from
storage (as a restart would load it, without claiming or loading it), so it
works for parked runs, runs other workers hold, and on client runtimes.
The dict it returns is documented in ``docs/observability.md``.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import TYPE_CHECKING, Any

from .. import codec, states
from ..exceptions import NotFoundError
from ..runtime import RUN_ACTIVE, RunHolder
from ._run import (
    MULTIPLE_CALLBACK,
    P_DEAD,
    P_JOINING,
    P_RUNNING,
    P_SLEEPING,
    P_SUSPENDED,
    POLL,
    Process,
    Run,
    Schedule,
)
from ._spec import ACTIVITY, CONDITIONAL_PARALLEL, EXCLUSIVE, START, SUBPROCESS, parse_tree

if TYPE_CHECKING:
    from ._scheduler import Scheduler

__all__ = ["explain"]


def _time(value: float | None) -> _dt.datetime | None:
    return None if value is None else _dt.datetime.fromtimestamp(value, tz=_dt.UTC)


def _op(operation: str, **args: Any) -> dict[str, Any]:
    """An operation of :mod:`aiobamboo.api`, with its arguments and how to call it."""
    shown = ", ".join("data" if k == "data" else repr(v) for k, v in args.items())
    return {"operation": operation, "args": args, "call": f"{operation}(runtime, {shown})"}


async def explain(scheduler: Scheduler, pipeline_id: str) -> dict[str, Any]:
    """The explanation of the root pipeline holding ``pipeline_id`` (any node id of it too)."""
    root_id = await scheduler.root_of(pipeline_id)
    store = scheduler.store
    row = await store.get_run(root_id)
    if row is None:
        raise NotFoundError(f"node({pipeline_id}) does not exist")
    holder = await store.get_run_holder(root_id)
    run = scheduler.runs.get(root_id)
    here = run is not None
    if run is None and row.status == RUN_ACTIVE:
        snap = await store.load_run(root_id)
        if snap is not None:
            options = codec.loads(snap.run.options_json)
            spec = parse_tree(codec.loads(snap.run.tree_json), options.get("subprocess_context"))
            run = Run(store, spec, {})
            run.restore(snap)
    root_state = run.states.get(root_id) if run is not None else None
    if root_state is None:
        stored = await store.get_state(root_id)
        state = stored.state if stored is not None else None
    else:
        state = str(root_state.state)
    waits = _waits(run) if run is not None and row.status == RUN_ACTIVE else []
    if run is not None and root_state is not None and root_state.state == states.SUSPENDED:
        waits.insert(0, _root_paused(run, root_id))
    held = _held(scheduler, holder, here, row.status)
    moving = any(w["kind"] == "running" for w in waits)
    return {
        "pipeline_id": root_id,
        "status": row.status,
        "state": state,
        "moving": moving,
        "held_by": held,
        "waits": waits,
        "wakes": _wakes(waits) if row.status == RUN_ACTIVE else [],
        "summary": _summary(root_id, row.status, state, held, waits),
    }


def _held(
    scheduler: Scheduler, holder: RunHolder | None, here: bool, status: str
) -> dict[str, Any]:
    if status != RUN_ACTIVE:
        return {"where": "ended", "owner": None, "lease_until": None}
    if holder is None:
        holder = RunHolder(None, None, False)
    owner, until = holder.owner, _time(holder.lease_until)
    if here:
        where = "here"
    elif holder.parked:
        where = "parked"
    elif owner is None:
        where = "nobody"
    elif owner == scheduler.store.owner_id:
        where = "here"  # being loaded, parked or reloaded at this moment
    elif holder.lease_until is not None and holder.lease_until < time.time():
        where = "expired"
    else:
        where = "worker"
    return {"where": where, "owner": owner, "lease_until": until}


def _base(run: Run, proc: Process, kind: str, node_id: str) -> dict[str, Any]:
    node = run.spec.nodes.get(node_id)
    st = run.states.get(node_id)
    return {
        "kind": kind,
        "process_id": proc.id,
        "pipeline_id": proc.stack[-1] if proc.stack else run.root_id,
        "node_id": node_id,
        "node_name": node.name if node is not None else "",
        "node_type": node.type if node is not None else "",
        "component_code": node.code if node is not None and node.kind == ACTIVITY else None,
        "state": str(st.state) if st is not None else None,
        "version": st.version if st is not None else None,
        "since": _time(st.started_time) if st is not None else None,
        "unblock": [],
    }


def _waits(run: Run) -> list[dict[str, Any]]:
    waits = []
    for proc in run.processes.values():
        if proc.status == P_DEAD:
            continue
        if proc.status == P_JOINING:
            waits.append(_converge(run, proc))
        elif proc.status == P_SUSPENDED:
            waits.append(_suspended(run, proc))
        elif proc.status == P_SLEEPING:
            waits.append(_sleeping(run, proc))
        elif proc.status == P_RUNNING:
            waits.append(_running(run, proc))
    return waits


def _root_paused(run: Run, root_id: str) -> dict[str, Any]:
    st = run.states[root_id]
    return {
        "kind": "pipeline_paused",
        "process_id": None,
        "pipeline_id": root_id,
        "node_id": root_id,
        "node_name": st.name,
        "node_type": "Pipeline",
        "component_code": None,
        "state": str(st.state),
        "version": st.version,
        "since": None,
        "detail": f"pipeline {root_id} is paused: no node starts until it is resumed",
        "unblock": [_op("resume_pipeline", pipeline_id=root_id)],
    }


def _converge(run: Run, proc: Process) -> dict[str, Any]:
    children = [run.processes[c] for c in proc.children if c in run.processes]
    converge = next((c.destination_id for c in children if c.destination_id), None)
    waiting = [
        {
            "process_id": child.id,
            "node_id": child.current_node_id,
            "state": run.state_of(child.current_node_id),
            "status": str(child.status),
        }
        for child in children
        if child.status != P_DEAD
    ]
    wait = _base(run, proc, "converge", converge or proc.current_node_id)
    arrived = len(set(proc.acks))
    wait["waiting_for"] = waiting
    wait["arrived"] = arrived
    wait["since"] = None
    wait["detail"] = (
        f"converge gateway {converge} waits for {len(waiting)} of {len(children)} branches "
        f"(at {', '.join(str(w['node_id']) for w in waiting) or 'nothing'}); "
        "each branch's own wait says what would move it"
    )
    return wait


def _suspended(run: Run, proc: Process) -> dict[str, Any]:
    by = proc.suspended_by or proc.current_node_id
    if (
        by == proc.current_node_id
        and run.state_of(by) == states.SUSPENDED
        and (by not in run.spec.pipelines)
    ):
        wait = _base(run, proc, "node_paused", by)
        wait["detail"] = f"paused before node {by} (pause_node_appoint)"
        wait["unblock"] = [_op("resume_node_appoint", node_id=by)]
        return wait
    wait = _base(run, proc, "pipeline_paused", proc.current_node_id)
    wait["paused_pipeline_id"] = by
    wait["detail"] = f"the process stopped before node {proc.current_node_id}: {by} is paused"
    wait["unblock"] = [_op("resume_pipeline", pipeline_id=by)]
    return wait


def _live_schedule(run: Run, node_id: str, version: str) -> Schedule | None:
    sched = run.schedules.get((node_id, version))
    if sched is None or sched.finished or sched.expired:
        return None
    return sched


def _sleeping(run: Run, proc: Process) -> dict[str, Any]:
    node_id = proc.current_node_id
    st = run.states.get(node_id)
    if st is not None and st.state == states.FAILED:
        return _failed(run, proc)
    if st is not None and st.state == states.SUSPENDED:
        wait = _base(run, proc, "node_paused", node_id)
        wait["detail"] = f"paused at node {node_id} (pause_node_appoint)"
        wait["unblock"] = [_op("resume_node_appoint", node_id=node_id)]
        return wait
    sched = _live_schedule(run, node_id, st.version) if st is not None else None
    if st is None or sched is None or st.state != states.RUNNING:
        wait = _base(run, proc, "asleep", node_id)
        wait["detail"] = f"the process sleeps at node {node_id} ({st.state if st else 'no state'})"
        return wait
    queued = len(run.callbacks.get((node_id, st.version)) or ())
    forced = _op("forced_fail_activity", node_id=node_id, ex_data="...")
    if sched.type == POLL:
        wait = _base(run, proc, "poll", node_id)
        wait["due"] = _time(sched.due)
        wait["polls"] = sched.times
        due = f"at {wait['due'].isoformat()}" if wait["due"] is not None else "now"
        wait["detail"] = f"node {node_id} polls again {due} (poll {sched.times + 1})"
        wait["unblock"] = [
            _op("callback", node_id=node_id, version=st.version, data=None),
            forced,
        ]
    else:
        wait = _base(run, proc, "callback", node_id)
        multiple = sched.type == MULTIPLE_CALLBACK
        wait["callbacks_taken"] = sched.times
        wait["detail"] = (
            f"node {node_id} waits for {'its next callback' if multiple else 'a callback'} "
            f"to version {st.version}"
        )
        wait["unblock"] = [
            _op("callback", node_id=node_id, version=st.version, data=None),
            forced,
        ]
    wait["callbacks_queued"] = queued
    return wait


def _failed(run: Run, proc: Process) -> dict[str, Any]:
    node_id = proc.current_node_id
    node = run.spec.nodes.get(node_id)
    wait = _base(run, proc, "failed", node_id)
    outputs = run.exec_outputs(node_id)
    wait["ex_data"] = outputs.get("ex_data")
    st = run.states[node_id]
    wait["since"] = _time(st.archived_time)
    unblock: list[dict[str, Any]] = []
    if node is None:
        pass
    elif node.kind == SUBPROCESS:
        unblock.append(_op("retry_subprocess", node_id=node_id))
    elif node.kind == EXCLUSIVE:
        if node.can_retry:
            unblock.append(_op("retry_node", node_id=node_id))
        unblock.extend(
            _op("skip_exclusive_gateway", node_id=node_id, flow_id=flow) for flow in node.targets
        )
    elif node.kind == CONDITIONAL_PARALLEL:
        if node.can_retry:
            unblock.append(_op("retry_node", node_id=node_id))
        unblock.append(
            _op(
                "skip_conditional_parallel_gateway",
                node_id=node_id,
                flow_ids=list(node.targets),
                converge_gateway_id=node.converge_gateway_id,
            )
        )
    else:
        if node.can_retry:
            unblock.append(_op("retry_node", node_id=node_id))
        if node.can_skip and node.kind in (ACTIVITY, START):
            unblock.append(_op("skip_node", node_id=node_id))
    wait["unblock"] = unblock
    first = str(wait["ex_data"] or "").strip().splitlines()
    wait["detail"] = f"node {node_id} failed: {first[-1] if first else 'no ex_data'}"
    return wait


def _running(run: Run, proc: Process) -> dict[str, Any]:
    node_id = proc.current_node_id
    node = run.spec.nodes.get(node_id)
    wait = _base(run, proc, "running", node_id)
    if run.state_of(node_id) == states.RUNNING:
        wait["detail"] = f"node {node_id} is running"
        if node is not None and node.kind == ACTIVITY:
            wait["unblock"] = [_op("forced_fail_activity", node_id=node_id, ex_data="...")]
    else:
        wait["since"] = None
        wait["detail"] = f"the process is about to enter node {node_id}"
    return wait


def _wakes(waits: list[dict[str, Any]]) -> list[str]:
    """What loads the run again (or moves it), in words."""
    wakes: list[str] = []
    for wait in waits:
        kind, node_id = wait["kind"], wait["node_id"]
        if kind == "callback":
            wakes.append(f"a callback to node {node_id} version {wait['version']}")
        elif kind == "poll":
            due = wait["due"].isoformat() if wait["due"] is not None else "now"
            wakes.append(f"the poll timer of node {node_id}, due {due}")
        elif wait["unblock"] and kind != "running":
            ops = " or ".join(op["operation"] for op in wait["unblock"])
            wakes.append(f"an operator: {ops} on {node_id}")
    return wakes


_HELD_WORDS = {
    "here": "in this process's memory",
    "parked": "parked (in no worker's memory)",
    "nobody": "held by no worker: it waits for a worker to claim it",
    "worker": "held by worker {owner}",
    "expired": "held by worker {owner}, whose lease ran out: another worker takes it over",
    "ended": "ended",
}


def _summary(
    root_id: str,
    status: str,
    state: str | None,
    held: dict[str, Any],
    waits: list[dict[str, Any]],
) -> str:
    if status != RUN_ACTIVE:
        return f"pipeline {root_id} is {state or status}: nothing waits"
    where = _HELD_WORDS[held["where"]].format(owner=held["owner"])
    kinds: dict[str, int] = {}
    for wait in waits:
        kinds[wait["kind"]] = kinds.get(wait["kind"], 0) + 1
    parts = [f"{n} {kind.replace('_', ' ')}" for kind, n in kinds.items()]
    return f"pipeline {root_id} is {state}, {where}; " + (
        ", ".join(parts) if parts else "no process waits"
    )
