"""The in-memory state of one root pipeline run, and how its changes are recorded.

The owning scheduler mutates these objects synchronously (one event loop, so
every decision is atomic) and records each change into the pending
:class:`~aiobamboo.runtime.WriteBatch`; :meth:`Run.checkpoint` makes it durable.
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import anyio
import attrs

from .. import codec, states
from ..exceptions import StorageError
from ..runtime import (
    RUN_ACTIVE,
    RUN_FINISHED,
    RUN_REVOKED,
    CallbackRow,
    ContextRow,
    EventRow,
    ExecutionDataRow,
    HistoryRow,
    NodeDataRow,
    ProcessRow,
    RunSnapshot,
    Runtime,
    ScheduleRow,
    StateRow,
    TimerRow,
    WriteBatch,
)
from ._clock import Clock, SystemClock
from ._node_timers import RunTimers
from ._observer import Observer
from ._reserved_rollback import Reservation, from_rows
from ._spec import ContextVar, RunSpec


class ProcStatus(enum.StrEnum):
    """What a process is doing; stored as its value in ``ProcessRow.status``."""

    RUNNING = "running"
    SLEEPING = "sleeping"
    SUSPENDED = "suspended"
    JOINING = "joining"
    DEAD = "dead"


P_RUNNING = ProcStatus.RUNNING
P_SLEEPING = ProcStatus.SLEEPING
P_SUSPENDED = ProcStatus.SUSPENDED
P_JOINING = ProcStatus.JOINING
P_DEAD = ProcStatus.DEAD


class ScheduleType(enum.IntEnum):
    """How a scheduled activity is woken; stored as its value in ``ScheduleRow.type``."""

    CALLBACK = 1
    MULTIPLE_CALLBACK = 2
    POLL = 3


CALLBACK = ScheduleType.CALLBACK
MULTIPLE_CALLBACK = ScheduleType.MULTIPLE_CALLBACK
POLL = ScheduleType.POLL

#: Why the engine makes its pending changes durable: every commit point names one,
#: so ``grep checkpoint(`` lists the places where a step becomes durable.
CommitReason = Literal[
    "run-created",  # run_pipeline: the run, its root state and first process
    "node-running",  # an activity's RUNNING state, before user code runs
    "process-asleep",  # a process stopped at its node: failed, or waiting for an operator
    "process-ended",  # a process died or reached its converge gateway
    "process-suspended",  # a process stopped under a paused pipeline
    "schedule-wait",  # a scheduled activity is about to wait for its next trigger
    "callback",  # a callback was accepted, or refused after it was stored
    "operation",  # an operator action
    "settle",  # changes left pending when a process or the run stopped
    "timer",  # a node timer fired: a timeout, an automatic retry, a timer event
]


logger = logging.getLogger("aiobamboo.engine")
#: One line per state change at DEBUG, one per failed node at WARNING, each
#: with ``pipeline_id``, ``node_id``, ``state``, ``version`` and ``loop`` as
#: record attributes (``extra``), for structured formatters.
state_logger = logging.getLogger("aiobamboo.engine.states")

_random = random.Random()  # seeded from os.urandom; re-seeded in a forked child by Python


#: One encoder for every event: ``json.dumps`` with options builds a new one per call.
_event_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
#: A string as JSON, as that encoder writes it.
_json_str: Callable[[str], str] = json.encoder.encode_basestring


#: Root states in which the run is at rest whatever its processes do.
_RESTING_ROOT = frozenset(
    (states.FINISHED, states.REVOKED, states.SUSPENDED, states.ROLL_BACK_FAILED)
)


def new_id(prefix: str) -> str:
    """``prefix`` + 32 random hex digits: the original's id shape, without a syscall per id."""
    # randbytes().hex() is half the cost of formatting a 128-bit int as hex.
    return prefix + _random.randbytes(16).hex()


class Reloading(StorageError):
    """A checkpoint refused because an earlier commit of the run failed.

    Nothing the caller recorded since was sent to storage: the run is reloaded
    from its last commit, and the caller's changes are gone with its memory,
    so an operation can be applied again to the reloaded run.
    """


