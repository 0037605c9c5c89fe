"""The push loop: one coroutine drives one process from node to node.

A process that forks runs its children in a task group and continues at the
converge gateway once every child has arrived; a process that has to wait
(a failure, a pause, a poll or callback) awaits inside its own coroutine.
"""

from __future__ import annotations

import time
from typing import assert_never

import anyio

from .. import states
from ..exceptions import StaleWriteError, StorageError
from ._env import SLEEP, Env, Outcome, Step, format_exc, is_cancellation, logger
from ._rollback import take_reserved
from ._run import (
    P_DEAD,
    P_JOINING,
    P_RUNNING,
    P_SLEEPING,
    P_SUSPENDED,
    Process,
    Run,
    State,
    new_id,
)
from ._spec import ACTIVITY, SUBPROCESS, NodeSpec
from .handlers import HANDLERS, resume_schedule

_ENTERABLE = (states.READY, states.FINISHED, states.LOOP_READY)


async def drive(env: Env, run: Run, proc: Process) -> None:
    """Run ``proc`` until it dies; returns early only for a child that reached its converge."""
    while True:
        if proc.status == P_DEAD:
            return
        if run.revoked or run.finished:
            _kill(run, proc)
            await run.checkpoint("process-ended")
            return
        if proc.status == P_JOINING:
            await _join(env, run, proc)
            continue
        resuming = proc.recovering and _resumes_in_place(run, proc)
        if proc.status in (P_SLEEPING, P_SUSPENDED) and not resuming:
            await proc.wait_awake(run)
            continue
        node_id = proc.current_node_id
        if node_id == proc.destination_id:
            _arrive(run, proc)
            await run.checkpoint("process-ended")
            # The branches still waiting may have been all that kept the run moving.
            run.recheck_idle()
            return
        # A pause stops a process between nodes: one reloaded in the middle of its
        # node (waiting for a poll or callback) finishes the node first, as it
        # would have had it stayed in memory.
        suspended_by = None if resuming else _suspended_by(run, proc)
        if suspended_by is not None:
            proc.status = P_SUSPENDED
            proc.suspended_by = suspended_by
            run.put_process(proc)
            await run.checkpoint("process-suspended")
            continue
        outcome = await _step(env, run, proc, node_id)
        if outcome.kind == "next":
            # A rollback reserved at the node starts when the process leaves it
            # (not when a looping node comes round again).
            if (
                run.reserved_rollback is not None
                and outcome.next_node_id != node_id
                and await take_reserved(env, run, proc, node_id)
            ):
                continue
            # Moving on, the common outcome, is applied here rather than in _apply:
            # it awaits nothing.
            proc.current_node_id = outcome.next_node_id
            proc.status = P_RUNNING
            run.put_process(proc)
            continue
        await _apply(run, proc, outcome)


def _suspended_by(run: Run, proc: Process) -> str | None:
    """The first paused pipeline of the process's stack, outermost first."""
    run_states = run.states
    for pid in proc.stack:
        st = run_states.get(pid)
        if st is not None and st.state == states.SUSPENDED:
            return pid
    return None


def _resumes_in_place(run: Run, proc: Process) -> bool:
    """After a restart, a process asleep in a poll or callback wait resumes that wait."""
    if not proc.recovering or proc.status != P_SLEEPING:
        return False
    st = run.states.get(proc.current_node_id)
    return st is not None and st.state == states.RUNNING


async def _apply(run: Run, proc: Process, outcome: Outcome) -> None:
    match outcome.kind:
        case "next":
            proc.current_node_id = outcome.next_node_id
            proc.status = P_RUNNING
            run.put_process(proc)
        case "fork":
            run.fork(proc, outcome.children)
        case "die":
            _kill(run, proc)
            await run.checkpoint("process-ended")
        case "sleep":
            run.put_process(proc)
            await run.checkpoint("process-asleep")
        case "stale":
            pass  # an operator changed the node meanwhile; the loop re-reads it
        case _:
            assert_never(outcome.kind)


def _kill(run: Run, proc: Process) -> None:
    if proc.status != P_DEAD:
        proc.status = P_DEAD
        run.put_process(proc)


def _arrive(run: Run, proc: Process) -> None:
    """A child reached its converge gateway: it dies and acks its parent (a set, not a count)."""
    _kill(run, proc)
    parent = run.processes.get(proc.parent_id or "")
    if parent is not None and proc.id not in parent.acks:
        parent.acks.append(proc.id)
        run.put_process(parent)


