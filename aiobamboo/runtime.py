"""The storage side of the engine: the :class:`Runtime` Protocol and its records.

The engine keeps a running pipeline in memory and writes every step through
one :class:`WriteBatch`; a runtime stores batches atomically (sharing
transactions between concurrent batches if it likes) and answers the reads
the API needs. Runtimes know nothing about node kinds; the engine knows
nothing about SQL.

A store plays five roles, each a Protocol of its own:

- :class:`Journal`: the durable record the scheduler writes and rebuilds runs from;
- :class:`ReadModel`: what the API reads for its callers;
- :class:`Coordination`: claims, leases, parking, commands and wake-up signals between processes;
- :class:`EventLog`: committed events, for subscribers in any process;
- :class:`Retention`: listing runs, and deleting the ended ones.

:class:`Runtime` is the five together, and :class:`Store` adds the
:class:`Lifecycle` (open, close) an :class:`~aiobamboo.host.Engine` drives.

Value columns (``*_json``) hold text written by :mod:`aiobamboo.codec`; times
are POSIX seconds (float).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeAlias, runtime_checkable

import attrs

__all__ = [
    "JSON",
    "CallbackRow",
    "CommandRow",
    "ContextRow",
    "Coordination",
    "EventLog",
    "EventRow",
    "ExecutionDataRow",
    "HistoryRow",
    "Journal",
    "Lifecycle",
    "NamedQueryReads",
    "NodeDataRow",
    "ProcessRow",
    "ReadModel",
    "Retention",
    "RunHolder",
    "RunRow",
    "RunSnapshot",
    "RunSummary",
    "Runtime",
    "ScheduleRow",
    "StateRow",
    "Store",
    "TimerRow",
    "WriteBatch",
    "load_sql_blocks",
]

JSON: TypeAlias = Any
"""A value of the codec: JSON types plus datetime, date, Decimal and tuple."""

# The records a WriteBatch carries are built on every node step: they compare
# and hash by value, and nobody changes one once it is built, but they are
# not attrs' frozen classes. A frozen class sets each field through
# object.__setattr__, which made building a StateRow four times as costly
# (1.0 µs against 0.27), a few percent of every step of the engine. For the
# same reason assigning a field runs no converter (``on_setattr``).

# Run status values (RunRow.status).
RUN_ACTIVE = "active"
RUN_FINISHED = "finished"
RUN_REVOKED = "revoked"


@attrs.define(unsafe_hash=True, on_setattr=attrs.setters.NO_OP)
class RunRow:
    """One root pipeline run: the processed tree is stored once."""

    root_id: str
    tree_json: str
    options_json: str
    status: str
    created_time: float


@attrs.frozen
class RunSummary:
    """A root pipeline run as listed: its run row and its root node's state.

    ``name`` is the tree's ``name`` (``""`` when it has none). ``state`` is
    ``""`` and the times None while the root has no state row yet.
    """

    root_id: str
    status: str
    state: str
    name: str
    created_time: float
    started_time: float | None
    archived_time: float | None


@attrs.frozen
class RunHolder:
    """Who holds a run: ``owner`` (a store's ``owner_id``) until ``lease_until``, or nobody.

    ``parked``: it waits on the outside world in no process's memory. A run
    held by nobody and not parked waits for a worker to claim it.
    """

    owner: str | None
    lease_until: float | None
    parked: bool = attrs.field(converter=bool)


@attrs.define(unsafe_hash=True, on_setattr=attrs.setters.NO_OP)
class StateRow:
    node_id: str
    root_id: str
    parent_id: str
    name: str
    state: str
    version: str
    loop: int
    inner_loop: int
    retry: int
    skip: bool = attrs.field(converter=bool)
    error_ignored: bool = attrs.field(converter=bool)
    created_time: float = 0.0
    started_time: float | None = None
    archived_time: float | None = None


@attrs.define(unsafe_hash=True, on_setattr=attrs.setters.NO_OP)
class ExecutionDataRow:
    node_id: str
    root_id: str
    inputs_json: str
    outputs_json: str


@attrs.define(unsafe_hash=True, on_setattr=attrs.setters.NO_OP)
class NodeDataRow:
    """Inputs that replaced a node's tree inputs (``retry_node(data=...)``)."""

    node_id: str
    root_id: str
    inputs_json: str


@attrs.define(unsafe_hash=True, on_setattr=attrs.setters.NO_OP)
class ContextRow:
    pipeline_id: str
    key: str
    root_id: str
    type: int  # 1 plain, 2 splice, 3 compute (lazy)
    value_json: str
    custom_type: str | None


@attrs.define(unsafe_hash=True, on_setattr=attrs.setters.NO_OP)
class ProcessRow:
    """A logical thread of execution."""

    id: str
    root_id: str
    parent_id: str | None
    current_node_id: str
    destination_id: str | None
    stack: tuple[str, ...]
    status: str  # running | sleeping | suspended | joining | dead
    suspended_by: str | None
    children: tuple[str, ...]
    acks: tuple[str, ...]


@attrs.define(unsafe_hash=True, on_setattr=attrs.setters.NO_OP)
class ScheduleRow:
    id: str
    root_id: str
    node_id: str
    version: str
    type: int  # 1 callback, 2 multiple callback, 3 poll
    process_id: str
    finished: bool = attrs.field(converter=bool)
    expired: bool = attrs.field(converter=bool)
    times: int = 0


@attrs.define(unsafe_hash=True, on_setattr=attrs.setters.NO_OP)
class CallbackRow:
    id: str
    root_id: str
    node_id: str
    version: str
    data_json: str
    consumed: bool = attrs.field(converter=bool)
    created_time: float = 0.0


@attrs.define(unsafe_hash=True, on_setattr=attrs.setters.NO_OP)
class HistoryRow:
    id: str
    root_id: str
    node_id: str
    started_time: float | None
    archived_time: float | None
    loop: int
    skip: bool = attrs.field(converter=bool)
    retry: int = 0
    version: str = ""
    inputs_json: str = "{}"
    outputs_json: str = "{}"
    created_time: float = 0.0


@attrs.define(unsafe_hash=True, on_setattr=attrs.setters.NO_OP)
class TimerRow:
    """A durable timer of a run, claimed by due time when the run is parked.

    ``kind`` says what it wakes (``poll``: a polling activity's next
    ``schedule()``). ``due_time`` is POSIX seconds by the engine's clock, None
    once the timer fired or was cancelled (the row is then inert).
    """

    id: str
    root_id: str
    node_id: str
    version: str
    kind: str
    due_time: float | None


@attrs.define(unsafe_hash=True, on_setattr=attrs.setters.NO_OP)
class EventRow:
    """A committed change of a run, kept for subscribers in every process.

    ``id`` is assigned by the store when the event is committed: ids grow in
    commit order, so a subscriber resumes after the last id it saw.
    ``data_json`` is the event's extra data as codec JSON.
    """

    root_id: str
    node_id: str
    kind: str
    state: str
    data_json: str
    time: float
    id: int = 0


@attrs.define
class WriteBatch:
    """Everything one engine step changed in one run; stored atomically.

    Keyed collections keep the last write per row, so a step may record the
    same row several times.
    """

    root_id: str
    new_run: RunRow | None = None
    new_nodes: Sequence[str] = ()
    run_status: str | None = None
    states: dict[str, StateRow] = attrs.Factory(dict)
    execution_data: dict[str, ExecutionDataRow] = attrs.Factory(dict)
    node_data: dict[str, NodeDataRow] = attrs.Factory(dict)
    context: dict[tuple[str, str], ContextRow] = attrs.Factory(dict)
    processes: dict[str, ProcessRow] = attrs.Factory(dict)
    schedules: dict[str, ScheduleRow] = attrs.Factory(dict)
    callbacks: dict[str, CallbackRow] = attrs.Factory(dict)
    histories: list[HistoryRow] = attrs.Factory(list)
    timers: dict[str, TimerRow] = attrs.Factory(dict)
    events: list[EventRow] = attrs.Factory(list)

    def __bool__(self) -> bool:
        return bool(
            self.timers
            or self.events
            or self.new_run
            or self.run_status
            or self.states
            or self.execution_data
            or self.node_data
            or self.context
            or self.processes
            or self.schedules
            or self.callbacks
            or self.histories
        )


@attrs.frozen
class RunSnapshot:
    """Everything needed to rebuild a run in memory after a restart."""

    run: RunRow
    states: Sequence[StateRow]
    execution_data: Sequence[ExecutionDataRow]
    node_data: Sequence[NodeDataRow]
    context: Sequence[ContextRow]
    processes: Sequence[ProcessRow]
    schedules: Sequence[ScheduleRow]
    callbacks: Sequence[CallbackRow]
    #: The run's timers still due (``due_time`` not None).
    timers: Sequence[TimerRow] = ()


@attrs.frozen
class CommandRow:
    """An operation sent to the owner of a run by a process that does not own it.

    status: ``pending`` -> ``done`` (``ok`` and ``message`` set), or
    ``cancelled`` by a sender that stopped waiting before anyone took it.
    """

    id: str
    root_id: str
    op: str
    args_json: str
    status: str
    ok: bool = attrs.field(converter=bool)
    message: str = ""
    created_time: float = 0.0


class NamedQueryReads:
    """The reads of the API and of subscribers, shared by runtimes whose query
    files use the same names.

    A runtime provides ``_one(name, *args)`` and ``_all(name, *args)``, which
    run the named query and return a row (or None) and a list of rows, columns
    in the order of the record types here.
    """

    async def _one(self, name: str, *args: Any) -> Any:
        raise NotImplementedError

    async def _all(self, name: str, *args: Any) -> list[Any]:
        raise NotImplementedError

    async def get_run(self, root_id: str) -> RunRow | None:
        row = await self._one("get_run", root_id)
        return RunRow(*row) if row else None

    async def get_node_root(self, node_id: str) -> str | None:
        row = await self._one("node_root", node_id)
        return row[0] if row else None

    async def get_run_holder(self, root_id: str) -> RunHolder | None:
        row = await self._one("run_holder", root_id)
        return RunHolder(*row) if row else None

    async def get_state(self, node_id: str) -> StateRow | None:
        row = await self._one("get_state", node_id)
        return StateRow(*row) if row else None

    async def get_states_by_root(self, root_id: str) -> list[StateRow]:
        return [StateRow(*r) for r in await self._all("states_by_root", root_id)]

    async def get_states_by_parent(self, parent_id: str) -> list[StateRow]:
        return [StateRow(*r) for r in await self._all("states_by_parent", parent_id)]

    async def get_execution_data(self, node_id: str) -> ExecutionDataRow | None:
        row = await self._one("get_execution_data", node_id)
        return ExecutionDataRow(*row) if row else None

    async def get_node_data(self, node_id: str) -> NodeDataRow | None:
        row = await self._one("get_node_data", node_id)
        return NodeDataRow(*row) if row else None

    async def get_histories(self, node_id: str, loop: int = -1) -> list[HistoryRow]:
        if loop == -1:
            rows = await self._all("histories", node_id)
        else:
            rows = await self._all("histories_loop", node_id, loop)
        return [HistoryRow(*r) for r in rows]

    async def read_events(
        self, after: int, root_id: str | None = None, limit: int = 500
    ) -> list[EventRow]:
        if root_id is None:
            rows = await self._all("read_events", after, limit)
        else:
            rows = await self._all("read_events_of_root", root_id, after, limit)
        return [EventRow(*r) for r in rows]

    async def last_event_id(self) -> int:
        return int((await self._one("last_event_id"))[0])


def load_sql_blocks(text: str) -> dict[str, str]:
    """Parse a file of ``-- name: NAME`` blocks into ``{NAME: statement}``."""
    queries: dict[str, str] = {}
    name = None
    lines: list[str] = []
    for line in [*text.splitlines(), "-- name: "]:
        if line.startswith("-- name:"):
            if name:
                queries[name] = "\n".join(lines).strip()
            name, lines = line.split(":", 1)[1].strip(), []
        elif not line.startswith("--"):
            lines.append(line)
    return queries


# The storage protocol, in the five roles a store plays. A new runtime can be
# written, and checked with aiobamboo.testing, one role at a time.


@runtime_checkable
class Journal(Protocol):
    """The durable record: the scheduler writes every step here and rebuilds runs from it.

    Every method may raise StorageError.
    """

    async def commit(self, batch: WriteBatch) -> None:
        """Store ``batch`` atomically; batches are applied in call order.

        A batch with ``new_run`` whose root id exists, or whose node ids belong
        to another run, raises InvalidOperationError and changes nothing.
        """

    async def get_run(self, root_id: str) -> RunRow | None: ...

    async def load_run(self, root_id: str) -> RunSnapshot | None:
        """Everything needed to rebuild the run in memory, as one commit left it."""

    async def load_runs(self, root_ids: Sequence[str]) -> dict[str, RunSnapshot]:
        """:meth:`load_run` for several runs at once, by root id; unknown ids are left out."""

    async def get_node_root(self, node_id: str) -> str | None:
        """The root id of the run whose tree holds ``node_id`` (reached or not)."""


@runtime_checkable
class ReadModel(Protocol):
    """What the API reads to answer its callers; the scheduler never needs it."""

    async def get_state(self, node_id: str) -> StateRow | None: ...

    async def get_states_by_root(self, root_id: str) -> list[StateRow]: ...

    async def get_states_by_parent(self, parent_id: str) -> list[StateRow]: ...

    async def get_execution_data(self, node_id: str) -> ExecutionDataRow | None: ...

    async def get_node_data(self, node_id: str) -> NodeDataRow | None: ...

    async def get_histories(self, node_id: str, loop: int = -1) -> list[HistoryRow]:
        """The node's history rows, oldest first; of one loop only unless ``loop`` is -1."""


@runtime_checkable
class Coordination(Protocol):
    """Several processes sharing one database: who holds which run, and messages to them."""

    #: this store's owner id, written into the runs it holds
    owner_id: str
    #: seconds a claim lasts unless renewed; another worker may take the run after that
    lease_seconds: float

    async def claim_runs(self, limit: int, root_ids: Sequence[str] | None = None) -> list[str]:
        """Take up to ``limit`` active runs that nobody holds.

        Without ``root_ids``: runs that are not parked (new runs of clients,
        runs a worker released or lost). With ``root_ids``: those of them that
        nobody holds, parked or not (an operation or a callback wakes them).
        A run whose lease ran out counts as held by nobody. A claimed run is
        no longer parked.
        """

    async def claim_woken(self, limit: int, now: float) -> list[str]:
        """Take up to ``limit`` parked runs that something in storage wakes.

        A parked run wakes when one of its timers is due (``due_time <= now``,
        ``now`` by the engine's clock) or a command waits for it. Claimed runs
        are no longer parked.
        """

    async def park_runs(self, root_ids: Sequence[str]) -> list[str]:
        """Release runs this owner holds and mark them parked, in one write.

        A run is left as it is when a command is pending for it or taken (being
        applied by this holder). Returns the ids of the runs parked. A parked
        run is claimed again only by :meth:`claim_woken` or by naming it in
        :meth:`claim_runs`.
        """

    async def deliver_callback(self, row: CallbackRow) -> bool:
        """Store a callback for a parked run without loading it; False if it cannot be.

        Stored (and the run unparked, so that a worker claims it, and workers
        signalled) only if, atomically: the run is active, parked and held by
        nobody; its schedule ``(row.node_id, row.version)`` takes one callback
        (type 1), neither finished nor expired; the node's state is RUNNING
        with that version; a process sleeps at the node; and no callback of
        that schedule is stored unconsumed. Otherwise nothing is written.
        """

    async def renew_leases(self, root_ids: Sequence[str]) -> list[str]:
        """Extend the leases of ``root_ids``; returns the ids still held by this owner."""

    async def release_runs(self, root_ids: Sequence[str]) -> None:
        """Give runs back so another worker can take them at once."""

    async def submit_command(self, root_id: str, op: str, args_json: str) -> str:
        """Queue an operation for the owner of ``root_id``; returns the command id."""

    async def pending_commands(self, root_ids: Sequence[str]) -> list[CommandRow]:
        """Take the pending commands of those of ``root_ids`` this owner holds, oldest first."""

    async def complete_command(self, command_id: str, ok: bool, message: str) -> None: ...

    async def get_command(self, command_id: str) -> CommandRow | None: ...

    async def cancel_command(self, command_id: str) -> bool:
        """Withdraw a pending command; False when its owner has already taken it."""

    async def wait_for_signal(self, at_most: float) -> None:
        """Return when another process signalled new work, or after ``at_most`` seconds."""

    async def get_run_holder(self, root_id: str) -> RunHolder | None:
        """Who holds the run now, and whether it is parked; None for an unknown run."""


@runtime_checkable
class EventLog(Protocol):
    """Committed events, readable by every process of the database.

    The rows are written by :meth:`Journal.commit` (``WriteBatch.events``).
    """

    @property
    def events_seen(self) -> int:
        """Grows whenever this store committed events, or heard that another process did."""

    async def read_events(
        self, after: int, root_id: str | None = None, limit: int = 500
    ) -> list[EventRow]:
        """Events with an id above ``after`` (of ``root_id`` only, if given), in id order."""

    async def last_event_id(self) -> int:
        """The highest event id committed so far (0 when there is none)."""

    async def purge_events(self, before: float) -> int:
        """Delete the events committed before ``before`` (POSIX seconds); returns how many."""

    async def wait_for_events(self, seen: int, at_most: float) -> None:
        """Return once :attr:`events_seen` exceeds ``seen``, or after ``at_most`` seconds."""


@runtime_checkable
class Retention(Protocol):
    """Listing root pipeline runs, and deleting those that ended long enough ago."""

    async def list_runs(
        self,
        *,
        state: str | None = None,
        created_after: float | None = None,
        created_before: float | None = None,
        before_key: tuple[float, str] | None = None,
        limit: int = 100,
    ) -> list[RunSummary]:
        """Runs newest first, by ``(created_time, root_id)`` descending.

        ``state`` keeps the runs whose root node is in that state;
        ``created_after`` (inclusive) and ``created_before`` (exclusive) bound
        ``created_time``; ``before_key`` keeps the runs whose
        ``(created_time, root_id)`` sorts before it, so that a caller pages on
        from the last row it saw and runs created meanwhile never shift a page.
        """

    async def purge_runs(self, finished_before: float, limit: int) -> list[str]:
        """Delete up to ``limit`` ended runs, in one short transaction; their root ids.

        A run qualifies when its status is finished or revoked and its root
        node was archived (or, without a root state, the run created) before
        ``finished_before``. Everything of it goes: the run, its nodes, states,
        execution and node data, context, processes, schedules, callbacks,
        histories, timers, events and commands. An active run (running,
        waiting or parked) is never touched.
        """


@runtime_checkable
class Runtime(Journal, ReadModel, Coordination, EventLog, Retention, Protocol):
    """Everything the engine and the API need from storage: the five roles together."""


@runtime_checkable
class Lifecycle(Protocol):
    """Opening and closing a store; the engine calls these around its scheduler."""

    async def open(self) -> None:
        """Connect, create or migrate the schema, and start accepting commits."""

    async def aclose(self) -> None:
        """Write every commit accepted so far, then release connections, locks and tasks."""

    def statistics(self) -> dict[str, Any]:
        """Figures for introspection (pool sizes, ...); may be empty."""


@runtime_checkable
class Store(Runtime, Lifecycle, Protocol):
    """What an :class:`~aiobamboo.host.Engine` is handed: a runtime with its lifecycle."""