@attrs.frozen
class RunEvent:
    """A committed change, as delivered to :meth:`Scheduler.subscribe` subscribers.

    ``kind`` is ``state`` (a node or pipeline state changed; ``data`` has
    version, parent_id and loop), ``pipeline_failed`` (a node of the pipeline
    failed; the root stays RUNNING, as in the original), ``pipeline_finished``
    or ``pipeline_revoked``. ``id`` grows in commit order across every process
    of the database: a subscriber resumes after the last id it saw.
    """

    kind: str
    root_id: str
    node_id: str
    state: str
    data: dict[str, Any]
    time: float = attrs.Factory(time.time)
    id: int = 0

    @classmethod
    def from_row(cls, row: EventRow) -> RunEvent:
        return cls(
            kind=row.kind,
            root_id=row.root_id,
            node_id=row.node_id,
            state=row.state,
            data=json.loads(row.data_json),
            time=row.time,
            id=row.id,
        )


@attrs.define(slots=True, eq=False)
class State:
    node_id: str
    root_id: str
    parent_id: str
    name: str
    state: str
    version: str
    loop: int = 1
    inner_loop: int = 1
    retry: int = 0
    skip: bool = False
    error_ignored: bool = False
    created_time: float = attrs.Factory(time.time)
    started_time: float | None = None
    archived_time: float | None = None

    def row(self) -> StateRow:
        # Positional, in StateRow's field order: cheaper than by keyword, once a commit.
        return StateRow(
            self.node_id,
            self.root_id,
            self.parent_id,
            self.name,
            str(self.state),
            self.version,
            self.loop,
            self.inner_loop,
            self.retry,
            self.skip,
            self.error_ignored,
            self.created_time,
            self.started_time,
            self.archived_time,
        )


@attrs.define(slots=True, eq=False)
class Process:
    id: str
    parent_id: str | None
    current_node_id: str
    destination_id: str | None
    stack: list[str]
    status: ProcStatus = P_RUNNING
    suspended_by: str | None = None
    children: list[str] = attrs.Factory(list)
    acks: list[str] = attrs.Factory(list)
    # Set when the process was loaded from storage: its first step may find its
    # node RUNNING (interrupted mid-node) and must resume rather than refuse.
    recovering: bool = False
    _event: anyio.Event | None = None

    def wake(self) -> None:
        if self._event is not None:
            self._event.set()

    async def wait_awake(self, run: Run) -> None:
        """Return once an operation set the process back to running (or joining).

        Only an operation wakes it, so the run may park meanwhile.
        """
        while self.status in (P_SLEEPING, P_SUSPENDED):
            self._event = event = anyio.Event()
            with run.resting(self.id, event):
                await event.wait()
        self._event = None


@attrs.define(slots=True, eq=False)
class Schedule:
    id: str
    node_id: str
    version: str
    type: ScheduleType
    process_id: str
    finished: bool = False
    expired: bool = False
    times: int = 0
    # In memory only: a single-callback schedule has accepted its callback.
    callback_accepted: bool = False
    #: A polling schedule's next poll time (the engine clock's POSIX seconds), stored
    #: as a timer so that it fires after a restart, or in a parked run.
    due: float | None = None


@attrs.define(slots=True, eq=False)
class Pickup:
    """A caller of ``callback`` waiting for a multi-callback or polling schedule to take it.

    Set when the schedule takes it (``refusal`` None) or ends before it does
    (``refusal`` says why), so an accepted callback is never silently dropped.
    """

    event: anyio.Event = attrs.Factory(anyio.Event)
    refusal: str | None = None


@attrs.define(slots=True, eq=False)
class Waiter:
    """Wakes a scheduled activity: a callback arrived, or its attempt went stale."""

    event: anyio.Event = attrs.Factory(anyio.Event)
    stale: bool = False


