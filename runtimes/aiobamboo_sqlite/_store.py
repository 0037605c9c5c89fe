"""Storage on one sqlite3 connection, on a thread of its own, with group commit.

The group committer (:mod:`aiobamboo.storage`) hands over every batch queued
meanwhile; they are written in one transaction, and only a batch that creates
a run gets a savepoint of its own, so one refused batch does not sink the
others. The whole transaction runs as one call on the connection's thread,
so a group of node steps costs one thread hop and one commit.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import IO, Any, Literal, TypeAlias

from aiobamboo.exceptions import InvalidOperationError, StorageError
from aiobamboo.runtime import (
    CallbackRow,
    CommandRow,
    ContextRow,
    EventRow,
    ExecutionDataRow,
    HistoryRow,
    NamedQueryReads,
    NodeDataRow,
    ProcessRow,
    RunRow,
    RunSnapshot,
    RunSummary,
    ScheduleRow,
    StateRow,
    TimerRow,
    WriteBatch,
    load_sql_blocks,
)
from aiobamboo.storage import (
    BatchOutcome,
    Broadcast,
    GroupCommitter,
    GroupDone,
    Merged,
    ids_json,
    merge,
    read_package_text,
)

from ._checkpoint import WRITER_PAGES, Checkpointer
from ._file import lock_database, open_error
from ._migrate import migrate
from ._thread import SQLiteThread, _fetchall

Synchronous: TypeAlias = Literal["OFF", "NORMAL", "FULL", "EXTRA"]

Q = load_sql_blocks(read_package_text(__package__, "sql/queries.sql"))

_JSON_ROWS = re.compile(
    r"SELECT (json_extract\(value, '\$\[\d+\]'\)(?:, )?)+\s+FROM json_each\(\?\) WHERE true"
)


def _one_row_form(sql: str) -> str:
    """The statement for ``executemany``: one row of ``?`` instead of a JSON array of rows."""
    columns = sql.count("json_extract(")
    return _JSON_ROWS.sub("VALUES (" + ", ".join("?" * columns) + ")", sql)


Q.update(
    {f"{name}_rows": _one_row_form(sql) for name, sql in list(Q.items()) if "json_each" in sql}
)

#: Most callbacks one delivery transaction carries.
DELIVERY_BATCH = 500

#: (owner, lease_until) written into new runs: the creating worker holds them.
Owner = tuple[str | None, float | None]


def _process_row(row: Sequence[Any]) -> ProcessRow:
    return ProcessRow(
        id=row[0],
        root_id=row[1],
        parent_id=row[2],
        current_node_id=row[3],
        destination_id=row[4],
        stack=tuple(json.loads(row[5])),
        status=row[6],
        suspended_by=row[7],
        children=tuple(json.loads(row[8])),
        acks=tuple(json.loads(row[9])),
    )


def _insert_run(conn: sqlite3.Connection, batch: WriteBatch, owner: Owner) -> None:
    """Insert one new run; InvalidOperationError saying what of it is taken."""
    (tree,), (run,), nodes = _new_run_rows(conn, [batch], owner)
    conn.execute(Q["insert_tree"], tree)
    try:
        # The run's id is its key: a taken one is refused here (the caller's
        # savepoint takes the tree back), without a lookup of every new id first.
        conn.execute(Q["insert_run"], run)
    except sqlite3.IntegrityError as exc:
        if exc.sqlite_errorcode != sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
            raise
        raise InvalidOperationError(f"pipeline {batch.root_id} already exists") from None
    try:
        conn.executemany(Q["insert_node"], nodes)
    except sqlite3.IntegrityError:
        raise InvalidOperationError(
            f"pipeline {batch.root_id} reuses node ids of another pipeline"
        ) from None


def _insert_runs(
    conn: sqlite3.Connection,
    batches: list[WriteBatch],
    owner: Owner,
    results: list[BaseException | None],
) -> None:
    """Insert the group's new runs; a refused one's error goes into ``results``.

    Several new runs (a busy moment: many pipelines started at once) go in
    together, three statements for all of them. Only if that is refused
    (an id taken) are they inserted again one by one, each in a savepoint
    of its own, so that the refused one is told apart and the others go in.
    """
    new = [i for i, batch in enumerate(batches) if batch.new_run is not None]
    if len(new) > 1:
        conn.execute("SAVEPOINT new_runs")
        try:
            _insert_together(conn, [batches[i] for i in new], owner)
        except sqlite3.IntegrityError:
            conn.execute("ROLLBACK TO new_runs")
        else:
            conn.execute("RELEASE new_runs")
            return
        conn.execute("RELEASE new_runs")
    for i in new:
        conn.execute("SAVEPOINT new_run")
        try:
            _insert_run(conn, batches[i], owner)
        except InvalidOperationError as exc:
            conn.execute("ROLLBACK TO new_run")
            results[i] = exc
        conn.execute("RELEASE new_run")


def _insert_together(conn: sqlite3.Connection, batches: list[WriteBatch], owner: Owner) -> None:
    """Insert the runs of ``batches``, their trees and node ids; IntegrityError if any is taken."""
    trees, runs, nodes = _new_run_rows(conn, batches, owner)
    conn.executemany(Q["insert_tree"], trees)
    conn.executemany(Q["insert_run"], runs)
    conn.executemany(Q["insert_node"], nodes)


def _new_run_rows(
    conn: sqlite3.Connection, batches: list[WriteBatch], owner: Owner
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], list[tuple[str, str]]]:
    """The rows of the new runs of ``batches``: trees, runs and node ids."""
    # In the write transaction, the tree ids after the highest are free: each
    # run names its tree's without a statement of its own.
    (last,) = conn.execute(Q["last_tree_id"]).fetchone()
    trees: list[tuple[Any, ...]] = []
    runs: list[tuple[Any, ...]] = []
    nodes: list[tuple[str, str]] = []
    for tree_id, batch in enumerate(batches, start=last + 1):
        run = batch.new_run
        assert run is not None
        trees.append((tree_id, run.tree_json, run.options_json))
        runs.append((run.root_id, tree_id, run.status, run.created_time, *owner))
        nodes.extend((node_id, run.root_id) for node_id in batch.new_nodes)
    return trees, runs, nodes


#: From this many rows on, a table's rows travel as one JSON parameter, when
#: written on the connection's thread.
BULK_ROWS = 16

#: How long a statement waits for another connection's write lock.
BUSY_TIMEOUT_MS = 5000

#: A group of at most this many rows is written on the event loop's thread when
#: the connection's thread is idle. A thread hop costs more than a small commit
#: (SQLite's writes to the log do not wait for the disk), and on the loop's
#: thread nobody else wants the GIL, so rows are bound one by one, which costs
#: SQLite half the work of expanding them from JSON. The largest such group
#: (some 250 pipelines started in one pass of the loop) holds the loop for
#: about 10 ms on a 2-core machine; larger groups go to the thread.
WRITE_HERE_ROWS = 2000

#: A group of at most this many rows is written on the event loop's thread when
#: nothing else waits to run there either (every run waits for this commit, as
#: when pipelines started together reach their steps together). The thread
#: would let other work go on meanwhile, but there is none: it would only add
#: its hop, rows sent as JSON (twice SQLite's work) and waits for the GIL to a
#: commit that everyone waits for. Bounded still, for what the loop cannot see
#: waiting (sockets, timers): some 40 ms of a 2-core machine.
WRITE_HERE_IDLE_ROWS = 4 * WRITE_HERE_ROWS


def _rows(batches: list[WriteBatch]) -> int:
    """About how many rows a group writes; stops counting past ``WRITE_HERE_IDLE_ROWS``."""
    rows = 0
    for b in batches:
        rows += (
            len(b.states) + len(b.execution_data) + len(b.node_data) + len(b.context)
            + len(b.processes) + len(b.schedules) + len(b.callbacks) + len(b.histories)
            + len(b.timers) + len(b.events) + len(b.new_nodes)
        )  # fmt: skip
        if b.new_run is not None:
            rows += 1 + len(b.new_run.tree_json) // 4096
        if rows > WRITE_HERE_IDLE_ROWS:
            break
    return rows


def _loop_has_work() -> bool:
    """Whether callbacks wait to run on the event loop now (True when that cannot be told).

    asyncio's loop keeps them in ``_ready``, not a public interface; a loop
    without it (uvloop) counts as busy.
    """
    ready = getattr(asyncio.get_running_loop(), "_ready", None)
    return ready is None or len(ready) > 0


def _bulk(
    conn: sqlite3.Connection, query: str, rows: list[tuple[Any, ...]], bulk_rows: float
) -> None:
    """Write ``rows``: fewer than ``bulk_rows`` with ``executemany``, more as one JSON parameter.

    ``executemany`` binds each row while holding the GIL and releases it for
    each step; on the connection's thread, with the event loop busy, every row
    then waits for the GIL. One JSON text expanded by ``json_each`` takes the
    GIL once per table instead, which pays off for the large groups of busy
    moments there, but costs SQLite twice the work of plain rows: on the
    loop's own thread (``bulk_rows`` infinite) rows always go one by one.
    """
    if len(rows) >= bulk_rows:
        conn.execute(Q[query], (json.dumps(rows, separators=(",", ":")),))
    else:
        conn.executemany(_ONE_ROW[query], rows)


# Booleans go in as the integers SQLite stores for them: sqlite3 binds an int
# at once, a bool only after a search for adapters that costs more than the
# rest of the row (True and False are not exactly ints to it).


def _state_tuple(s: StateRow) -> tuple[Any, ...]:
    return (
        s.node_id, s.root_id, s.parent_id, s.name, s.state, s.version, s.loop, s.inner_loop,
        s.retry, 1 if s.skip else 0, 1 if s.error_ignored else 0, s.created_time,
        s.started_time, s.archived_time,
    )  # fmt: skip


def _schedule_tuple(s: ScheduleRow) -> tuple[Any, ...]:
    return (
        s.id, s.root_id, s.node_id, s.version, s.type, s.process_id, 1 if s.finished else 0,
        1 if s.expired else 0, s.times,
    )  # fmt: skip


def _callback_tuple(c: CallbackRow, root_id: str | None = None) -> tuple[Any, ...]:
    """The row of callback ``c``, for the run ``root_id`` if given (delivery finds it)."""
    return (
        c.id, c.root_id if root_id is None else root_id, c.node_id, c.version, c.data_json,
        1 if c.consumed else 0, c.created_time,
    )  # fmt: skip


def _history_tuple(h: HistoryRow) -> tuple[Any, ...]:
    return (
        h.id, h.root_id, h.node_id, h.started_time, h.archived_time, h.loop,
        1 if h.skip else 0, h.retry, h.version, h.inputs_json, h.outputs_json, h.created_time,
    )  # fmt: skip


def _process_tuple(p: ProcessRow) -> tuple[Any, ...]:
    return (
        p.id, p.root_id, p.parent_id, p.current_node_id, p.destination_id, ids_json(p.stack),
        p.status, p.suspended_by, ids_json(p.children), ids_json(p.acks),
    )  # fmt: skip


#: Each table's upsert, and the row's values in the order of its parameters.
_TABLES: tuple[tuple[str, str, Callable[[Any], tuple[Any, ...]]], ...] = (
    ("upsert_state", "states", _state_tuple),
    ("upsert_execution_data", "execution_data", attrgetter(
        "node_id", "root_id", "inputs_json", "outputs_json"
    )),
    ("upsert_node_data", "node_data", attrgetter("node_id", "root_id", "inputs_json")),
    ("upsert_context", "context", attrgetter(
        "pipeline_id", "key", "root_id", "type", "value_json", "custom_type"
    )),
    ("upsert_process", "processes", _process_tuple),
    ("upsert_schedule", "schedules", _schedule_tuple),
    ("upsert_callback", "callbacks", _callback_tuple),
    ("insert_history", "histories", _history_tuple),
    ("upsert_timer", "timers", attrgetter(
        "id", "root_id", "node_id", "version", "kind", "due_time"
    )),
)  # fmt: skip

#: The statement of each upsert for ``executemany``: one row of ``?``.
_ONE_ROW = {query: Q[query + "_rows"] for query in [*(q for q, _, _ in _TABLES), "insert_events"]}


def _write_rows(conn: sqlite3.Connection, batch: Merged, bulk_rows: float) -> None:
    for query, attribute, row_of in _TABLES:
        rows = getattr(batch, attribute)
        if rows:
            values = rows if isinstance(rows, list) else rows.values()
            _bulk(conn, query, list(map(row_of, values)), bulk_rows)
    if batch.events:
        _write_events(conn, batch.events, bulk_rows)


def _write_events(conn: sqlite3.Connection, events: Sequence[EventRow], bulk_rows: float) -> None:
    """A group's events: one row per run, holding that run's events in order.

    A row costs SQLite about what a row per event did, and events_root, whose
    entries fall at random places (a run's id leads them), gets one entry per
    run instead of one per event. The first row's id is found by its own
    insert; each next row's goes on after the events of the one before.
    """
    by_run: dict[str, list[EventRow]] = {}
    for e in events:
        of_run = by_run.get(e.root_id)
        if of_run is None:
            by_run[e.root_id] = [e]
        else:
            of_run.append(e)
    rows = [(root_id, len(of_run), *_items(of_run)) for root_id, of_run in by_run.items()]
    first = conn.execute(Q["insert_first_events"], rows[0]).lastrowid
    if len(rows) > 1:
        assert first is not None  # the id of the row just inserted
        following = []
        first += rows[0][1]
        for row in rows[1:]:
            following.append((first, *row))
            first += row[1]
        _bulk(conn, "insert_events", following, bulk_rows)


_text = json.encoder.encode_basestring


def _items(events: list[EventRow]) -> tuple[str, float]:
    """The JSON array of ``events`` as a row stores them, and the newest one's time.

    Spelled out rather than run through an encoder made for the call: the
    fields are strings and a finite float (``repr`` is the JSON of a float).
    """
    newest = events[0].time
    parts = []
    for e in events:
        parts.append(
            f"[{_text(e.node_id)},{_text(e.kind)},{_text(e.state)},{_text(e.data_json)},{e.time!r}]"
        )
        if e.time > newest:
            newest = e.time
    return "[" + ",".join(parts) + "]", newest


def _read_events(
    conn: sqlite3.Connection, after: int, root_id: str | None, limit: int
) -> list[EventRow]:
    """The events after ``after`` (of ``root_id``, if given), at most ``limit`` of them."""
    if limit == 0:
        return []
    # A row holds one commit's events of a run: ``limit`` rows past the one
    # holding ``after`` itself hold at least ``limit`` events after it.
    rows_limit = limit + 1 if limit > 0 else -1  # negative: no limit, as in SQL
    if root_id is None:
        rows = conn.execute(Q["read_events"], (after, rows_limit))
    else:
        rows = conn.execute(Q["read_events_of_root"], (root_id, root_id, after, rows_limit))
    events: list[EventRow] = []
    for root, count, text, newest, first in rows:
        try:
            items = json.loads(text)
            if type(items) is not list or len(items) != count:
                raise ValueError(f"{count} events expected")
            for offset, (node_id, kind, state, data_json, at) in enumerate(items):
                if first + offset > after:
                    at = newest if at is None else at
                    events.append(
                        EventRow(root, node_id, kind, state, data_json, at, first + offset)
                    )
                    if len(events) == limit:
                        return events
        except (ValueError, TypeError) as exc:
            raise StorageError(f"the events from id {first} cannot be read: {exc}") from None
    return events


class _Committed:
    """The transaction on ``conn``: committed when the block ends, rolled back when
    the block or the commit raises (anything: a cancellation must not leave it open
    either). Begun by the caller, or on entering with ``begin``.

    A class rather than a generator: every group commit goes through it, and a
    ``contextlib.contextmanager`` costs three times as much to enter and leave.
    """

    __slots__ = ("begin", "conn")

    def __init__(self, conn: sqlite3.Connection, begin: bool = False) -> None:
        self.conn = conn
        self.begin = begin

    def __enter__(self) -> None:
        if self.begin:
            self.conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        try:
            if kind is None:
                self.conn.execute("COMMIT")
                return
        except BaseException:
            self._roll_back()
            raise
        self._roll_back()

    def _roll_back(self) -> None:
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")


def _apply_group(
    conn: sqlite3.Connection, batches: list[WriteBatch], owner: Owner
) -> list[BaseException | None]:
    """Write a group of batches in one transaction; returns each batch's refusal or None.

    Only a batch that creates a run can be refused (its id or node ids are
    taken); it gets a savepoint of its own. Every other row of the group is
    merged and written with one statement per table.
    """
    conn.execute("BEGIN IMMEDIATE")
    return _write_group(conn, batches, owner, BULK_ROWS)


def _apply_group_unless_busy(
    conn: sqlite3.Connection, batches: list[WriteBatch], owner: Owner
) -> list[BaseException | None] | None:
    """``_apply_group``, or None at once when another connection holds the write lock.

    Run on the event loop's thread (``SQLiteThread.run_here``, busy timeout
    zero), which must not wait for another process's transaction: that wait
    is the connection thread's to do.
    """
    if not _begin_unless_busy(conn):
        return None
    return _write_group(conn, batches, owner, math.inf)


def _begin_unless_busy(conn: sqlite3.Connection) -> bool:
    """Begin a write transaction, or say False when another connection holds the lock."""
    try:
        conn.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
            return False
        raise
    return True


def _write_group(
    conn: sqlite3.Connection, batches: list[WriteBatch], owner: Owner, bulk_rows: float
) -> list[BaseException | None]:
    """The body of ``_apply_group``, in the transaction it began (``bulk_rows``: see ``_bulk``)."""
    results: list[BaseException | None] = [None] * len(batches)
    with _Committed(conn):
        _insert_runs(conn, batches, owner, results)
        merged = merge(b for b, r in zip(batches, results, strict=True) if r is None)
        # Before the rows: processes a later batch gave an ended run survive.
        if merged.ended:
            ended = [(root_id,) for root_id in sorted(merged.ended)]
            conn.executemany(Q["drop_processes"], ended)
            conn.executemany(Q["drop_timers"], ended)
        _write_rows(conn, merged, bulk_rows)
        if merged.run_status:
            conn.executemany(
                Q["set_run_status"], [(status, r) for r, status in merged.run_status.items()]
            )
    return results


def _load_run(conn: sqlite3.Connection, root_id: str) -> RunSnapshot | None:
    def rows(name: str) -> list[Any]:
        return conn.execute(Q[name], (root_id,)).fetchall()

    conn.execute("BEGIN")
    try:
        run = conn.execute(Q["get_run"], (root_id,)).fetchone()
        if run is None:
            return None
        return RunSnapshot(
            run=RunRow(*run),
            states=[StateRow(*r) for r in rows("states_of_run")],
            execution_data=[ExecutionDataRow(*r) for r in rows("execution_data_by_root")],
            node_data=[NodeDataRow(*r) for r in rows("node_data_by_root")],
            context=[ContextRow(*r) for r in rows("context_by_root")],
            processes=[_process_row(r) for r in rows("processes_by_root")],
            schedules=[ScheduleRow(*r) for r in rows("schedules_by_root")],
            callbacks=[CallbackRow(*r) for r in rows("callbacks_by_root")],
            timers=[TimerRow(*r) for r in rows("timers_by_root")],
        )
    finally:
        conn.execute("COMMIT")


def _load_runs(conn: sqlite3.Connection, root_ids: list[str]) -> dict[str, RunSnapshot]:
    """Every run of ``root_ids`` with one query per table, in one read transaction."""
    ids = json.dumps(root_ids)

    def grouped(name: str, make: Any) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {}
        for row in conn.execute(Q[name], (ids,)):
            out.setdefault(row[0], []).append(make(row[1:]))
        return out

    conn.execute("BEGIN")
    try:
        runs = {r[0]: RunRow(*r[1:]) for r in conn.execute(Q["runs_many"], (ids,))}
        if not runs:
            return {}
        tables = {
            "states": grouped("states_many", lambda r: StateRow(*r)),
            "execution_data": grouped("execution_data_many", lambda r: ExecutionDataRow(*r)),
            "node_data": grouped("node_data_many", lambda r: NodeDataRow(*r)),
            "context": grouped("context_many", lambda r: ContextRow(*r)),
            "processes": grouped("processes_many", _process_row),
            "schedules": grouped("schedules_many", lambda r: ScheduleRow(*r)),
            "callbacks": grouped("callbacks_many", lambda r: CallbackRow(*r)),
            "timers": grouped("timers_many", lambda r: TimerRow(*r)),
        }
    finally:
        conn.execute("COMMIT")
    return {
        root_id: RunSnapshot(run=run, **{k: v.get(root_id, []) for k, v in tables.items()})
        for root_id, run in runs.items()
    }


#: What ``_alone_unless_busy`` returns when another connection holds the write lock.
_BUSY = object()


def _alone_unless_busy(conn: sqlite3.Connection, fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(conn, *args)`` in a write transaction of its own, or ``_BUSY`` at once when
    another connection holds the write lock (on the event loop's thread, which must
    not wait for it)."""
    if not _begin_unless_busy(conn):
        return _BUSY
    with _Committed(conn):
        return fn(conn, *args)


