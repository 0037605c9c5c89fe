"""A storage runtime kept in Python dicts, with fault hooks.

:class:`MemoryStore` implements every method of :class:`~aiobamboo.runtime.Runtime`
with the semantics of the SQLite store: a batch is stored whole or not at all,
batches land in call order, a run that ended keeps no processes, one worker
holds every run it claims. Its tables live in a :class:`MemoryStorage`, so a
test can close a runtime and open another on the same storage, as after a
restart. :class:`Faults` makes commits fail, land late, or land and then fail
anyway (the answer is lost on the way back), so that a test sees what the
engine, a component or a pipeline does when storage fails.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import anyio
import anyio.lowlevel
import attrs

from ..exceptions import InvalidOperationError, StorageError
from ..runtime import (
    RUN_ACTIVE,
    CallbackRow,
    CommandRow,
    ContextRow,
    EventRow,
    ExecutionDataRow,
    HistoryRow,
    NodeDataRow,
    ProcessRow,
    RunHolder,
    RunRow,
    RunSnapshot,
    RunSummary,
    ScheduleRow,
    StateRow,
    TimerRow,
    WriteBatch,
)
from ..storage import BatchOutcome, Broadcast, GroupCommitter, GroupDone

__all__ = ["Faults", "MemoryStorage", "MemoryStore"]

#: Which commits a fault applies to; None means every commit.
BatchFilter = Callable[[WriteBatch], bool] | None


@attrs.define(eq=False)
class _Lease:
    owner: str | None = None
    until: float | None = None
    parked: bool = False


@attrs.define(eq=False)
class MemoryStorage:
    """The tables; pass one object to several runtimes in turn to reopen the same data."""

    runs: dict[str, RunRow] = attrs.Factory(dict)
    leases: dict[str, _Lease] = attrs.Factory(dict)
    nodes: dict[str, str] = attrs.Factory(dict)  # node id -> root id
    states: dict[str, StateRow] = attrs.Factory(dict)
    execution_data: dict[str, ExecutionDataRow] = attrs.Factory(dict)
    node_data: dict[str, NodeDataRow] = attrs.Factory(dict)
    context: dict[tuple[str, str], ContextRow] = attrs.Factory(dict)
    processes: dict[str, ProcessRow] = attrs.Factory(dict)
    schedules: dict[str, ScheduleRow] = attrs.Factory(dict)
    callbacks: dict[str, CallbackRow] = attrs.Factory(dict)
    histories: list[HistoryRow] = attrs.Factory(list)
    commands: dict[str, CommandRow] = attrs.Factory(dict)
    timers: dict[str, TimerRow] = attrs.Factory(dict)
    events: list[EventRow] = attrs.Factory(list)
    last_event_id: int = 0
    #: Bumped when events are stored, for subscribers of every runtime on this storage.
    event_signal: Broadcast = attrs.Factory(Broadcast)
    #: Batches stored so far (lost answers included), for tests to count.
    commits: int = 0
    #: The worker runtime open on this storage: like SQLite's file lock, one at a time.
    worker_owner: str | None = None
    _listeners: list[Callable[[], None]] = attrs.Factory(list)
    #: Process and timer ids each run has written, so that a run that ends finds
    #: its own without a look at every run's (ids of rows gone since included).
    _run_processes: dict[str, set[str]] = attrs.Factory(dict)
    _run_timers: dict[str, set[str]] = attrs.Factory(dict)

    def signal(self) -> None:
        """Wake every runtime open on this storage (a new run, a command, an answer)."""
        for listener in list(self._listeners):
            listener()

    def apply(self, batch: WriteBatch, owner: str | None, lease_seconds: float) -> None:
        """Store ``batch`` whole, or refuse it (raising) with nothing stored."""
        if batch.new_run is not None:
            self._check_new_run(batch)
            run = batch.new_run
            self.runs[run.root_id] = run
            until = time.time() + lease_seconds if owner is not None else None
            self.leases[run.root_id] = _Lease(owner, until)
            for node_id in batch.new_nodes:
                self.nodes[node_id] = run.root_id
        self.states.update(batch.states)
        self.execution_data.update(batch.execution_data)
        self.node_data.update(batch.node_data)
        self.context.update(batch.context)
        self.processes.update(batch.processes)
        for pid, row in batch.processes.items():
            self._run_processes.setdefault(row.root_id, set()).add(pid)
        self.schedules.update(batch.schedules)
        self.callbacks.update(batch.callbacks)
        self.histories.extend(batch.histories)
        self.timers.update(batch.timers)
        for tid, timer in batch.timers.items():
            self._run_timers.setdefault(timer.root_id, set()).add(tid)
        if batch.events:
            # Constructed directly: attrs.evolve introspects the class on every
            # call, and a node step stores several events.
            last = self.last_event_id
            append = self.events.append
            for event in batch.events:
                last += 1
                append(
                    EventRow(
                        event.root_id,
                        event.node_id,
                        event.kind,
                        event.state,
                        event.data_json,
                        event.time,
                        last,
                    )
                )
            self.last_event_id = last
            self.event_signal.bump()
        if batch.run_status is not None and batch.root_id in self.runs:
            self.runs[batch.root_id] = attrs.evolve(
                self.runs[batch.root_id], status=batch.run_status
            )
            if batch.run_status != RUN_ACTIVE:
                # An ended run keeps no processes.
                root_id = batch.root_id
                _drop_rows(self.processes, self._run_processes.pop(root_id, ()), root_id)
                _drop_rows(self.timers, self._run_timers.pop(root_id, ()), root_id)
        self.commits += 1

    def _check_new_run(self, batch: WriteBatch) -> None:
        assert batch.new_run is not None
        root_id = batch.new_run.root_id
        if root_id in self.runs:
            raise InvalidOperationError(f"pipeline {root_id} already exists")
        taken = set(batch.new_nodes) & self.nodes.keys()
        if taken or len(set(batch.new_nodes)) != len(batch.new_nodes):
            raise InvalidOperationError(f"pipeline {root_id} reuses node ids of another pipeline")

    def snapshot(self, root_id: str) -> RunSnapshot | None:
        run = self.runs.get(root_id)
        if run is None:
            return None

        def of_run(rows: Any) -> list[Any]:
            return [r for r in rows if r.root_id == root_id]

        return RunSnapshot(
            run=run,
            # Appointed pauses are stored before their node joins the tree (root_id
            # ""), so states are found through the run's nodes, as SQLite does.
            states=[
                st
                for node_id, root in self.nodes.items()
                if root == root_id and (st := self.states.get(node_id)) is not None
            ],
            execution_data=of_run(self.execution_data.values()),
            node_data=of_run(self.node_data.values()),
            context=of_run(self.context.values()),
            processes=of_run(self.processes.values()),
            schedules=of_run(self.schedules.values()),
            callbacks=[c for c in of_run(self.callbacks.values()) if not c.consumed],
            timers=[t for t in of_run(self.timers.values()) if t.due_time is not None],
        )


def _drop_rows(table: dict[str, Any], ids: Iterable[str], root_id: str) -> None:
    """Delete the rows of ``ids`` that still belong to ``root_id``."""
    for row_id in ids:
        row = table.get(row_id)
        if row is not None and row.root_id == root_id:
            del table[row_id]


@attrs.define(eq=False)
class _Fault:
    remaining: int
    lose_answer: bool
    when: BatchFilter
    error: str


@attrs.define(eq=False)
class Faults:
    """What goes wrong with the next commits of a :class:`MemoryStore`.

    Faults apply in the order they were added, each to the commits its ``when``
    accepts (every commit by default), and each raises
    :class:`~aiobamboo.exceptions.StorageError`.
    """

    #: Seconds every commit takes before it lands.
    commit_delay: float = 0.0
    #: Commits that failed or lost their answer so far.
    injected: int = 0
    _pending: list[_Fault] = attrs.Factory(list)

    def fail_commits(
        self, times: int = 1, *, when: BatchFilter = None, error: str = "injected commit failure"
    ) -> None:
        """The next ``times`` commits store nothing and raise StorageError."""
        self._pending.append(_Fault(times, False, when, error))

    def lose_answers(
        self, times: int = 1, *, when: BatchFilter = None, error: str = "injected lost answer"
    ) -> None:
        """The next ``times`` commits are stored, then raise StorageError all the same."""
        self._pending.append(_Fault(times, True, when, error))

    def clear(self) -> None:
        """No more faults; commits land at once."""
        self._pending.clear()
        self.commit_delay = 0.0

    @property
    def pending(self) -> int:
        """Commits still to be hit by a fault."""
        return sum(f.remaining for f in self._pending)

    def take(self, batch: WriteBatch) -> _Fault | None:
        for fault in self._pending:
            if fault.when is None or fault.when(batch):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._pending.remove(fault)
                self.injected += 1
                return fault
        return None


class MemoryStore:
    """The storage side of :class:`~aiobamboo.testing.MemoryRuntime`."""

    owner_id: str
    lease_seconds: float
    worker: bool

    def __init__(self, storage: MemoryStorage | None = None, *, worker: bool = True) -> None:
        self.storage = storage if storage is not None else MemoryStorage()
        self.faults = Faults()
        #: Whether new runs belong to this runtime (a worker) or to nobody yet (a client).
        self.worker = worker
        self.owner_id = f"memory-{uuid.uuid4().hex[:8]}"
        # One worker per storage (as one per SQLite file), so a lease only matters to clients.
        self.lease_seconds = 3600.0
        self._open = False
        self._signalled = anyio.Event()
        # The committer every store shares: batches land in call order, grouped.
        # Written on the event loop's thread as SQLite's idle connection does
        # (the first commit of a pass waits for the pass to end, then writes
        # the group at once), so that a commit costs the engine the passes of
        # the loop it costs on SQLite; a commit delay goes through a task.
        self._committer = GroupCommitter(
            what="the memory storage",
            submit_group=self._submit_group,
            write_now=self._write_now,
        )
        #: Delayed groups being written (kept referenced until they land).
        self._writing: set[asyncio.Task[None]] = set()

    def _listen(self) -> None:
        self._signalled.set()

    def __repr__(self) -> str:
        return f"MemoryStore(worker={self.worker})"

    async def open(self) -> None:
        if self.worker:
            if self.storage.worker_owner is not None:
                raise StorageError(
                    "this storage is in use by another worker runtime; "
                    "open it with worker=False to start and control pipelines from here"
                )
            self.storage.worker_owner = self.owner_id
        self._open = True
        self.storage._listeners.append(self._listen)
        self._committer.start()

    async def aclose(self) -> None:
        await self._committer.aclose()
        for task in list(self._writing):
            task.cancel()
        self._open = False
        if self._listen in self.storage._listeners:
            self.storage._listeners.remove(self._listen)
        if self.storage.worker_owner == self.owner_id:
            self.storage.worker_owner = None

    def statistics(self) -> dict[str, Any]:
        return {}

    def _check_open(self) -> None:
        if not self._open:
            raise StorageError("the runtime is not open")

    # -- writes ---------------------------------------------------------------
    async def commit(self, batch: WriteBatch) -> None:
        await self._committer.commit(batch)

    def _write_now(self, batches: list[WriteBatch]) -> list[BatchOutcome] | None:
        if self.faults.commit_delay > 0:
            return None  # submitted: the group lands once the delay has passed
        return self._apply_group(batches)

    def _submit_group(self, batches: list[WriteBatch], done: GroupDone) -> None:
        task = asyncio.get_running_loop().create_task(self._write_late(batches, done))
        self._writing.add(task)
        task.add_done_callback(self._writing.discard)

    async def _write_late(self, batches: list[WriteBatch], done: GroupDone) -> None:
        try:
            await anyio.sleep(self.faults.commit_delay)
            outcomes = self._apply_group(batches)
        except Exception as exc:
            done(None, exc)
        else:
            done(outcomes, None)

    def _apply_group(self, batches: list[WriteBatch]) -> list[BatchOutcome]:
        """Apply a group as the SQL stores do: each batch whole or not at all, in order."""
        outcomes: list[BatchOutcome] = []
        owner = self.owner_id if self.worker else None
        for batch in batches:
            fault = self.faults.take(batch)
            if fault is not None and not fault.lose_answer:
                outcomes.append(StorageError(f"memory commit failed: {fault.error}"))
                continue
            try:
                self.storage.apply(batch, owner, self.lease_seconds)
            except InvalidOperationError as exc:
                outcomes.append(exc)
                continue
            if batch.new_run is not None:
                self.storage.signal()
            if fault is not None:
                outcomes.append(StorageError(f"memory commit stored, answer lost: {fault.error}"))
            else:
                outcomes.append(None)
        return outcomes

    # -- reads -----------------------------------------------------------------
    async def _read(self) -> MemoryStorage:
        self._check_open()
        await anyio.lowlevel.checkpoint()
        return self.storage

    async def get_run(self, root_id: str) -> RunRow | None:
        return (await self._read()).runs.get(root_id)

    async def load_run(self, root_id: str) -> RunSnapshot | None:
        return (await self._read()).snapshot(root_id)

    async def load_runs(self, root_ids: Sequence[str]) -> dict[str, RunSnapshot]:
        storage = await self._read()
        found = {r: storage.snapshot(r) for r in root_ids}
        return {r: snap for r, snap in found.items() if snap is not None}

    async def get_node_root(self, node_id: str) -> str | None:
        return (await self._read()).nodes.get(node_id)

    async def get_run_holder(self, root_id: str) -> RunHolder | None:
        storage = await self._read()
        if root_id not in storage.runs:
            return None
        lease = storage.leases.get(root_id) or _Lease()
        return RunHolder(lease.owner, lease.until, lease.parked)

    async def get_state(self, node_id: str) -> StateRow | None:
        return (await self._read()).states.get(node_id)

    async def get_states_by_root(self, root_id: str) -> list[StateRow]:
        rows = (await self._read()).states.values()
        return sorted((s for s in rows if s.root_id == root_id), key=_created)

    async def get_states_by_parent(self, parent_id: str) -> list[StateRow]:
        rows = (await self._read()).states.values()
        return sorted((s for s in rows if s.parent_id == parent_id), key=_created)

    async def get_execution_data(self, node_id: str) -> ExecutionDataRow | None:
        return (await self._read()).execution_data.get(node_id)

    async def get_node_data(self, node_id: str) -> NodeDataRow | None:
        return (await self._read()).node_data.get(node_id)

    async def get_histories(self, node_id: str, loop: int = -1) -> list[HistoryRow]:
        rows = (await self._read()).histories
        found = (h for h in rows if h.node_id == node_id and (loop == -1 or h.loop == loop))
        return sorted(found, key=_created)

    # -- ownership and commands ----------------------------------------------------
    def _claimable(self, root_id: str) -> bool:
        run = self.storage.runs.get(root_id)
        lease = self.storage.leases.get(root_id)
        # The worker holds the storage alone (see MemoryStorage.worker_owner), so any
        # other owner is gone.
        return (
            run is not None
            and run.status == RUN_ACTIVE
            and (lease is None or lease.owner != self.owner_id)
        )

    def _take(self, root_id: str) -> None:
        self.storage.leases[root_id] = _Lease(self.owner_id, time.time() + self.lease_seconds)

    def _parked(self, root_id: str) -> bool:
        lease = self.storage.leases.get(root_id)
        return lease is not None and lease.parked

    async def claim_runs(self, limit: int, root_ids: Sequence[str] | None = None) -> list[str]:
        storage = await self._read()
        if root_ids is None:
            candidates = [
                r.root_id
                for r in sorted(storage.runs.values(), key=_created)
                if not self._parked(r.root_id)
            ]
        else:
            candidates = list(root_ids)
        claimed = [r for r in candidates if self._claimable(r)][:limit]
        for root_id in claimed:
            self._take(root_id)
            self._requeue(root_id)
        return claimed

    def _requeue(self, root_id: str) -> None:
        """The previous holder is gone: the commands it took and never answered are pending."""
        for row in list(self.storage.commands.values()):
            if row.root_id == root_id and row.status == "taken":
                self.storage.commands[row.id] = attrs.evolve(row, status="pending")

    async def claim_woken(self, limit: int, now: float) -> list[str]:
        storage = await self._read()
        woken = {
            t.root_id
            for t in storage.timers.values()
            if t.due_time is not None and t.due_time <= now
        }
        woken.update(c.root_id for c in storage.commands.values() if c.status == "pending")
        claimed = [r for r in sorted(woken) if self._parked(r) and self._claimable(r)][:limit]
        for root_id in claimed:
            self._take(root_id)
        return claimed

    async def deliver_callback(self, row: CallbackRow) -> bool:
        storage = await self._read()
        lease, run = storage.leases.get(row.root_id), storage.runs.get(row.root_id)
        if lease is None or not lease.parked or run is None or run.status != RUN_ACTIVE:
            return False
        key = (row.node_id, row.version)
        waiting = any(
            (s.node_id, s.version) == key and s.type == 1 and not s.finished and not s.expired
            for s in storage.schedules.values()
        )
        state = storage.states.get(row.node_id)
        asleep = any(
            p.root_id == row.root_id and p.current_node_id == row.node_id and p.status == "sleeping"
            for p in storage.processes.values()
        )
        taken = any(
            (c.node_id, c.version) == key and not c.consumed for c in storage.callbacks.values()
        )
        if not waiting or not asleep or taken or state is None:
            return False
        if (state.version, state.state) != (row.version, "RUNNING"):
            return False
        storage.callbacks[row.id] = row
        storage.leases[row.root_id] = _Lease()
        storage.signal()
        return True

    async def park_runs(self, root_ids: Sequence[str]) -> list[str]:
        await self._read()
        return [root_id for root_id in root_ids if self._park(root_id)]

    async def park_run(self, root_id: str) -> bool:
        """:meth:`park_runs` for one run: whether it was parked."""
        return await self.park_runs([root_id]) == [root_id]

    def _park(self, root_id: str) -> bool:
        storage = self.storage
        lease, run = storage.leases.get(root_id), storage.runs.get(root_id)
        if lease is None or lease.owner != self.owner_id or run is None:
            return False
        if run.status != RUN_ACTIVE:
            return False
        if any(
            c.root_id == root_id and c.status in ("pending", "taken")
            for c in storage.commands.values()
        ):
            return False
        storage.leases[root_id] = _Lease(parked=True)
        return True

    async def renew_leases(self, root_ids: Sequence[str]) -> list[str]:
        storage = await self._read()
        held = []
        for root_id in root_ids:
            lease, run = storage.leases.get(root_id), storage.runs.get(root_id)
            if lease is not None and lease.owner == self.owner_id and run is not None:
                if run.status == RUN_ACTIVE:
                    self._take(root_id)
                    held.append(root_id)
        return held

    async def release_runs(self, root_ids: Sequence[str]) -> None:
        storage = await self._read()
        for root_id in root_ids:
            lease = storage.leases.get(root_id)
            if lease is not None and lease.owner == self.owner_id:
                storage.leases[root_id] = _Lease()
        storage.signal()

    async def submit_command(self, root_id: str, op: str, args_json: str) -> str:
        storage = await self._read()
        command_id = "m" + uuid.uuid4().hex
        storage.commands[command_id] = CommandRow(
            id=command_id,
            root_id=root_id,
            op=op,
            args_json=args_json,
            status="pending",
            ok=False,
            created_time=time.time(),
        )
        storage.signal()
        return command_id

    async def pending_commands(self, root_ids: Sequence[str]) -> list[CommandRow]:
        storage = await self._read()
        wanted = set(root_ids)
        taken = []
        for row in list(storage.commands.values()):
            lease = storage.leases.get(row.root_id)
            mine = lease is not None and lease.owner == self.owner_id
            if row.status == "pending" and mine and row.root_id in wanted:
                storage.commands[row.id] = row = attrs.evolve(row, status="taken")
                taken.append(row)
        return sorted(taken, key=_created)

    async def complete_command(self, command_id: str, ok: bool, message: str) -> None:
        storage = await self._read()
        row = storage.commands.get(command_id)
        if row is not None:
            storage.commands[command_id] = attrs.evolve(row, status="done", ok=ok, message=message)
        storage.signal()

    async def get_command(self, command_id: str) -> CommandRow | None:
        return (await self._read()).commands.get(command_id)

    async def cancel_command(self, command_id: str) -> bool:
        storage = await self._read()
        row = storage.commands.get(command_id)
        if row is None or row.status != "pending":
            return False
        storage.commands[command_id] = attrs.evolve(row, status="cancelled")
        return True

    # -- events ----------------------------------------------------------------
    @property
    def events_seen(self) -> int:
        return self.storage.event_signal.count

    async def read_events(
        self, after: int, root_id: str | None = None, limit: int = 500
    ) -> list[EventRow]:
        storage = await self._read()
        # Ids grow along the list: find the first one after the cursor by bisection.
        events = storage.events
        lo, hi = 0, len(events)
        while lo < hi:
            mid = (lo + hi) // 2
            if events[mid].id <= after:
                lo = mid + 1
            else:
                hi = mid
        found: list[EventRow] = []
        for event in events[lo:]:
            if root_id is None or event.root_id == root_id:
                found.append(event)
                if len(found) >= limit:
                    break
        return found

    async def last_event_id(self) -> int:
        return (await self._read()).last_event_id

    async def purge_events(self, before: float) -> int:
        storage = await self._read()
        kept = [e for e in storage.events if e.time >= before]
        purged = len(storage.events) - len(kept)
        storage.events = kept
        return purged

    async def wait_for_events(self, seen: int, at_most: float) -> None:
        await self.storage.event_signal.wait(seen, at_most)

    # -- listing and retention ---------------------------------------------------
    async def list_runs(
        self,
        *,
        state: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        before_key: tuple[float, str] | None = None,
        limit: int = 100,
    ) -> list[RunSummary]:
        storage = await self._read()
        found = []
        for run in storage.runs.values():
            key = (run.created_time, run.root_id)
            if created_after is not None and run.created_time < created_after:
                continue
            if created_before is not None and run.created_time >= created_before:
                continue
            if before_key is not None and not key < before_key:
                continue
            root = storage.states.get(run.root_id)
            if state is not None and (root is None or root.state != state):
                continue
            found.append(
                RunSummary(
                    run.root_id,
                    run.status,
                    root.state if root else "",
                    _tree_name(run.tree_json),
                    run.created_time,
                    root.started_time if root else None,
                    root.archived_time if root else None,
                )
            )
        found.sort(key=lambda r: (r.created_time, r.root_id), reverse=True)
        return found[:limit]

    async def purge_runs(self, finished_before: float, limit: int) -> list[str]:
        storage = await self._read()
        ended = []
        for run in sorted(storage.runs.values(), key=_created):
            root = storage.states.get(run.root_id)
            ended_time = root.archived_time if root and root.archived_time else run.created_time
            if run.status != RUN_ACTIVE and ended_time < finished_before:
                ended.append(run.root_id)
        gone = set(ended[:limit])
        nodes = {n for n, root_id in storage.nodes.items() if root_id in gone}
        keyed: tuple[dict[Any, Any], ...] = (
            storage.execution_data, storage.node_data, storage.context, storage.processes,
            storage.schedules, storage.callbacks, storage.timers, storage.commands,
        )  # fmt: skip
        for table in keyed:
            for key in [k for k, row in table.items() if row.root_id in gone]:
                del table[key]
        states = storage.states
        for node_id in [n for n, row in states.items() if n in nodes or row.root_id in gone]:
            del states[node_id]
        storage.histories = [h for h in storage.histories if h.root_id not in gone]
        storage.events = [e for e in storage.events if e.root_id not in gone]
        for node_id in nodes:
            del storage.nodes[node_id]
        for root_id in gone:
            del storage.runs[root_id]
            storage.leases.pop(root_id, None)
        return sorted(gone, key=ended.index)

    async def wait_for_signal(self, at_most: float) -> None:
        with anyio.move_on_after(at_most):
            await self._signalled.wait()
        if self._signalled.is_set():
            self._signalled = anyio.Event()


def _tree_name(tree_json: str) -> str:
    try:
        name = json.loads(tree_json).get("name")
    except (ValueError, AttributeError):
        return ""
    return name if isinstance(name, str) else ""


def _created(row: Any) -> float:
    return float(row.created_time)