class Run:
    """One root pipeline run held in memory by its owner."""

    def __init__(
        self,
        store: Runtime,
        spec: RunSpec,
        root_data: dict[str, Any],
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.spec = spec
        self.root_id = spec.root_id
        self.root_data = root_data
        #: How this run's gateway conditions are evaluated (a run_pipeline option).
        self.condition_rules = "standard"
        self.states: dict[str, State] = {}
        self.exec_data: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        self.node_inputs: dict[str, dict[str, Any]] = {}  # retry_node(data=...) overrides
        self.contexts: dict[str, dict[str, ContextVar]] = {
            pid: dict(p.context) for pid, p in spec.pipelines.items()
        }
        self.processes: dict[str, Process] = {}
        self.schedules: dict[tuple[str, str], Schedule] = {}
        self.callbacks: dict[tuple[str, str], deque[CallbackRow]] = {}
        #: Callers waiting for their queued callback to be taken, by callback row id.
        self.pickups: dict[str, Pickup] = {}
        self.waiters: dict[tuple[str, str], Waiter] = {}
        #: Component calls in flight, by (node id, version): operators may abandon them.
        self.in_flight: dict[tuple[str, str], anyio.CancelScope] = {}
        #: Timeouts, automatic retries and timer events, if any node has them.
        self.timers: RunTimers | None = None
        if spec.timed:
            self.timers = RunTimers(self, spec.timed, clock or SystemClock())
        #: The rollback to take place when its start node finishes (``reserve_rollback``).
        self.reserved_rollback: Reservation | None = None
        self.revoked = False
        self.finished = False
        self.batch = WriteBatch(root_id=self.root_id)
        #: States recorded since the last commit: their rows are made once, when
        #: the batch goes out, rather than at every change of a step.
        self._dirty: dict[str, State] = {}
        self.status = RUN_ACTIVE
        #: Told once when a commit of this run failed; memory no longer matches storage.
        self.on_broken: Callable[[Run, BaseException], None] | None = None
        self.broken: BaseException | None = None
        #: Processes waiting where the run may park: process id -> (when a timer
        #: wakes it, the event that ends its wait).
        self.idle: dict[str, tuple[float, anyio.Event]] = {}
        #: Operations applying to the run right now: a pinned run does not park.
        self.pins = 0
        #: Told when a process starts waiting where the run may park.
        self.on_idle: Callable[[Run], None] | None = None
        #: Told of state changes and of the run's end (``Settings.observer``).
        self.observer: Observer | None = None
        #: What the observer stored with the run when it started (a trace's context).
        self.observed: dict[str, Any] | None = None
        self._inflight = 0
        # asyncio's own events, not anyio's (which wrap one): made on every
        # commit that someone waits for, and the engine runs on asyncio only.
        self._changed: asyncio.Event | None = None
        #: The pending batch's number; ``_durable`` is the last number stored.
        self._generation = 0
        self._durable = -1
        #: Whether a commit of the run is in flight; ``_committed`` is set when it
        #: ends (stored or not), made only when someone waits for it.
        self._committing = False
        self._committed: asyncio.Event | None = None

    # -- durability ----------------------------------------------------------
    @property
    def recorded(self) -> int:
        """A mark of the changes recorded so far, for :meth:`checkpoint`'s ``upto``."""
        return self._generation

    async def checkpoint(self, reason: CommitReason, upto: int | None = None) -> None:
        """Make every change recorded so far durable, then tell waiters and subscribers.

        With ``upto`` (a :attr:`recorded` mark), only the changes recorded by the
        time of that mark: a caller whose changes went out with another
        coroutine's commit does not wait for that coroutine's next one too.

        ``reason`` names the commit point. One commit of the run is in flight at
        a time: a caller whose changes went out with another caller's commit
        waits for that one, and changes recorded meanwhile go out next, so the
        run's commits land in order and each caller returns only once its own
        changes are stored. While other processes of the run are running, a
        commit first lets the current pass of the event loop end, so branches
        that reach their commit points together share it. When a commit fails,
        memory may hold changes that storage lacks (this step's, and those of
        other coroutines that shared its batch): the run is broken from then
        on, every later checkpoint refuses, and :attr:`on_broken` has the owner
        reload it from its last commit. The caller gets the error.
        """
        generation = self._generation if upto is None else upto
        while self._durable < generation:
            if self.broken is not None:
                raise Reloading(
                    f"pipeline {self.root_id} is being reloaded after a failed commit "
                    f"({self.broken}); try again"
                )
            if self._committing:
                if self._committed is None:
                    self._committed = asyncio.Event()
                await self._committed.wait()
            elif self._dirty or self.batch:
                await self._commit(reason)
            else:
                break  # nothing recorded since the last commit, which is stored
        if self._changed is not None and self._may_rest():
            self.notify_changed()

    def _may_rest(self) -> bool:
        """Whether ``wait_pipeline`` could find the run at rest now.

        Only then are its callers woken after a commit: while a process runs,
        they would look and wait again, a pass of the event loop per node.
        """
        root = self.states.get(self.root_id)
        if root is not None and root.state in _RESTING_ROOT:
            return True
        return all(p.status != P_RUNNING for p in self.processes.values())

    def _siblings_running(self) -> bool:
        """Whether more than one process of the run is running (parallel branches)."""
        running = 0
        for p in self.processes.values():
            if p.status == P_RUNNING:
                running += 1
                if running > 1:
                    return True
        return False

    async def _commit(self, reason: CommitReason) -> None:
        self._committing = True
        if len(self.processes) > 1 and self._siblings_running():
            # Branches started together (a fork's children, branches woken by one
            # commit) reach their commit points in the same pass of the event
            # loop. Letting that pass end before taking the batch sends them out
            # as one commit rather than one, then the rest a commit later: a
            # round trip fewer at every fork, and at every step the branches
            # take together. Callers meanwhile wait as for a commit in flight.
            try:
                await asyncio.sleep(0)
            except BaseException:
                # Nothing was taken: the changes stay pending for the next commit.
                self._end_commit()
                raise
        batch, self.batch = self.batch, WriteBatch(root_id=self.root_id)
        dirty = self._dirty
        if dirty:
            self._dirty = {}
            rows = batch.states
            for node_id, st in dirty.items():
                rows[node_id] = st.row()
        generation = self._generation
        self._generation += 1
        self._inflight += 1
        try:
            if batch:
                await self.store.commit(batch)
        except BaseException as exc:
            # Cancelled while committing counts too: the batch may have landed or not.
            self._break(exc, reason)
            raise
        finally:
            self._inflight -= 1
            self._end_commit()
        self._durable = generation

    def _end_commit(self) -> None:
        """The commit in flight is over: its waiters look again."""
        self._committing = False
        committed, self._committed = self._committed, None
        if committed is not None:
            committed.set()

    def _break(self, exc: BaseException, reason: CommitReason) -> None:
        if self.broken is None:
            self.broken = exc
            logger.warning("run %s: the %s commit failed: %r", self.root_id, reason, exc)
            if self.on_broken is not None:
                self.on_broken(self, exc)
        # Whoever waits on this run looks again (and finds it reloading).
        self.notify_changed()

    def notify_changed(self) -> None:
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

    @property
    def changed(self) -> asyncio.Event:
        """Set after the next checkpoint."""
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    @property
    def settled(self) -> bool:
        """Nothing recorded is waiting to be, or being, committed."""
        return not self.pending and self._inflight == 0

    @property
    def pending(self) -> bool:
        """Whether changes are recorded that no commit has taken yet."""
        return bool(self._dirty or self.batch)

    def emit(self, kind: str, node_id: str, state: str = "", **extra: Any) -> None:
        """Record an event; it is stored with the changes it describes."""
        self.batch.events.append(
            EventRow(
                root_id=self.root_id,
                node_id=node_id,
                kind=kind,
                state=state,
                data_json=_event_json(extra),
                time=time.time(),
            )
        )

    def emit_state(self, st: State) -> None:
        # The root's parent is the root itself, as in state trees (and the original's).
        parent_id = self.root_id if st.node_id == self.root_id else st.parent_id
        # Two state events a node: their data is spelled out here rather than
        # run through the encoder (the same text as _event_json of the dict).
        data_json = (
            f'{{"version":{_json_str(st.version)},"parent_id":{_json_str(parent_id)},'
            f'"loop":{int(st.loop)}}}'
        )
        # Positional: a third cheaper than by keyword, twice a node.
        self.batch.events.append(
            EventRow(self.root_id, st.node_id, "state", str(st.state), data_json, time.time())
        )
        if st.state == states.FAILED:
            self.emit("pipeline_failed", st.node_id, str(st.state))
            if state_logger.isEnabledFor(logging.WARNING):
                self._log_failure(st)
        elif state_logger.isEnabledFor(logging.DEBUG):
            state_logger.debug(
                "%s %s: %s",
                "pipeline" if st.node_id == self.root_id else "node",
                st.node_id,
                st.state,
                extra=self._log_fields(st),
            )
        observer = self.observer
        if observer is not None:
            observer.state_changed(self, st)

    def _log_fields(self, st: State) -> dict[str, Any]:
        return {
            "pipeline_id": self.root_id,
            "node_id": st.node_id,
            "state": str(st.state),
            "version": st.version,
            "loop": st.loop,
        }

    def _log_failure(self, st: State) -> None:
        ex_data = self.exec_outputs(st.node_id).get("ex_data")
        fields = self._log_fields(st)
        fields["ex_data"] = ex_data
        # The message carries the last line (the exception itself); the whole
        # traceback is the record's ex_data.
        lines = str(ex_data).strip().splitlines() if ex_data else []
        state_logger.warning(
            "node %s of pipeline %s failed: %s",
            st.node_id,
            self.root_id,
            lines[-1] if lines else "no ex_data",
            extra=fields,
        )

    def mark_finished(self) -> None:
        self.finished = True
        self.status = RUN_FINISHED
        self.batch.run_status = RUN_FINISHED
        self.emit("pipeline_finished", self.root_id, str(states.FINISHED))
        if self.observer is not None:
            self.observer.pipeline_ended(self, "finished")

    def mark_revoked(self) -> None:
        self.revoked = True
        self.status = RUN_REVOKED
        self.batch.run_status = RUN_REVOKED
        self.emit("pipeline_revoked", self.root_id, str(states.REVOKED))
        if self.observer is not None:
            self.observer.pipeline_ended(self, "revoked")

    # -- parking -------------------------------------------------------------
    @contextmanager
    def resting(
        self, proc_id: str, event: anyio.Event, wake_at: float = math.inf
    ) -> Iterator[None]:
        """A process waits for ``event`` (or until ``wake_at``): the run may park meanwhile."""
        self.idle[proc_id] = (wake_at, event)
        if self.on_idle is not None:
            self.on_idle(self)
        try:
            yield
        finally:
            self.idle.pop(proc_id, None)

    def recheck_idle(self) -> None:
        """Something that kept the run from parking ended: look at it again if it rests."""
        if self.idle and self.on_idle is not None:
            self.on_idle(self)

    def wake_time(self) -> float | None:
        """When a timer wakes the run (inf: only the outside world), if it may park now.

        None while anything is in motion: a process that is not waiting where
        the run may park (or whose wait is already over), a component call, an
        operation, a commit, a callback queued or a caller waiting for one.
        """
        if (
            self.pins
            or self.in_flight
            or self.pickups
            or self.broken is not None
            or self.finished
            or self.revoked
            or not self.settled
        ):
            return None
        wake = math.inf
        for proc in self.processes.values():
            if proc.status == P_DEAD:
                continue
            if proc.status == P_JOINING:
                # A joining parent moves only when its children do, unless they all
                # arrived: then it is about to go on at the converge gateway.
                children = (self.processes.get(c) for c in proc.children)
                if all(c is None or c.status == P_DEAD for c in children):
                    return None
                continue
            rest = self.idle.get(proc.id)
            if rest is None or rest[1].is_set():
                return None
            if proc.status != P_SLEEPING and proc.status != P_SUSPENDED:
                return None  # woken by an operation, not yet running again
            wake = min(wake, rest[0])
        if any(self.callbacks.values()):
            return None
        if self.timers is not None:
            if self.timers.unsettled():
                return None  # its rows are written soon; then it may park
            wake = min(wake, self.timers.next_due())
        return wake

    # -- states --------------------------------------------------------------
    def put_state(self, state: State) -> None:
        self.states[state.node_id] = state
        # Its row is made when the batch is committed: every change of the
        # state up to then is recorded with a put_state too, so the last one wins.
        self._dirty[state.node_id] = state
        if self.timers is not None and state.node_id in self.spec.timed:
            self.timers.state_changed(state)

    def state_of(self, node_id: str) -> str | None:
        st = self.states.get(node_id)
        return str(st.state) if st is not None else None

    def new_state(
        self, node_id: str, parent_id: str, to: str, *, root_id: str | None = None
    ) -> State:
        node = self.spec.nodes.get(node_id)
        st = State(
            node_id=node_id,
            root_id=self.root_id if root_id is None else root_id,
            parent_id=parent_id,
            name=node.name if node is not None else "",
            state=to,
            version=new_id("v"),
        )
        self.put_state(st)
        return st

    # -- data ----------------------------------------------------------------
    def put_exec_data(self, node_id: str, inputs: dict[str, Any], outputs: dict[str, Any]) -> None:
        """Record execution data; raises ValueCodecError for a value the codec refuses."""
        row = ExecutionDataRow(
            node_id, self.root_id, codec.dumps(inputs, "inputs"), codec.dumps(outputs, "outputs")
        )
        self.exec_data[node_id] = (inputs, outputs)
        self.batch.execution_data[node_id] = row

    def exec_outputs(self, node_id: str) -> dict[str, Any]:
        data = self.exec_data.get(node_id)
        return dict(data[1]) if data is not None else {}

    def exec_inputs(self, node_id: str) -> dict[str, Any]:
        data = self.exec_data.get(node_id)
        return dict(data[0]) if data is not None else {}

    def put_node_inputs(self, node_id: str, inputs: dict[str, Any]) -> None:
        self.node_inputs[node_id] = inputs
        self.batch.node_data[node_id] = NodeDataRow(
            node_id=node_id, root_id=self.root_id, inputs_json=codec.dumps(inputs, "inputs")
        )

    def put_context(self, pipeline_id: str, key: str, var: ContextVar) -> None:
        """Upsert a context value; raises ValueCodecError for a value the codec refuses."""
        row = ContextRow(
            pipeline_id=pipeline_id,
            key=key,
            root_id=self.root_id,
            type=var.type,
            value_json=codec.dumps(var.value, key),
            custom_type=var.custom_type,
        )
        self.contexts.setdefault(pipeline_id, {})[key] = var
        self.batch.context[(pipeline_id, key)] = row

    def add_history(self, node_id: str) -> None:
        st = self.states[node_id]
        inputs, outputs = self.exec_data.get(node_id, ({}, {}))
        self.batch.histories.append(
            HistoryRow(
                id=new_id("h"),
                root_id=self.root_id,
                node_id=node_id,
                started_time=st.started_time,
                archived_time=st.archived_time,
                loop=st.loop,
                skip=st.skip,
                retry=st.retry,
                version=st.version,
                inputs_json=codec.dumps(inputs),
                outputs_json=codec.dumps(outputs),
                created_time=time.time(),
            )
        )

    # -- processes -----------------------------------------------------------
    def put_process(self, proc: Process) -> None:
        self.processes[proc.id] = proc
        # Positional, in ProcessRow's field order: a node step records one or more.
        self.batch.processes[proc.id] = ProcessRow(
            proc.id,
            self.root_id,
            proc.parent_id,
            proc.current_node_id,
            proc.destination_id,
            tuple(proc.stack),
            # The plain text, not the enum member: a database driver binds a str
            # subclass more slowly (sqlite3 looks for an adapter first).
            proc.status.value,
            proc.suspended_by,
            tuple(proc.children),
            tuple(proc.acks),
        )

    def fork(self, parent: Process, branches: list[tuple[str, str]]) -> None:
        """Give ``parent`` one child per (first node, converge) branch; it joins them."""
        parent.children = []
        parent.acks = []
        for first, destination in branches:
            child = Process(
                id=new_id("c"),
                parent_id=parent.id,
                current_node_id=first,
                destination_id=destination,
                stack=list(parent.stack),
            )
            self.put_process(child)
            parent.children.append(child.id)
        parent.status = P_JOINING
        self.put_process(parent)

    def live_processes(self) -> list[Process]:
        return [p for p in self.processes.values() if p.status != P_DEAD]

    def process_at(self, node_id: str, *statuses: ProcStatus) -> Process | None:
        for proc in self.processes.values():
            if proc.current_node_id == node_id and proc.status != P_DEAD:
                if not statuses or proc.status in statuses:
                    return proc
        return None

    # -- schedules and callbacks ----------------------------------------------
    def put_schedule(self, sched: Schedule) -> None:
        self.schedules[(sched.node_id, sched.version)] = sched
        if sched.type == POLL:
            active = not sched.finished and not sched.expired
            self.batch.timers[sched.id] = TimerRow(
                id=sched.id,
                root_id=self.root_id,
                node_id=sched.node_id,
                version=sched.version,
                kind="poll",
                due_time=sched.due if active else None,
            )
        self.batch.schedules[sched.id] = ScheduleRow(
            id=sched.id,
            root_id=self.root_id,
            node_id=sched.node_id,
            version=sched.version,
            type=sched.type.value,  # the plain int, as the process's status is plain text
            process_id=sched.process_id,
            finished=sched.finished,
            expired=sched.expired,
            times=sched.times,
        )

    def put_callback(self, row: CallbackRow) -> None:
        self.batch.callbacks[row.id] = row

    def take_callback(self, key: tuple[str, str]) -> CallbackRow | None:
        """The next queued callback of a schedule, now consumed; its caller is answered."""
        queue = self.callbacks.get(key)
        if not queue:
            return None
        row = queue.popleft()
        self.put_callback(attrs.evolve(row, consumed=True))
        pickup = self.pickups.pop(row.id, None)
        if pickup is not None:
            pickup.event.set()
        return row

    def refuse_callbacks(self, key: tuple[str, str], reason: str) -> None:
        """The schedule ended: the callbacks still queued for it are refused, not kept."""
        queue = self.callbacks.pop(key, None)
        for row in queue or ():
            # Consumed, so that a later owner does not deliver them either.
            self.put_callback(attrs.evolve(row, consumed=True))
            pickup = self.pickups.pop(row.id, None)
            if pickup is not None:
                pickup.refusal = reason
                pickup.event.set()
            else:
                # Accepted by an owner that stopped before answering its caller.
                logger.warning("callback %s not delivered: %s", row.id, reason)

    def waiter(self, node_id: str, version: str) -> Waiter:
        key = (node_id, version)
        waiter = self.waiters.get(key)
        if waiter is None:
            waiter = self.waiters[key] = Waiter()
        return waiter

    def abandon(self, node_id: str, version: str) -> None:
        """Stop waiting for the component call of this attempt, and for its callbacks."""
        scope = self.in_flight.pop((node_id, version), None)
        if scope is not None:
            scope.cancel()
        self.invalidate_waiter(node_id, version)

    def invalidate_waiter(self, node_id: str, version: str) -> None:
        waiter = self.waiters.pop((node_id, version), None)
        if waiter is not None:
            waiter.stale = True
            waiter.event.set()

    # -- loading -------------------------------------------------------------
    def restore(self, snap: RunSnapshot) -> None:
        """Fill this run from storage, for a run started by an earlier owner."""
        for srow in snap.states:
            self.states[srow.node_id] = State(
                node_id=srow.node_id,
                root_id=srow.root_id,
                parent_id=srow.parent_id,
                name=srow.name,
                state=states.StateType(srow.state),
                version=srow.version,
                loop=srow.loop,
                inner_loop=srow.inner_loop,
                retry=srow.retry,
                skip=srow.skip,
                error_ignored=srow.error_ignored,
                created_time=srow.created_time,
                started_time=srow.started_time,
                archived_time=srow.archived_time,
            )
        for erow in snap.execution_data:
            self.exec_data[erow.node_id] = (
                codec.loads(erow.inputs_json),
                codec.loads(erow.outputs_json),
            )
        for nrow in snap.node_data:
            self.node_inputs[nrow.node_id] = codec.loads(nrow.inputs_json)
        for crow in snap.context:
            self.contexts.setdefault(crow.pipeline_id, {})[crow.key] = ContextVar(
                crow.type, codec.loads(crow.value_json), crow.custom_type
            )
        for prow in snap.processes:
            self.processes[prow.id] = Process(
                id=prow.id,
                parent_id=prow.parent_id,
                current_node_id=prow.current_node_id,
                destination_id=prow.destination_id,
                stack=list(prow.stack),
                status=ProcStatus(prow.status),
                suspended_by=prow.suspended_by,
                children=list(prow.children),
                acks=list(prow.acks),
                recovering=True,
            )
        for schrow in snap.schedules:
            self.schedules[(schrow.node_id, schrow.version)] = Schedule(
                id=schrow.id,
                node_id=schrow.node_id,
                version=schrow.version,
                type=ScheduleType(schrow.type),
                process_id=schrow.process_id,
                finished=schrow.finished,
                expired=schrow.expired,
                times=schrow.times,
            )
        by_id = {sched.id: sched for sched in self.schedules.values()}
        for timer in snap.timers:
            sched = by_id.get(timer.id)
            if sched is not None and timer.kind == "poll":
                sched.due = timer.due_time
        for cbrow in sorted(snap.callbacks, key=lambda r: r.created_time):
            if not cbrow.consumed:
                key = (cbrow.node_id, cbrow.version)
                self.callbacks.setdefault(key, deque()).append(cbrow)
                if key in self.schedules:
                    self.schedules[key].callback_accepted = True
        if self.timers is not None:
            self.timers.restore(snap.timers)
        self.reserved_rollback = from_rows(snap.timers)
        root_state = self.states.get(self.root_id)
        self.revoked = root_state is not None and root_state.state == states.REVOKED
        self.finished = root_state is not None and root_state.state == states.FINISHED