def _claim(conn: sqlite3.Connection, query: str, args: tuple[Any, ...], requeue: bool) -> list[str]:
    """Claim runs and, when the previous holder is gone, requeue the commands it took."""
    claimed = [r[0] for r in conn.execute(Q[query], args).fetchall()]
    if requeue:
        for root_id in claimed:
            conn.execute(Q["requeue_commands"], (root_id,))
    return claimed


#: A callback to deliver, and the run it must be for ('': whichever holds its node).
Delivery = tuple[CallbackRow, str]

#: Per delivery: the root id of its node's run (None: no such node), and whether it was stored.
Delivered = tuple[str | None, bool]

_QueuedDelivery = tuple[CallbackRow, str, "asyncio.Future[Delivered]"]


def _deliver_callbacks(conn: sqlite3.Connection, deliveries: list[Delivery]) -> list[Delivered]:
    """Store each callback its parked run may take now, all in one transaction.

    A handful of statements whatever the number of callbacks: the checks in
    one, the stores in another. Of two callbacks for one schedule, only the
    first is stored, as if each had a transaction of its own (the second's
    check would have seen the first).
    """
    conn.execute("BEGIN IMMEDIATE")
    return _write_deliveries(conn, deliveries, BULK_ROWS)


def _deliver_callbacks_unless_busy(
    conn: sqlite3.Connection, deliveries: list[Delivery]
) -> list[Delivered] | None:
    """``_deliver_callbacks``, or None at once when another connection holds the write lock.

    Run on the event loop's thread (``SQLiteThread.run_here``, busy timeout
    zero), which must not wait for another process's transaction: that wait
    is the connection thread's to do.
    """
    if not _begin_unless_busy(conn):
        return None
    return _write_deliveries(conn, deliveries, math.inf)


