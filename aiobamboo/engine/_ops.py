"""Operator actions, applied to the owner's in-memory run.

Each operation checks its preconditions and applies its effect without an
``await`` in between, so concurrent operations on one node are ordered and
the loser sees the winner's effect and refuses. The effect is then made
durable before the operation returns, and only then are processes woken.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from .. import codec, states
from ..exceptions import InvalidOperationError, InvalidTransitionError, NotFoundError
from ._run import P_DEAD, P_RUNNING, P_SLEEPING, P_SUSPENDED, Process, Run, State, new_id
from ._spec import (
    ACTIVITY,
    CONDITIONAL_PARALLEL,
    CONVERGE,
    EXCLUSIVE,
    PLAIN,
    START,
    SUBPROCESS,
    ContextVar,
    NodeSpec,
    context_key,
)


def _transit(st: State, to: str) -> None:
    if not states.can_transit(st.state, to):
        raise InvalidTransitionError(
            f"can not transit state of {st.node_id} from {st.state} to {to}",
            from_state=str(st.state),
            to_state=to,
        )


def _node(run: Run, node_id: str) -> NodeSpec:
    node = run.spec.nodes.get(node_id)
    if node is None:
        raise NotFoundError(f"node({node_id}) does not exist")
    return node


def _failed_asleep(run: Run, node_id: str) -> tuple[State, Process]:
    st = run.states.get(node_id)
    if st is None or st.state != states.FAILED:
        actual = st.state if st is not None else None
        raise InvalidOperationError(f"{node_id} state is not FAILED, actual {actual}")
    proc = run.process_at(node_id, P_SLEEPING)
    if proc is None:
        raise InvalidOperationError(f"can not find sleep process with current node id: {node_id}")
    return st, proc


def _reset_loop_outputs(run: Run, node: NodeSpec, proc: Process, *, drop_last: bool) -> None:
    """Retrying a loop node: its list of iteration outputs loses the failed iteration's entry
    (a loop retry runs that iteration again) or, for a plain retry, starts afresh.

    The original means to drop the last entry but slices the wrong list and always
    empties it; here the last entry alone goes.
    """
    assert node.loop is not None
    pipeline_id = proc.stack[-1] if proc.stack else run.root_id
    key = node.loop.outputs_key
    current = run.contexts.get(pipeline_id, {}).get(key)
    if current is None:
        return
    kept = list(current.value)[:-1] if drop_last and isinstance(current.value, list) else []
    run.put_context(pipeline_id, key, ContextVar(PLAIN, kept))


def _refresh(st: State, to: str) -> None:
    st.state = to
    st.version = new_id("v")


class Operations:
    """Mixed into the scheduler: every operator action of the engine API."""

    async def active_run(self, node_id: str) -> Run:
        raise NotImplementedError

    async def _pipeline_state(self, pipeline_id: str) -> tuple[Run, State]:
        run = await self.active_run(pipeline_id)
        st = run.states.get(pipeline_id)
        if st is None:
            raise NotFoundError(f"node({pipeline_id}) does not exist")
        if pipeline_id != run.root_id and _node(run, pipeline_id).kind != SUBPROCESS:
            raise InvalidOperationError(f"{pipeline_id} is not a pipeline or a sub-process")
        return run, st

    async def pause_pipeline(self, pipeline_id: str) -> None:
        run, st = await self._pipeline_state(pipeline_id)
        _transit(st, states.SUSPENDED)
        st.state = states.SUSPENDED
        run.put_state(st)
        run.emit_state(st)
        await run.checkpoint("operation")

    async def resume_pipeline(self, pipeline_id: str) -> None:
        run, st = await self._pipeline_state(pipeline_id)
        if st.state != states.SUSPENDED:
            raise InvalidOperationError(f"pipeline({pipeline_id}) state is: {st.state}")
        st.state = states.RUNNING
        run.put_state(st)
        run.emit_state(st)
        await self._resume_suspended_by(run, pipeline_id)

    async def _resume_suspended_by(self, run: Run, by: str) -> None:
        woken = []
        for proc in run.live_processes():
            if proc.status == P_SUSPENDED and proc.suspended_by == by:
                proc.status = P_RUNNING
                proc.suspended_by = None
                run.put_process(proc)
                woken.append(proc)
        await run.checkpoint("operation")
        for proc in woken:
            proc.wake()

    async def revoke_pipeline(self, pipeline_id: str) -> None:
        run, st = await self._pipeline_state(pipeline_id)
        if pipeline_id != run.root_id:
            raise InvalidOperationError(
                f"{pipeline_id} is a sub-process; revoke_pipeline takes the root pipeline id"
            )
        _transit(st, states.REVOKED)
        now = time.time()
        # Nothing is left behind: nodes still running are revoked,
        # processes die, schedules expire, waiters are released.
        for node_st in run.states.values():
            if node_st.state == states.RUNNING or node_st is st:
                node_st.state = states.REVOKED
                node_st.archived_time = now
                run.put_state(node_st)
                run.emit_state(node_st)
        run.mark_revoked()
        for proc in run.live_processes():
            proc.status = P_DEAD
            run.put_process(proc)
        for sched in run.schedules.values():
            if not sched.finished and not sched.expired:
                sched.expired = True
                run.put_schedule(sched)
        await run.checkpoint("operation")
        for key in {*run.waiters, *run.in_flight}:
            run.abandon(*key)
        for proc in run.processes.values():
            proc.wake()

    async def pause_node_appoint(self, node_id: str) -> None:
        run = await self.active_run(node_id)
        node = _node(run, node_id)
        if node.kind == SUBPROCESS:
            raise InvalidOperationError(f"can not use pause_node_appoint api for {node.type}")
        st = run.states.get(node_id)
        if st is None:
            # Not reached yet: the state exists outside the tree until a process gets here.
            st = run.new_state(node_id, "", states.SUSPENDED, root_id="")
        elif st.state == states.READY:
            st.state = states.SUSPENDED
            run.put_state(st)
        else:
            raise InvalidOperationError(
                f"node({node_id}) state is {st.state}: only a node that has not been reached "
                "or is READY can be paused"
            )
        run.emit_state(st)
        await run.checkpoint("operation")

    async def resume_node_appoint(self, node_id: str) -> None:
        run = await self.active_run(node_id)
        node = _node(run, node_id)
        if node.kind == SUBPROCESS:
            raise InvalidOperationError(f"can not use resume_node_appoint api for {node.type}")
        st = run.states.get(node_id)
        if st is None or st.state != states.SUSPENDED:
            actual = st.state if st is not None else None
            raise InvalidOperationError(f"node({node_id}) state is not SUSPENDED, actual {actual}")
        st.state = states.READY
        run.put_state(st)
        run.emit_state(st)
        await self._resume_suspended_by(run, node_id)

    async def retry_node(
        self, node_id: str, data: dict[str, Any] | None = None, loop_retry: bool = False
    ) -> None:
        run = await self.active_run(node_id)
        node = _node(run, node_id)
        if loop_retry:
            if node.loop is None or not node.loop.retryable or not node.loop.loop_times:
                raise InvalidOperationError(f"node({node_id}) is not loop retryable")
        elif not node.can_retry:
            raise InvalidOperationError(
                f"can not retry node({node_id}) with can_retry({node.can_retry})"
            )
        st, proc = _failed_asleep(run, node_id)
        if data is not None:
            if not isinstance(data, dict):
                raise InvalidOperationError("retry data must be a dict")
            data = dict(data)
            escape = set(data.pop("_escape_render_keys", None) or ())
            inputs = {k: {"need_render": k not in escape, "value": v} for k, v in data.items()}
            codec.check(inputs, "data")
            run.put_node_inputs(node_id, inputs)
        if node.loop is not None:
            _reset_loop_outputs(run, node, proc, drop_last=loop_retry)
        self._retry(run, st, proc, loop_retry=loop_retry)
        await run.checkpoint("operation")
        proc.wake()

    async def retry_subprocess(self, node_id: str) -> None:
        run = await self.active_run(node_id)
        node = _node(run, node_id)
        if node.kind != SUBPROCESS:
            raise InvalidOperationError(f"node({node_id}) type is not SubProcess")
        st, proc = _failed_asleep(run, node_id)
        if proc.stack and proc.stack[-1] == node_id:
            proc.stack.pop()
        self._retry(run, st, proc)
        await run.checkpoint("operation")
        proc.wake()

    def _retry(self, run: Run, st: State, proc: Process, *, loop_retry: bool = False) -> None:
        run.add_history(st.node_id)
        # A loop retry runs the failed iteration again: same loop counters, no retry counted.
        _refresh(st, states.LOOP_READY if loop_retry else states.READY)
        if not loop_retry:
            st.retry += 1
        st.started_time = None
        st.archived_time = None
        run.put_state(st)
        run.emit_state(st)
        proc.status = P_RUNNING
        run.put_process(proc)

    def _skip(self, run: Run, st: State) -> None:
        run.add_history(st.node_id)
        _refresh(st, states.FINISHED)
        st.skip = True
        st.archived_time = time.time()
        run.put_state(st)
        run.emit_state(st)

    async def _continue_at(self, run: Run, proc: Process, node_id: str) -> None:
        proc.current_node_id = node_id
        proc.status = P_RUNNING
        run.put_process(proc)
        await run.checkpoint("operation")
        proc.wake()

    async def skip_node(self, node_id: str, loop_skip: bool = False) -> None:
        run = await self.active_run(node_id)
        node = _node(run, node_id)
        if loop_skip:
            if node.loop is None or not node.loop.skippable or not node.loop.loop_times:
                raise InvalidOperationError(f"node({node_id}) can not loop skip")
        elif not node.can_skip:
            raise InvalidOperationError("can not skip this node")
        if node.kind not in (ACTIVITY, START):
            raise InvalidOperationError(f"can not use skip_node api for {node.type}")
        st, proc = _failed_asleep(run, node_id)
        loop = node.loop
        # A loop skip goes on with the next iteration while the loop has iterations left.
        again = (
            loop_skip
            and loop is not None
            and loop.loop_times is not None
            and st.inner_loop < loop.loop_times
        )
        self._skip(run, st)
        await self._continue_at(run, proc, node.id if again else node.first_target)

    async def skip_exclusive_gateway(self, node_id: str, flow_id: str) -> None:
        run = await self.active_run(node_id)
        node = _node(run, node_id)
        if node.kind != EXCLUSIVE:
            raise InvalidOperationError(f"{node_id} is not exclusive gateway, actual: {node.type}")
        if flow_id not in node.targets:
            raise InvalidOperationError(f"flow {flow_id} is not an outgoing flow of {node_id}")
        st, proc = _failed_asleep(run, node_id)
        self._skip(run, st)
        await self._continue_at(run, proc, node.targets[flow_id])

    async def skip_conditional_parallel_gateway(
        self, node_id: str, flow_ids: list[str], converge_gateway_id: str
    ) -> None:
        run = await self.active_run(node_id)
        node = _node(run, node_id)
        if node.kind != CONDITIONAL_PARALLEL:
            raise InvalidOperationError(
                f"{node_id} is not conditional parallel gateway, actual: {node.type}"
            )
        if not flow_ids:
            raise InvalidOperationError("flow_ids must name at least one outgoing flow")
        if not all(isinstance(f, str) for f in flow_ids):
            raise InvalidOperationError("flow_ids must be a list of flow id strings")
        unknown = [f for f in flow_ids if f not in node.targets]
        if unknown:
            raise InvalidOperationError(f"flows {unknown} are not outgoing flows of {node_id}")
        # Two branches through one flow would run one node twice and the converge
        # gateway would wait for an ack that never comes.
        duplicated = sorted(f for f, n in Counter(flow_ids).items() if n > 1)
        if duplicated:
            raise InvalidOperationError(f"flow_ids names flows {duplicated} more than once")
        converge = run.spec.nodes.get(converge_gateway_id)
        if converge is None or converge.kind != CONVERGE:
            raise InvalidOperationError(f"{converge_gateway_id} is not a converge gateway")
        if node.converge_gateway_id and converge_gateway_id != node.converge_gateway_id:
            # The branches would never meet at another converge gateway.
            raise InvalidOperationError(
                f"{converge_gateway_id} is not the converge gateway of {node_id}, "
                f"{node.converge_gateway_id} is"
            )
        st, proc = _failed_asleep(run, node_id)
        self._skip(run, st)
        run.fork(proc, [(node.targets[f], converge_gateway_id) for f in flow_ids])
        await run.checkpoint("operation")
        proc.wake()

    async def update_context_values(
        self, pipeline_id: str, context_values: list[dict[str, Any]]
    ) -> None:
        """Overwrite type, value and code of existing context keys of a pipeline or sub-process.

        ``context_values``: ``{"key", "type", "value", "code"}`` each, ``type`` 1
        (plain), 2 (splice) or 3 (lazy, ``code`` its registered type). All or
        nothing: an unknown key refuses the whole update. Nodes rendered from
        here on (a retried node or gateway included) read the new values.
        """
        run = await self.active_run(pipeline_id)
        if pipeline_id != run.root_id and _node(run, pipeline_id).kind != SUBPROCESS:
            raise InvalidOperationError(f"{pipeline_id} is not a pipeline or a sub-process")
        context = run.contexts.get(pipeline_id, {})
        updates: list[tuple[str, ContextVar]] = []
        for item in context_values:
            key = context_key(item["key"])
            if key not in context:
                raise NotFoundError(f"context key {key} does not exist in pipeline({pipeline_id})")
            var = ContextVar(item["type"], item["value"], item.get("code"))
            codec.check(var.value, key)
            updates.append((key, var))
        for key, var in updates:
            run.put_context(pipeline_id, key, var)
        await run.checkpoint("operation")

    async def forced_fail_activity(
        self, node_id: str, ex_data: str, send_post_set_state_signal: bool = True
    ) -> None:
        run = await self.active_run(node_id)
        node = _node(run, node_id)
        if node.kind != ACTIVITY:
            raise InvalidOperationError(f"{node_id} is not activity, actual: {node.type}")
        st = run.states.get(node_id)
        if st is None or st.state != states.RUNNING:
            actual = st.state if st is not None else None
            raise InvalidOperationError(f"{node_id} state is not RUNNING, actual: {actual}")
        proc = run.process_at(node_id)
        if proc is None:
            raise InvalidOperationError(f"can not find process with current node id: {node_id}")
        outputs = {**run.exec_outputs(node_id), "ex_data": ex_data, "_forced_failed": True}
        codec.check(outputs, "outputs")
        old_version = self.force_fail(run, st, proc, ex_data, emit=send_post_set_state_signal)
        await run.checkpoint("operation")
        run.abandon(node_id, old_version)

    def force_fail(
        self, run: Run, st: State, proc: Process, ex_data: str, *, emit: bool = True
    ) -> str:
        """Fail a RUNNING activity where it is, its attempt's schedule expired; the old version.

        The caller commits, then abandons the component call of the old version.
        """
        node_id = st.node_id
        outputs = {**run.exec_outputs(node_id), "ex_data": ex_data, "_forced_failed": True}
        old_version = st.version
        _refresh(st, states.FAILED)
        st.archived_time = time.time()
        run.put_state(st)
        if emit:
            run.emit_state(st)
        run.put_exec_data(node_id, run.exec_inputs(node_id), outputs)
        proc.status = P_SLEEPING
        run.put_process(proc)
        sched = run.schedules.get((node_id, old_version))
        if sched is not None and not sched.finished and not sched.expired:
            sched.expired = True
            run.put_schedule(sched)
        return old_version