async def _join(env: Env, run: Run, proc: Process) -> None:
    children = [run.processes[c] for c in proc.children if c in run.processes]
    live = [c for c in children if c.status != P_DEAD]
    if live:
        # An anyio task group, not asyncio's (about 5% less engine time on a
        # gateway-heavy tree): asyncio's tasks are outside anyio's scope tree,
        # so in a branch the run's deadline would read as none and the run's
        # cancellation would break into a shielded anyio scope.
        async with anyio.create_task_group() as tg:
            for child in live:
                tg.start_soon(drive, env, run, child)
    if run.revoked or run.finished:
        return
    if children and set(proc.acks) >= set(proc.children):
        proc.current_node_id = children[0].destination_id or proc.current_node_id
        proc.children = []
        proc.acks = []
        proc.status = P_RUNNING
    else:
        proc.status = P_DEAD
    run.put_process(proc)


async def _step(env: Env, run: Run, proc: Process, node_id: str) -> Outcome:
    node = run.spec.nodes.get(node_id)
    if node is None:
        logger.error("run %s: process %s is at unknown node %s", run.root_id, proc.id, node_id)
        proc.status = P_SLEEPING
        return SLEEP
    recovering, proc.recovering = proc.recovering, False
    st = run.states.get(node_id)
    if st is not None and st.state == states.RUNNING:
        if not recovering:
            proc.status = P_SLEEPING
            return SLEEP
        proc.status = P_RUNNING
        return await _guarded(env, run, proc, node, st, resume=True)
    if st is not None and st.state == states.SUSPENDED:
        # Appointed pause (pause_node_appoint): the state now joins the tree.
        st.root_id = run.root_id
        st.parent_id = proc.stack[-1]
        run.put_state(st)
        proc.status = P_SUSPENDED
        proc.suspended_by = node_id
        return SLEEP
    if st is not None:
        if (
            st.state == states.FINISHED
            and node.kind != SUBPROCESS
            and st.loop > env.settings.rerun_limit
        ):
            return _rerun_limit(env, run, proc, node, st)
        if st.state not in _ENTERABLE:
            proc.status = P_SLEEPING
            return SLEEP
    st = _enter(run, proc, node, st)
    return await _guarded(env, run, proc, node, st, resume=False)


async def _guarded(
    env: Env, run: Run, proc: Process, node: NodeSpec, st: State, *, resume: bool
) -> Outcome:
    """Run the handler; an engine bug fails the node instead of the scheduler."""
    step = Step(env, run, proc, node, st)
    try:
        observer = env.observer
        if observer is None:
            # The handler is awaited here directly, not through _handle: one
            # coroutine frame less on every node step.
            if resume:
                return await _handle(step, resume)
            return await HANDLERS[node.kind](step)
        with observer.node_step(step):
            return await _handle(step, resume)
    except (StorageError, StaleWriteError):
        raise
    except BaseException as exc:
        # User code reached outside Env.call (a service's constructor or
        # need_schedule, an interval generator) may raise anything; only a
        # cancellation of this task is not the node's failure.
        if is_cancellation(exc) or run.broken is not None:
            # A commit of the run failed (storage refused a batch): the run is
            # reloaded or dropped, and the node did not fail.
            raise
        logger.exception("run %s: handler of node %s raised", run.root_id, node.id)
        if not step.owns_state():
            return Outcome("stale")
        # Also when the step itself already moved the node on (FINISHED, then
        # failed extracting its outputs): a FINISHED node must not run again.
        return step.fail({**run.exec_outputs(node.id), "ex_data": format_exc(exc)})


async def _handle(step: Step, resume: bool) -> Outcome:
    node = step.node
    if resume and node.kind == ACTIVITY:
        sched = step.run.schedules.get((node.id, step.state.version))
        if sched is not None and not sched.finished and not sched.expired:
            return await resume_schedule(step, sched)
    return await HANDLERS[node.kind](step)


def _enter(run: Run, proc: Process, node: NodeSpec, st: State | None) -> State:
    """Set the node RUNNING, creating or re-entering its state."""
    if st is None:
        st = run.new_state(node.id, proc.stack[-1], states.RUNNING)
    else:
        if st.state == states.FINISHED:
            run.add_history(node.id)
            st.loop += 1
            st.inner_loop += 1
            st.skip = False
            st.error_ignored = False
            if node.loop is None:
                st.retry = 0
            st.version = new_id("v")
            st.archived_time = None
        elif st.state == states.READY and node.loop is not None:
            st.loop = st.inner_loop = 1
        st.state = states.RUNNING
        st.root_id = run.root_id
        st.parent_id = proc.stack[-1]
    st.started_time = time.time()
    run.put_state(st)
    run.emit_state(st)
    return st


def _rerun_limit(env: Env, run: Run, proc: Process, node: NodeSpec, st: State) -> Outcome:
    outputs = run.exec_outputs(node.id)
    outputs["ex_data"] = f"node execution exceed rerun limit {env.settings.rerun_limit}"
    run.put_exec_data(node.id, run.exec_inputs(node.id), outputs)
    st.state = states.FAILED
    st.archived_time = time.time()
    run.put_state(st)
    run.emit_state(st)
    proc.status = P_SLEEPING
    return SLEEP