def _write_deliveries(
    conn: sqlite3.Connection, deliveries: list[Delivery], bulk_rows: float
) -> list[Delivered]:
    """The body of ``_deliver_callbacks``, in the transaction it began (``bulk_rows``: _bulk)."""
    given = json.dumps([[row.node_id, row.version] for row, _ in deliveries])
    with _Committed(conn):
        (checked,) = conn.execute(Q["deliverable_callbacks"], (given,)).fetchone()
        found: dict[int, tuple[str | None, int]] = {
            i: (root, ok) for i, root, ok in json.loads(checked)
        }
        out: list[Delivered] = []
        rows: list[tuple[Any, ...]] = []
        taken: set[tuple[str, str]] = set()
        for i, (row, root) in enumerate(deliveries):
            r, ok = found[i]
            key = (row.node_id, row.version)
            if r is None or not ok or root not in ("", r) or key in taken:
                out.append((r, False))
                continue
            taken.add(key)
            rows.append(_callback_tuple(row, r))
            out.append((r, True))
        if rows:
            _bulk(conn, "upsert_callback", rows, bulk_rows)
            roots = json.dumps(sorted({r for r, stored in out if stored and r is not None}))
            conn.execute(Q["unpark_runs"], (roots,))
    return out


def _park_runs(conn: sqlite3.Connection, root_ids: list[str], owner: str) -> list[str]:
    """Park every run it may, in one transaction (one commit for the lot)."""
    with _Committed(conn, begin=True):
        return [
            root_id
            for root_id in root_ids
            if conn.execute(Q["park_run"], (root_id, owner, root_id)).fetchone()
        ]


