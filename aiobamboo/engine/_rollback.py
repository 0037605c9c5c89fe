"""Rollback as the original's ``pipeline.contrib.rollback``: from a failed node back to one before.

TOKEN mode calls the ``rollback`` hook of every activity on the way back (the
last one run first, the target last), then runs the pipeline again from the
target; ANY mode jumps there at once. The nodes a rollback goes through are
marked with the rollback states, which are also its durable plan: each node
waits ROLLING_BACK for its hook, is ROLL_BACK_SUCCESS once the hook succeeded,
ROLL_BACK_FAILED when it failed (the pipeline too, until
``retry_rollback_failed_node``). A rollback reserved on a running node
(``reserve_rollback``) starts when that node finishes: its process calls
``take_reserved`` instead of going on.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterable
from typing import Any

from .. import states
from ..builder._token import BRANCH, CONVERGE, END, FORK, STEP, SUBPROCESS, tokens_of
from ..component import DataObject
from ..exceptions import InvalidOperationError
from ._env import Env, format_exc, is_cancellation, logger
from ._reserved_rollback import Reservation, as_row
from ._run import P_RUNNING, P_SLEEPING, Process, Run, State, new_id
from ._spec import ACTIVITY, CONDITIONAL_PARALLEL, EXCLUSIVE, PARALLEL, RunSpec
from ._spec import CONVERGE as CONVERGE_KIND
from ._spec import END as END_KIND
from ._spec import SUBPROCESS as SUBPROCESS_KIND

TOKEN = "TOKEN"
ANY = "ANY"
MODES = (TOKEN, ANY)

_ROLES = {
    PARALLEL: FORK,
    CONDITIONAL_PARALLEL: FORK,
    EXCLUSIVE: BRANCH,
    CONVERGE_KIND: CONVERGE,
    END_KIND: END,
    SUBPROCESS_KIND: SUBPROCESS,
}
#: States of a node that has run (or is being rolled back): a rollback may cross it.
_RAN = frozenset(
    {
        states.FINISHED,
        states.FAILED,
        states.ROLLING_BACK,
        states.ROLL_BACK_SUCCESS,
        states.ROLL_BACK_FAILED,
    }
)
_MARKED = frozenset({states.ROLLING_BACK, states.ROLL_BACK_SUCCESS, states.ROLL_BACK_FAILED})

#: Runs whose rollback hooks are being called right now, in this process.
_ROLLING: weakref.WeakSet[Run] = weakref.WeakSet()


def spec_tokens(spec: RunSpec) -> dict[str, str]:
    """Rollback tokens of a parsed tree (as ``generate_pipeline_token``; ids numbered)."""
    counter = itertools.count()

    def inner_start(node_id: str) -> str | None:
        sub = spec.nodes[node_id].subprocess
        return sub.start_id if sub is not None else None

    return tokens_of(
        spec.root.start_id,
        lambda node_id: _ROLES.get(spec.nodes[node_id].kind, STEP),
        lambda node_id: list(spec.nodes[node_id].targets.values()),
        inner_start,
        lambda: f"t{next(counter)}",
    )


def allowed_targets(
    spec: RunSpec, node_states: dict[str, str], start_id: str, *, any_node: bool
) -> list[str]:
    """The activities a rollback from ``start_id`` may go back to (the original's rule)."""
    ran = [
        node_id
        for node_id, state in node_states.items()
        if state in (states.FINISHED, states.FAILED)
        and node_id != start_id
        and node_id in spec.nodes
        and spec.nodes[node_id].kind == ACTIVITY
    ]
    if any_node:
        return sorted(ran)
    tokens = spec_tokens(spec)
    token = tokens.get(start_id)
    if token is None:
        return []
    return sorted(n for n in ran if tokens.get(n) == token)


def _path(spec: RunSpec, ran: set[str], start_id: str, target_id: str) -> list[str]:
    """Nodes that ran on the way from the target to the start, in rollback order.

    The start first, the target last: the reverse of the order they ran in.
    Flows back (loops) are not followed twice; a sub-process counts as one node.
    """
    forward: dict[str, list[str]] = {}
    seen = {target_id}
    todo = [target_id]
    while todo:
        node_id = todo.pop()
        if node_id == start_id:
            continue
        nexts = [t for t in spec.nodes[node_id].targets.values() if t in ran]
        forward[node_id] = nexts
        for target in nexts:
            if target not in seen:
                seen.add(target)
                todo.append(target)
    if start_id not in seen:
        return []
    # Keep what leads to the start; order it by a walk that ignores flows back.
    back: dict[str, set[str]] = {}
    for source, targets in forward.items():
        for target in targets:
            back.setdefault(target, set()).add(source)
    keep = {start_id}
    todo = [start_id]
    while todo:
        for source in back.get(todo.pop(), ()):
            if source not in keep:
                keep.add(source)
                todo.append(source)
    order: list[str] = []
    placed: set[str] = set()
    on_path: set[str] = set()

    def visit(node_id: str) -> None:
        # Iterative post-order, so that long chains do not hit the recursion limit.
        stack: list[tuple[str, Iterable[str]]] = [(node_id, iter(forward.get(node_id, ())))]
        on_path.add(node_id)
        while stack:
            current, targets = stack[-1]
            for target in targets:
                if target in keep and target not in placed and target not in on_path:
                    on_path.add(target)
                    stack.append((target, iter(forward.get(target, ()))))
                    break
            else:
                stack.pop()
                on_path.discard(current)
                placed.add(current)
                order.append(current)

    visit(target_id)
    return order  # post-order: the start first, the target last


def _set(run: Run, st: State, to: str, *, refresh: bool = False) -> None:
    st.state = to
    if refresh:
        st.version = new_id("v")
    run.put_state(st)
    run.emit_state(st)


class Rollbacks:
    """Mixed into the scheduler: the rollback operations."""

    env: Env

    async def active_run(self, node_id: str) -> Run:
        raise NotImplementedError

    async def rollback(
        self,
        root_id: str,
        start_id: str,
        target_id: str,
        skip_rollback_nodes: list[str],
        mode: str,
        skip_check_token: bool,
    ) -> None:
        run = await self.active_run(root_id)
        _check_pipeline(run, root_id, mode)
        _activity_state(run, start_id, (states.FAILED,), "start")
        proc = run.process_at(start_id, P_SLEEPING)
        if proc is None:
            raise InvalidOperationError(f"no process waits at node {start_id}")
        path = _checked_path(run, proc, start_id, target_id, mode, skip_check_token)
        await self._begin(run, proc, start_id, path, skip_rollback_nodes, mode)

    async def reserve_rollback(
        self, root_id: str, start_id: str, target_id: str, mode: str, skip_check_token: bool
    ) -> None:
        """Roll back from ``start_id`` (RUNNING now) to ``target_id`` once it finishes."""
        run = await self.active_run(root_id)
        _check_pipeline(run, root_id, mode)
        st = _activity_state(run, start_id, (states.RUNNING,), "start")
        proc = run.process_at(start_id)
        if proc is None:
            raise InvalidOperationError(f"no process is at node {start_id}")
        _checked_path(run, proc, start_id, target_id, mode, skip_check_token, reserving=True)
        if run.reserved_rollback is not None:
            raise InvalidOperationError(
                f"pipeline {root_id} already has a rollback reserved at node "
                f"{run.reserved_rollback.start_id}: cancel it first"
            )
        res = Reservation(new_id("rb"), start_id, target_id, mode, skip_check_token, st.version)
        run.reserved_rollback = res
        run.batch.timers[res.id] = as_row(res, run.root_id, live=True)
        await run.checkpoint("operation")

    async def cancel_reserved_rollback(
        self, root_id: str, start_id: str, target_id: str, mode: str
    ) -> None:
        """Drop the rollback reserved at ``start_id``; nothing reserved there is no error."""
        run = await self.active_run(root_id)
        _check_pipeline(run, root_id, mode)
        _activity_state(run, start_id, (states.RUNNING, states.FAILED), "start")
        _activity_state(run, target_id, (states.FINISHED,), "target")
        res = run.reserved_rollback
        if res is None or res.start_id != start_id:
            return
        run.reserved_rollback = None
        run.batch.timers[res.id] = as_row(res, run.root_id, live=False)
        await run.checkpoint("operation")

    async def _begin(
        self,
        run: Run,
        proc: Process,
        start_id: str,
        path: list[str],
        skip_rollback_nodes: list[str],
        mode: str,
    ) -> None:
        """Mark the path's nodes and call their hooks (TOKEN), or jump to the target (ANY)."""
        if mode == ANY:
            await self._restart_at(run, proc, path, path[-1])
            return
        skip = set(skip_rollback_nodes)
        root = run.states[run.root_id]
        root.state = states.ROLLING_BACK
        run.put_state(root)
        run.emit_state(root)
        for node_id in path:
            st = run.states[node_id]
            if run.spec.nodes[node_id].kind != ACTIVITY:
                continue
            # A failed start has nothing to undo; a finished one (a reserved
            # rollback) is undone like the others.
            failed_start = node_id == start_id and st.state == states.FAILED
            hooked = not (node_id in skip or st.skip or st.error_ignored or failed_start)
            _set(run, st, states.ROLLING_BACK if hooked else states.ROLL_BACK_SUCCESS)
        await run.checkpoint("operation")
        await self._roll_back(run, path, None, None)

    async def retry_rollback_failed_node(
        self, root_id: str, node_id: str, retry_data: Any, mode: str
    ) -> None:
        run = await self.active_run(root_id)
        root = _root_state(run, root_id)
        if mode != TOKEN:
            raise InvalidOperationError("only a rollback in TOKEN mode can be retried")
        # A rollback whose worker stopped during a hook is left ROLLING_BACK: it is
        # taken up again at the node it was rolling back.
        interrupted = root.state == states.ROLLING_BACK and run not in _ROLLING
        if root.state != states.ROLL_BACK_FAILED and not interrupted:
            raise InvalidOperationError(
                f"pipeline {root_id} is {root.state}, not ROLL_BACK_FAILED: nothing to retry"
            )
        st = run.states.get(node_id)
        wanted = states.ROLLING_BACK if interrupted else states.ROLL_BACK_FAILED
        if st is None or st.state != wanted:
            actual = st.state if st is not None else None
            raise InvalidOperationError(f"node {node_id} is {actual}, not {wanted}")
        marked = {n for n, s in run.states.items() if s.state in _MARKED and n in run.spec.nodes}
        path = _marked_path(run, marked)
        root.state = states.ROLLING_BACK
        run.put_state(root)
        run.emit_state(root)
        _set(run, st, states.ROLLING_BACK)
        await run.checkpoint("operation")
        await self._roll_back(run, path, node_id, retry_data)

    async def _roll_back(
        self, run: Run, path: list[str], retried: str | None, retry_data: Any
    ) -> None:
        """Call the hooks of the path's nodes still ROLLING_BACK, in order; then restart.

        ``retry_data`` goes to the hook of the node ``retried``.
        """
        _ROLLING.add(run)
        try:
            await self._hooks_then_restart(run, path, retried, retry_data)
        finally:
            _ROLLING.discard(run)

    async def _hooks_then_restart(
        self, run: Run, path: list[str], retried: str | None, retry_data: Any
    ) -> None:
        root = run.states[run.root_id]
        for node_id in path:
            st = run.states[node_id]
            if st.state != states.ROLLING_BACK:
                continue
            ok, why = await self._hook(run, node_id, retry_data if node_id == retried else None)
            if not ok:
                logger.warning("run %s: rollback of node %s failed: %s", run.root_id, node_id, why)
                outputs = {**run.exec_outputs(node_id), "rollback_ex_data": why}
                run.put_exec_data(node_id, run.exec_inputs(node_id), outputs)
                _set(run, st, states.ROLL_BACK_FAILED)
                _set(run, root, states.ROLL_BACK_FAILED)
                await run.checkpoint("operation")
                return
            _set(run, st, states.ROLL_BACK_SUCCESS)
            await run.checkpoint("operation")
        proc = next(
            (
                p
                for p in run.live_processes()
                if p.status == P_SLEEPING and p.current_node_id in path
            ),
            None,
        )
        if proc is None:
            raise InvalidOperationError("the process to restart is gone")
        _set(run, root, states.ROLL_BACK_SUCCESS)
        await self._restart_at(run, proc, path, path[-1])

    async def _hook(self, run: Run, node_id: str, retry_data: Any) -> tuple[bool, str]:
        node = run.spec.nodes[node_id]
        cls = self.env.components.get_service(node.code, node.version)
        if cls is None:
            return False, f"component {node.code!r} is not registered"
        service = cls(node.name)
        service.id = node_id
        service.root_pipeline_id = run.root_id
        data = DataObject(run.exec_inputs(node_id), run.exec_outputs(node_id))
        parent = DataObject(run.root_data, {})
        try:
            result = await self.env.call(service.rollback, data, parent, retry_data)
        except BaseException as exc:
            if is_cancellation(exc):
                raise
            return False, format_exc(exc)
        if result is None or bool(result):
            return True, ""
        return False, "the rollback hook returned false"

    async def _restart_at(self, run: Run, proc: Process, path: list[str], target_id: str) -> None:
        """Reset the path's nodes and run the pipeline again from the target."""
        for node_id in path:
            st = run.states[node_id]
            if node_id == target_id:
                run.add_history(node_id)
                st.retry += 1
            st.state = states.READY
            st.version = new_id("v")
            st.skip = False
            st.error_ignored = False
            st.started_time = None
            st.archived_time = None
            run.put_state(st)
            run.emit_state(st)
        root = run.states[run.root_id]
        root.state = states.RUNNING
        root.archived_time = None
        run.put_state(root)
        run.emit_state(root)
        proc.current_node_id = target_id
        proc.status = P_RUNNING
        run.put_process(proc)
        await run.checkpoint("operation")
        proc.wake()


def _check_pipeline(run: Run, root_id: str, mode: str) -> None:
    root = _root_state(run, root_id)
    if root.state not in (states.RUNNING, states.ROLL_BACK_FAILED):
        raise InvalidOperationError(
            f"pipeline {root_id} is {root.state}: only a RUNNING pipeline can be rolled back"
        )
    if mode not in MODES:
        raise InvalidOperationError(f"mode must be TOKEN or ANY, got {mode!r:.100}")


def _checked_path(
    run: Run,
    proc: Process,
    start_id: str,
    target_id: str,
    mode: str,
    skip_check_token: bool,
    *,
    reserving: bool = False,
) -> list[str]:
    """The rollback's path, start first; refuses a rollback the mode does not allow.

    ``reserving``: the start still runs, and the nodes of its token may too.
    """
    _activity_state(run, target_id, (states.FINISHED,), "target")
    if run.spec.nodes[start_id].pipeline_id != run.spec.nodes[target_id].pipeline_id:
        raise InvalidOperationError(
            f"nodes {start_id} and {target_id} are not in the same pipeline"
        )
    tokens = spec_tokens(run.spec)
    same_token = tokens.get(start_id) == tokens.get(target_id)
    if (mode == TOKEN or not skip_check_token) and not same_token:
        raise InvalidOperationError(
            f"nodes {start_id} and {target_id} have different rollback tokens"
        )
    if not same_token and proc.parent_id is not None:
        raise InvalidOperationError(
            f"node {target_id} is outside the parallel branch of node {start_id}"
        )
    if mode == TOKEN and not reserving:
        token = tokens.get(start_id)
        running = [
            n
            for n, st in run.states.items()
            if st.state == states.RUNNING and tokens.get(n) == token and n != start_id
        ]
        if running:
            raise InvalidOperationError(
                f"nodes {', '.join(sorted(running))} of the same token are still running"
            )
    ran = {n for n, st in run.states.items() if st.state in _RAN and n in run.spec.nodes}
    path = _path(run.spec, ran | {start_id}, start_id, target_id)
    if target_id not in path:
        raise InvalidOperationError(
            f"node {target_id} did not run on the way to node {start_id}: nothing to roll back"
        )
    return path


async def take_reserved(env: Env, run: Run, proc: Process, node_id: str) -> bool:
    """``node_id`` just finished: start the rollback reserved there, if any.

    True when the rollback took the process (it waits at the node, or runs
    again from the target). A reservation that no longer applies (the pipeline
    was paused, the target was rolled back meanwhile...) is dropped with a
    warning, and the process goes on: False.
    """
    res = run.reserved_rollback
    if res is None or res.start_id != node_id:
        return False
    st = run.states.get(node_id)
    if st is None or st.state != states.FINISHED:
        return False
    # Used, whatever comes of it; stored with the rollback's first commit, or
    # with the process's next step.
    run.reserved_rollback = None
    run.batch.timers[res.id] = as_row(res, run.root_id, live=False)
    try:
        _check_pipeline(run, run.root_id, res.mode)
        path = _checked_path(run, proc, node_id, res.target_id, res.mode, res.skip_check_token)
    except InvalidOperationError as exc:
        logger.warning(
            "run %s: the rollback reserved at node %s does not apply, the pipeline goes on: %s",
            run.root_id,
            node_id,
            exc,
        )
        return False
    proc.status = P_SLEEPING
    run.put_process(proc)
    await _Reserved(env)._begin(run, proc, node_id, path, [], res.mode)
    return True


class _Reserved(Rollbacks):
    """The rollback machinery run by a process whose node finished (no scheduler at hand)."""

    def __init__(self, env: Env) -> None:
        self.env = env


def _root_state(run: Run, root_id: str) -> State:
    if root_id != run.root_id:
        raise InvalidOperationError(f"{root_id} is not a root pipeline")
    return run.states[root_id]


def _activity_state(run: Run, node_id: str, allowed: tuple[str, ...], what: str) -> State:
    node = run.spec.nodes.get(node_id)
    if node is None or node.kind != ACTIVITY:
        raise InvalidOperationError(f"the {what} node {node_id} is not a service activity")
    st = run.states.get(node_id)
    if st is None or st.state not in allowed:
        actual = st.state if st is not None else None
        raise InvalidOperationError(
            f"the {what} node {node_id} is {actual}, not {' or '.join(allowed)}"
        )
    return st


def _marked_path(run: Run, marked: set[str]) -> list[str]:
    """The path of a rollback in progress: its nodes carry the rollback states."""
    ran = {n for n, st in run.states.items() if st.state in _RAN and n in run.spec.nodes}
    sleeping = [p.current_node_id for p in run.live_processes() if p.status == P_SLEEPING]
    for start in sleeping:
        if start not in marked:
            continue
        for target in marked:
            path = _path(run.spec, ran, start, target)
            if marked <= set(path):
                return path
    raise InvalidOperationError("the rollback in progress can not be found")


__all__ = [
    "ANY",
    "MODES",
    "TOKEN",
    "Rollbacks",
    "allowed_targets",
    "spec_tokens",
    "take_reserved",
]