def _release_runs(conn: sqlite3.Connection, root_ids: list[str], owner: str) -> None:
    """Give runs back for any worker to claim, in one transaction."""
    with _Committed(conn, begin=True):
        conn.executemany(Q["release_run"], [(owner, root_id) for root_id in root_ids])


def _purge_events(conn: sqlite3.Connection, before: float) -> int:
    total = 0
    while True:
        with _Committed(conn, begin=True):
            conn.execute(Q["remember_event_high"])
            counts = conn.execute(Q["purge_events"], (before,)).fetchall()
        total += sum(int(count) for (count,) in counts)
        if len(counts) < 1000:
            return total


#: The tables whose rows of a purged run are found by ``root_id``; runs go last.
#: (States and execution data are found through nodes, before nodes go.)
_PURGED_BY_ROOT = (
    "node_data", "context", "processes", "schedules", "callbacks", "histories", "timers",
    "events", "commands", "nodes", "runs",
)  # fmt: skip


def _purge_runs(conn: sqlite3.Connection, before: float, limit: int) -> list[str]:
    """Delete up to ``limit`` ended runs and all their rows, in one short transaction."""
    with _Committed(conn, begin=True):
        ids = [r[0] for r in conn.execute(Q["purgeable_runs"], (before, before, limit))]
        if ids:
            conn.execute(Q["remember_event_high"])
            param = (json.dumps(ids),)
            conn.execute(Q["purge_states"], param)
            conn.execute(Q["purge_execution_data"], param)
            conn.execute(Q["purge_trees"], param)
            for table in _PURGED_BY_ROOT:
                # The table names are the constants above, never a caller's value.
                conn.execute(
                    f"DELETE FROM {table} WHERE root_id IN (SELECT value FROM json_each(?))",
                    param,
                )
    return ids


def _finish_checkpoint(conn: sqlite3.Connection, done: Callable[[], None]) -> None:
    """Copy the end of the log that the checkpointer cannot reach; the next commit restarts it."""
    try:
        conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
    except sqlite3.ProgrammingError:
        # Handed over while the runtime closed the connection: closing has
        # checkpointed the log itself, and there is nobody to warn.
        pass
    finally:
        done()


#: The page size of a new database file. A node step changes a few hundred
#: bytes in each of some ten pages (rows and index entries at random places),
#: and a commit writes each page it changed to the log whole: with pages of
#: 2 KB instead of SQLite's 4 KB it writes some 40 % fewer bytes (a 1,000-step
#: chain: 24 MB of log instead of 40 MB) for about 25 % more pages, and costs
#: less. An existing file keeps the size it was made with.
PAGE_SIZE = 2048


#: The oldest SQLite library the runtime's statements run on (``RETURNING``,
#: ``ALTER TABLE ... DROP COLUMN``): 3.35, of March 2021.
MIN_SQLITE = (3, 35, 0)


def _prepare(conn: sqlite3.Connection, synchronous: Synchronous) -> None:
    # Before anything is written; ignored by a file that has pages already.
    conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    # Node ids are random, so writes land all over the tables: a page cache
    # large enough for the working set keeps them off the disk.
    conn.execute("PRAGMA cache_size=-16384")
    # No memory map, whatever SQLite was built with: touching a mapped page of
    # a file another process truncated raises SIGBUS and kills the process.
    conn.execute("PRAGMA mmap_size=0")
    migrate(conn)


class SQLiteStore(NamedQueryReads):
    """The SQL side of :class:`~aiobamboo_sqlite.SQLiteRuntime`: one file, one connection."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        worker: bool = True,
        synchronous: Synchronous = "NORMAL",
    ) -> None:
        self.path = os.fspath(path)
        self.worker = worker
        self.synchronous = synchronous
        self.owner_id = f"sqlite-{os.getpid()}-{os.urandom(4).hex()}"
        # One worker per file (the flock), so a lease only matters to clients.
        self.lease_seconds = 3600.0
        self.conn: SQLiteThread | None = None
        self._lock_file: IO[bytes] | None = None
        self.checkpointer: Checkpointer | None = None
        self._committer = GroupCommitter(
            submit_group=self._submit_group,
            write_now=self._write_now,
            what=f"SQLite database {self.path}",
        )
        self._signal = asyncio.Event()
        self._events = Broadcast()
        #: Callbacks waiting for the next delivery transaction, and whether one is due or
        #: being written (the next one goes when it lands).
        self._deliveries: list[_QueuedDelivery] = []
        self._delivering = False

    def __repr__(self) -> str:
        return f"SQLiteStore({self.path!r})"

    @property
    def in_memory(self) -> bool:
        return self.path == ":memory:" or self.path.startswith("file::memory:")

    async def open(self) -> None:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise StorageError(
                f"the SQLite runtime needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; "
                f"this Python's sqlite3 module uses SQLite {sqlite3.sqlite_version}"
            )
        if self.worker and not self.in_memory:
            self._lock_file = lock_database(self.path)
        connection = SQLiteThread(self.path, BUSY_TIMEOUT_MS)
        try:
            await connection.open()
        except Exception as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        self.conn = connection
        try:
            await connection.call(_prepare, self.synchronous)
        except sqlite3.Error as exc:
            # SQLite reads the file lazily: a garbage header shows up here, not at connect.
            raise open_error(self.path, exc) from exc
        if self.worker and not self.in_memory:
            # The worker's commits are the node steps: checkpoints go beside them.
            await connection.execute(f"PRAGMA wal_autocheckpoint={WRITER_PAGES}")
            self.checkpointer = Checkpointer(
                self.path,
                self.synchronous,
                lambda done: connection.post(_finish_checkpoint, done),
            )
            self.checkpointer.start()
        self._committer.start()

    async def aclose(self) -> None:
        try:
            await self._committer.aclose()
            conn, self.conn = self.conn, None
            if conn is not None:
                try:
                    await conn.close()
                except sqlite3.Error as exc:
                    raise StorageError(f"cannot close {self.path}: {exc}") from exc
        finally:
            checkpointer, self.checkpointer = self.checkpointer, None
            if checkpointer is not None:
                # After the writer: its last checkpoint copies the final commits too.
                await asyncio.to_thread(checkpointer.stop)
            # Released even when closing failed: the connection is gone either way,
            # and a held lock would keep every later worker out until this process exits.
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None

    def statistics(self) -> dict[str, Any]:
        return {}

    def _connection(self) -> SQLiteThread:
        if self.conn is None:
            raise StorageError("the runtime is not open")
        return self.conn

    def _new_run_owner(self) -> Owner:
        if not self.worker:
            return (None, None)
        return (self.owner_id, time.time() + self.lease_seconds)

    async def commit(self, batch: WriteBatch) -> None:
        await self._committer.commit(batch)

    def _submit_group(self, batches: list[WriteBatch], done: GroupDone) -> None:
        """Start writing ``batches`` on the connection's thread; ``done`` is told the outcome."""

        def landed(results: list[BatchOutcome] | None, error: BaseException | None) -> None:
            if error is not None or results is None:
                done(None, self._commit_error(error))
                return
            self._written(batches, results)
            done(results, None)

        self._connection().submit(_apply_group, (batches, self._new_run_owner()), landed)

    def _write_now(self, batches: list[WriteBatch]) -> list[BatchOutcome] | None:
        """Write a group here and now, if the connection's thread is idle; else None.

        Here: a group of up to ``WRITE_HERE_ROWS`` rows, or of up to
        ``WRITE_HERE_IDLE_ROWS`` when no other callback waits to run on the loop.
        """
        if self.conn is None:
            return None
        rows = _rows(batches)
        if rows > WRITE_HERE_ROWS and (rows > WRITE_HERE_IDLE_ROWS or _loop_has_work()):
            return None
        try:
            ran, results = self.conn.run_here(
                _apply_group_unless_busy, batches, self._new_run_owner()
            )
        except sqlite3.Error as exc:
            raise self._sqlite_commit_error(exc) from exc
        if not ran or results is None:
            return None
        self._written(batches, results)
        return results

    def _commit_error(self, error: BaseException | None) -> BaseException | None:
        if isinstance(error, sqlite3.Error):
            return self._sqlite_commit_error(error)
        return error

    def _sqlite_commit_error(self, error: sqlite3.Error) -> StorageError:
        failure = StorageError(f"sqlite commit to {self.path} failed: {error}")
        failure.__cause__ = error
        return failure

    def _written(self, batches: list[WriteBatch], results: list[BatchOutcome]) -> None:
        """What follows a group's commit: the checkpointer, and whoever waits for runs or events."""
        if self.checkpointer is not None:
            self.checkpointer.poke()
        # A worker's new runs are its own (leased to it at creation): nothing to
        # claim, and waking its claim loop would only keep the connection's
        # thread busy with claims while the next commits wait for it. A run it
        # gives back signals then (release_runs).
        if not self.worker and any(b.new_run is not None for b in batches):
            self._signal.set()
        if any(b.events for b, r in zip(batches, results, strict=True) if r is None):
            self._events.bump()

    # -- reads -----------------------------------------------------------------
    async def _all(self, name: str, *args: Any) -> list[Any]:
        try:
            return list(await self._connection().execute_fetchall(Q[name], args))
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite query {name} on {self.path} failed: {exc}") from exc

    async def _one(self, name: str, *args: Any) -> Any:
        rows = await self._all(name, *args)
        return rows[0] if rows else None

    async def load_run(self, root_id: str) -> RunSnapshot | None:
        try:
            # One call on the connection's thread, one read transaction: the run as
            # one commit left it, for the price of one hop.
            return await self._connection().call(_load_run, root_id)
        except sqlite3.Error as exc:
            raise StorageError(
                f"sqlite load of run {root_id} from {self.path} failed: {exc}"
            ) from exc

    async def load_runs(self, root_ids: Sequence[str]) -> dict[str, RunSnapshot]:
        if not root_ids:
            return {}
        try:
            return await self._connection().call(_load_runs, list(root_ids))
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite load of {len(root_ids)} runs failed: {exc}") from exc

    # -- ownership and commands ----------------------------------------------------
    async def _write(self, name: str, *args: Any) -> list[Any]:
        """A statement outside the group commit, in a transaction of its own."""
        try:
            # Autocommit: the thread runs one call at a time, so this never lands
            # inside a group commit's transaction.
            return list(await self._connection().execute_fetchall(Q[name], args))
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite statement {name} on {self.path} failed: {exc}") from exc

    async def _call(self, what: str, fn: Any, *args: Any) -> Any:
        try:
            return await self._connection().call(fn, *args)
        except sqlite3.Error as exc:
            raise StorageError(f"sqlite {what} on {self.path} failed: {exc}") from exc

    async def _poll(self, what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """One of the claim loop's polls: on the event loop's thread when the
        connection's thread is idle, else on that thread.

        They come every ``poll_interval`` and mostly find nothing, a statement of
        a few dozen microseconds. On the connection's thread, while the loop is
        busy, each of its steps waits for the GIL (up to the interpreter's switch
        interval, 5 ms), so that a poll held the thread for tens of milliseconds,
        and every group commit made meanwhile went to the thread behind it
        instead of being written on the loop's.
        """
        conn = self.conn
        if conn is not None:
            try:
                ran, result = conn.run_here(_alone_unless_busy, fn, *args)
            except sqlite3.Error as exc:
                raise StorageError(f"sqlite {what} on {self.path} failed: {exc}") from exc
            if ran and result is not _BUSY:
                return result
        return await self._call(what, fn, *args)

    async def claim_runs(self, limit: int, root_ids: Sequence[str] | None = None) -> list[str]:
        lease_until = time.time() + self.lease_seconds
        # The previous holder is gone (this worker holds the file lock): the commands
        # it took and never answered would leave their senders waiting for ever.
        if root_ids is None:
            args: tuple[Any, ...] = (self.owner_id, lease_until, self.owner_id, limit)
            return list(await self._poll("claim_runs", _claim, "claim_runs", args, True))
        claimed: list[str] = []
        for root_id in list(root_ids)[:limit]:
            args = (self.owner_id, lease_until, root_id, self.owner_id)
            claimed.extend(await self._call("claim_run", _claim, "claim_run", args, True))
        return claimed

    async def claim_woken(self, limit: int, now: float) -> list[str]:
        lease_until = time.time() + self.lease_seconds
        args = (self.owner_id, lease_until, now, limit)
        # A parked run's commands were never taken: nothing to requeue.
        return list(await self._poll("claim_woken", _claim, "claim_woken", args, False))

    async def park_runs(self, root_ids: Sequence[str]) -> list[str]:
        if not root_ids:
            return []
        return list(await self._call("park_runs", _park_runs, list(root_ids), self.owner_id))

    async def park_run(self, root_id: str) -> bool:
        """:meth:`park_runs` for one run: whether it was parked."""
        return await self.park_runs([root_id]) == [root_id]

    async def deliver_callback(self, row: CallbackRow) -> bool:
        """Stored only for the run ``row.root_id``; shares a transaction as below."""
        return (await self._queue_delivery(row, row.root_id))[1]

    async def deliver_callback_to_node(self, row: CallbackRow) -> Delivered:
        """:meth:`deliver_callback` with the run found from ``row.node_id`` in the same transaction.

        ``row.root_id`` is ignored. Returns the node's root id (None: no such
        node) and whether the callback was stored. The callbacks sent during
        one pass of the event loop, and those sent while a delivery is being
        written, go out together: many callbacks at once cost one thread hop
        and one commit, not one each.
        """
        return await self._queue_delivery(row, "")

    async def _queue_delivery(self, row: CallbackRow, root: str) -> Delivered:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Delivered] = loop.create_future()
        self._deliveries.append((row, root, future))
        if not self._delivering:
            self._delivering = True
            # At the end of this pass: the callbacks sent during it go together.
            loop.call_soon(self._send_deliveries)
        return await future

    def _send_deliveries(self) -> None:
        """Write the queued deliveries, here if the connection's thread is idle, else there.

        Here, the checks and stores cost the loop some microseconds a callback
        and no thread hop. On the thread, each statement's return waits for
        the GIL, which a busy event loop gives up only every few milliseconds.
        """
        while self._deliveries:
            queued = self._deliveries[:DELIVERY_BATCH]
            del self._deliveries[:DELIVERY_BATCH]
            # A caller gone before its delivery was sent takes its callback back.
            group = [item for item in queued if not item[2].done()]
            if not group:
                continue
            deliveries = [(row, root) for row, root, _ in group]
            try:
                conn = self._connection()
                ran, results = conn.run_here(_deliver_callbacks_unless_busy, deliveries)
                if not ran or results is None:
                    conn.submit(
                        _deliver_callbacks,
                        (deliveries,),
                        functools.partial(self._deliveries_landed, group),
                    )
                    return
            except Exception as exc:
                self._settle_deliveries(group, None, exc)
                continue
            self._settle_deliveries(group, results, None)
        self._delivering = False

    def _deliveries_landed(
        self,
        group: list[_QueuedDelivery],
        results: list[Delivered] | None,
        error: BaseException | None,
    ) -> None:
        self._settle_deliveries(group, results, error)
        self._send_deliveries()

    def _settle_deliveries(
        self,
        group: list[_QueuedDelivery],
        results: list[Delivered] | None,
        error: BaseException | None,
    ) -> None:
        if error is not None or results is None:
            failure = error if isinstance(error, StorageError) else self._storage_error(error)
            for _, _, future in group:
                if not future.done():
                    future.set_exception(failure)
            return
        if any(stored for _, stored in results):
            self._signal.set()  # this process's worker claims them at once
        for (_, _, future), result in zip(group, results, strict=True):
            if not future.done():
                future.set_result(result)

    def _storage_error(self, error: BaseException | None) -> StorageError:
        failure = StorageError(f"sqlite deliver_callback on {self.path} failed: {error}")
        failure.__cause__ = error
        return failure

    async def renew_leases(self, root_ids: Sequence[str]) -> list[str]:
        rows = await self._write("renew_leases", time.time() + self.lease_seconds, self.owner_id)
        held = {r[0] for r in rows}
        return [r for r in root_ids if r in held]

    async def release_runs(self, root_ids: Sequence[str]) -> None:
        if not root_ids:
            return
        await self._call("release_runs", _release_runs, list(root_ids), self.owner_id)
        self._signal.set()  # this process's worker claims them when it has room

    async def submit_command(self, root_id: str, op: str, args_json: str) -> str:
        command_id = "m" + os.urandom(16).hex()
        await self._write("insert_command", command_id, root_id, op, args_json, time.time())
        self._signal.set()
        return command_id

    async def pending_commands(self, root_ids: Sequence[str]) -> list[CommandRow]:
        wanted = set(root_ids)
        taken: list[CommandRow] = []
        # The commands of runs held but still loading stay pending for the next round.
        for (root_id,) in await self._poll(
            "pending_command_runs", _fetchall, Q["pending_command_runs"], (self.owner_id,)
        ):
            if root_id in wanted:
                taken.extend(CommandRow(*r) for r in await self._write("take_commands", root_id))
        return sorted(taken, key=lambda c: c.created_time)

    async def complete_command(self, command_id: str, ok: bool, message: str) -> None:
        await self._write("complete_command", ok, message, command_id)
        self._signal.set()

    async def get_command(self, command_id: str) -> CommandRow | None:
        row = await self._one("get_command", command_id)
        return CommandRow(*row) if row else None

    async def cancel_command(self, command_id: str) -> bool:
        return bool(await self._write("cancel_command", command_id))

    # -- events ------------------------------------------------------------------
    async def read_events(
        self, after: int, root_id: str | None = None, limit: int = 500
    ) -> list[EventRow]:
        return list(await self._call("read_events", _read_events, after, root_id, limit))

    async def purge_events(self, before: float) -> int:
        return int(await self._call("purge_events", _purge_events, before))

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
        after = -math.inf if created_after is None else created_after
        until = math.inf if created_before is None else created_before
        key = (math.inf, "") if before_key is None else before_key
        rows = await self._all("list_runs", after, until, *key, state, state, limit)
        return [RunSummary(*r) for r in rows]

    async def purge_runs(self, finished_before: float, limit: int) -> list[str]:
        return list(await self._call("purge_runs", _purge_runs, finished_before, limit))

    async def wait_for_events(self, seen: int, at_most: float) -> None:
        """Woken by this store's commits; other processes' events are found by polling."""
        await self._events.wait(seen, at_most)

    @property
    def events_seen(self) -> int:
        return self._events.count

    async def wait_for_signal(self, at_most: float) -> None:
        """SQLite has no notifications: other processes are polled; this one signals directly."""
        try:
            await asyncio.wait_for(self._signal.wait(), at_most)
        except TimeoutError:
            return
        self._signal.clear()
