"""Writing a group of batches to Postgres: the fewest statements and round trips.

- the runs the group creates are inserted by one statement (``insert_runs``);
  only if one of them is refused (duplicate run id, node ids of another run)
  is that undone and each inserted by a statement of its own (``insert_run``),
  a refused one changing nothing or undone by one compensating statement;
- the rows of all other accepted batches are merged (last write per key, in
  call order) and written by ONE statement composed of the parts the group
  needs (``part_*`` queries, the rows of each table as one JSON parameter),
  which also checks the fence;
- if that fails with a data error, the group is written again one batch per
  SAVEPOINT, so the faulty batch alone fails and the others commit.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Collection, Sequence
from operator import attrgetter
from typing import Any, TypeAlias

import attrs

from aiobamboo.exceptions import InvalidOperationError, StaleWriteError
from aiobamboo.runtime import ProcessRow, RunRow, WriteBatch
from aiobamboo.storage import BatchOutcome, Merged, ids_json, merge

from ._errors import DRIVER_ERRORS, is_transient, storage_error

__all__ = ["CLIENT", "Result", "Writer", "parts", "write_group"]

logger = logging.getLogger("aiobamboo.postgres")


# -- turning batches into statement arguments ------------------------------------

_STATE = attrgetter(
    "node_id", "root_id", "parent_id", "name", "state", "version", "loop", "inner_loop",
    "retry", "skip", "error_ignored", "created_time", "started_time", "archived_time",
)  # fmt: skip
_EXECUTION_DATA = attrgetter("node_id", "root_id", "inputs_json", "outputs_json")
_NODE_DATA = attrgetter("node_id", "root_id", "inputs_json")
_CONTEXT = attrgetter("pipeline_id", "key", "root_id", "type", "value_json", "custom_type")
_SCHEDULE = attrgetter(
    "id", "root_id", "node_id", "version", "type", "process_id", "finished", "expired", "times"
)
_CALLBACK = attrgetter(
    "id", "root_id", "node_id", "version", "data_json", "consumed", "created_time"
)
_HISTORY = attrgetter(
    "id", "root_id", "node_id", "started_time", "archived_time", "loop", "skip", "retry",
    "version", "inputs_json", "outputs_json", "created_time",
)  # fmt: skip
_TIMER = attrgetter("id", "root_id", "node_id", "version", "kind", "due_time")
_EVENT = attrgetter("root_id", "node_id", "kind", "state", "data_json", "time")


def _process(p: ProcessRow) -> tuple[Any, ...]:
    return (
        p.id, p.root_id, p.parent_id, p.current_node_id, p.destination_id,
        ids_json(p.stack), p.status, p.suspended_by, ids_json(p.children), ids_json(p.acks),
    )  # fmt: skip


#: JSON for the rows of a part: compact, and refusing NaN and infinities, which
#: PostgreSQL's JSON cannot take (the write fails like any refused value).
_rows_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def parts(
    merged: Merged, events_channel: str = "", retrying: bool = False
) -> list[tuple[str, list[Any]]]:
    """The parts a group needs, each with its arguments (the rows of a table as one JSON text).

    ``events_channel`` is notified at commit when the group has events ('': nobody).
    ``retrying``: the group may be stored already, so its events are inserted
    only where no identical event is.
    """
    out: list[tuple[str, list[Any]]] = []
    tables: tuple[tuple[str, Collection[Any], Callable[[Any], tuple[Any, ...]]], ...] = (
        ("states", merged.states.values(), _STATE),
        ("execution_data", merged.execution_data.values(), _EXECUTION_DATA),
        ("node_data", merged.node_data.values(), _NODE_DATA),
        ("context", merged.context.values(), _CONTEXT),
        ("processes", merged.processes.values(), _process),
        ("schedules", merged.schedules.values(), _SCHEDULE),
        ("callbacks", merged.callbacks.values(), _CALLBACK),
        ("histories", merged.histories, _HISTORY),
        ("timers", merged.timers.values(), _TIMER),
    )
    for name, rows, row in tables:
        if rows:
            out.append((name, [_rows_json(list(map(row, rows)))]))
    if merged.run_status:
        out.append(("run_status", [list(merged.run_status), list(merged.run_status.values())]))
    if merged.ended:
        out.append(("drop_processes", [sorted(merged.ended), list(merged.processes)]))
        out.append(("drop_timers", [sorted(merged.ended), list(merged.timers)]))
    if merged.events:
        name = "events_again" if retrying else "events"
        out.append((name, [events_channel, _rows_json(list(map(_EVENT, merged.events)))]))
    return out


# -- writing a group -------------------------------------------------------------

Result: TypeAlias = BatchOutcome


@attrs.frozen
class Writer:
    """Who writes: a worker owns the runs it creates and may only write runs it owns."""

    owner: str | None  # None: a client; its new runs wait for a worker to claim them
    lease_seconds: float
    channel: str
    #: notified when a group with events commits ('': nobody)
    events_channel: str = ""
    #: an earlier attempt at the same group may have committed (its answer was lost)
    retrying: bool = False

    @property
    def fenced(self) -> bool:
        return self.owner is not None


#: What refuses a batch's values: the server, asyncpg, or the JSON encoder (NaN).
_REFUSED: tuple[type[BaseException], ...] = (*DRIVER_ERRORS, ValueError)

#: A writer that owns nothing and signals nobody (tools, tests).
CLIENT = Writer(owner=None, lease_seconds=0.0, channel="")


async def _create_run(
    conn: Any, q: dict[str, str], run: RunRow, nodes: list[str], writer: Writer
) -> Result:
    """Insert ``run`` and its node ids; the refusal if it cannot be."""
    row = await conn.fetchrow(
        q["insert_run"],
        run.root_id,
        run.tree_json,
        run.options_json,
        run.status,
        run.created_time,
        nodes,
        writer.owner,
        writer.lease_seconds,
    )
    if not row["inserted"]:
        if row["same"]:
            return None  # a retried commit whose first attempt did commit
        return InvalidOperationError(f"pipeline {run.root_id} already exists")
    if row["nodes"] < len(nodes):
        # This statement created the run, so every row with its root id is
        # ours: removing them undoes it without a savepoint round trip.
        await conn.execute(q["undo_runs"], [run.root_id])
        return InvalidOperationError(f"pipeline {run.root_id} reuses node ids of another pipeline")
    return None


async def _create_runs(
    conn: Any, q: dict[str, str], batches: list[WriteBatch], writer: Writer
) -> list[Result]:
    """Insert the runs that ``batches`` create; the refusal of each batch, or None.

    Several go in with one statement. Only if that refuses one of them (its
    id or a node id is taken) is it undone and each run inserted on its own,
    which tells the refused ones apart, in the order of the batches.
    """
    new = [(i, b.new_run, b.new_nodes) for i, b in enumerate(batches) if b.new_run is not None]
    results: list[Result] = [None] * len(batches)
    if len(new) > 1 and await _insert_together(conn, q, new, writer):
        return results
    for i, run, nodes in new:
        results[i] = await _create_run(conn, q, run, list(nodes), writer)
    return results


async def _insert_together(
    conn: Any, q: dict[str, str], new: list[tuple[int, RunRow, Sequence[str]]], writer: Writer
) -> bool:
    """Insert every run of ``new`` with one statement; False if any is refused.

    A refusal leaves nothing of the statement behind.
    """
    node_ids = [node_id for _, _, nodes in new for node_id in nodes]
    row = await conn.fetchrow(
        q["insert_runs"],
        [run.root_id for _, run, _ in new],
        [run.tree_json for _, run, _ in new],
        [run.options_json for _, run, _ in new],
        [run.status for _, run, _ in new],
        [run.created_time for _, run, _ in new],
        node_ids,
        [run.root_id for _, run, nodes in new for _ in nodes],
        writer.owner,
        writer.lease_seconds,
    )
    inserted = row["inserted"]
    if len(inserted) == len(new) and row["nodes"] == len(node_ids):
        return True
    if inserted:
        # This statement created these runs, so every row with their root ids
        # is theirs: removing them undoes it without a savepoint round trip.
        await conn.execute(q["undo_runs"], inserted)
    return False


async def _fence(
    conn: Any, q: dict[str, str], batches: list[WriteBatch], results: list[Result], writer: Writer
) -> None:
    """Refuse the batches of runs this worker no longer owns (its lease was taken over).

    The runs it does own stay locked (FOR SHARE) until the commit, so no
    claimer can take one over between this check and the write.
    """
    if not writer.fenced:
        return
    roots = sorted({b.root_id for b, r in zip(batches, results, strict=True) if r is None})
    if not roots:
        return
    owned = {r[0] for r in await conn.fetch(q["lock_owned"], roots, writer.owner)}
    for i, batch in enumerate(batches):
        if results[i] is None and batch.root_id not in owned:
            results[i] = StaleWriteError(
                f"pipeline {batch.root_id} is no longer held by this worker; write refused"
            )


async def _signal_new_runs(
    conn: Any, q: dict[str, str], batches: list[WriteBatch], results: list[Result], writer: Writer
) -> None:
    """A client's new runs wait for a worker: wake the workers (delivered at commit)."""
    if (
        writer.owner is None
        and writer.channel
        and any(b.new_run is not None and r is None for b, r in zip(batches, results, strict=True))
    ):
        await conn.execute(q["notify"], writer.channel, "run")


class _NotHeld(Exception):
    """The composed write found a run of its group no longer held: nothing was written."""


_PARAM = re.compile(r"\$(\d+)")


def _renumber(sql: str, offset: int) -> str:
    def shifted(match: re.Match[str]) -> str:
        return f"${int(match.group(1)) + offset}"

    return _PARAM.sub(shifted, sql)


def _compose(q: dict[str, str], tables: tuple[str, ...], fenced: bool) -> str:
    """One statement that writes ``tables`` (and checks the fence first, if ``fenced``).

    The fence is all or nothing: every part writes only if every run of the
    group is still held by the writer, locked FOR SHARE until the end of the
    statement's transaction. Statements are cached per shape with the
    queries of ``q`` (a plain dict gets no cache); asyncpg prepares each shape
    once per connection.
    """
    cache: dict[tuple[tuple[str, ...], bool], str] = getattr(q, "composed", {})
    sql = cache.get((tables, fenced))
    if sql is not None:
        return sql
    ctes: list[str] = []
    offset = 0
    if fenced:
        ctes.append(q["fence"])
        offset = 2
    ok_where = "WHERE (SELECT ok FROM fence)" if fenced else ""
    ok_and = "AND (SELECT ok FROM fence)" if fenced else ""
    for table in tables:
        part = q[f"part_{table}"].replace("{ok_where}", ok_where).replace("{ok_and}", ok_and)
        width = len(set(_PARAM.findall(part)))
        part = _renumber(part, offset)
        ctes.append(f"w_{table} AS (\n{part}\n)")
        offset += width
    final = "SELECT ok FROM fence" if fenced else "SELECT true"
    sql = cache[tables, fenced] = "WITH " + ",\n".join(ctes) + "\n" + final
    return sql


async def _write_composed(
    conn: Any, q: dict[str, str], batches: list[WriteBatch], writer: Writer, fenced: bool
) -> None:
    """Write the merged rows of ``batches`` with one statement; raise _NotHeld if fenced out."""
    touched = parts(merge(batches), writer.events_channel, writer.retrying)
    if not touched:
        return
    args: list[Any] = []
    if fenced:
        args += [sorted({b.root_id for b in batches}), writer.owner]
    for _, arguments in touched:
        args.extend(arguments)
    sql = _compose(q, tuple(name for name, _ in touched), fenced)
    if not await conn.fetchval(sql, *args):
        raise _NotHeld


async def _write_merged(
    conn: Any, q: dict[str, str], batches: list[WriteBatch], writer: Writer
) -> None:
    """The composed write without its fence: the caller has locked the runs it holds."""
    await _write_composed(conn, q, batches, writer, fenced=False)


async def _write_common(
    conn: Any, q: dict[str, str], batches: list[WriteBatch], writer: Writer
) -> list[Result] | None:
    """The usual group: one statement, no BEGIN/COMMIT unless runs are created.

    None when a run of the group is no longer held (the caller then writes the
    group batch by batch, refusing only the stale ones).
    """
    results: list[Result] = [None] * len(batches)
    try:
        if all(b.new_run is None for b in batches):
            await _write_composed(conn, q, batches, writer, writer.fenced)
            return results
        async with conn.transaction():
            results = await _create_runs(conn, q, batches, writer)
            accepted = [b for b, r in zip(batches, results, strict=True) if r is None]
            await _write_composed(conn, q, accepted, writer, writer.fenced)
            await _signal_new_runs(conn, q, batches, results, writer)
    except _NotHeld:
        return None
    return results


async def _write_fast(
    conn: Any, q: dict[str, str], batches: list[WriteBatch], writer: Writer
) -> list[Result]:
    """One transaction: the new runs, then every other row in one statement.

    Creating the runs first is equivalent to applying the batches in order:
    the other batches of a group cannot touch a run that does not exist yet.
    """
    async with conn.transaction():
        results = await _create_runs(conn, q, batches, writer)
        await _fence(conn, q, batches, results, writer)
        accepted = [b for b, r in zip(batches, results, strict=True) if r is None]
        await _write_merged(conn, q, accepted, writer)
        await _signal_new_runs(conn, q, batches, results, writer)
    return results


async def _write_one_by_one(
    conn: Any, q: dict[str, str], batches: list[WriteBatch], writer: Writer
) -> list[Result]:
    """One transaction, each batch in its own savepoint: a failing batch fails alone."""
    results: list[Result] = []
    async with conn.transaction():
        for batch in batches:
            try:
                async with conn.transaction():  # nested: a SAVEPOINT
                    outcome = await _create_runs(conn, q, [batch], writer)
                    await _fence(conn, q, [batch], outcome, writer)
                    result = outcome[0]
                    if result is None:
                        await _write_merged(conn, q, [batch], writer)
            except _REFUSED as exc:
                if is_transient(exc):
                    raise
                result = storage_error(f"postgres refused a write of pipeline {batch.root_id}", exc)
            results.append(result)
        await _signal_new_runs(conn, q, batches, results, writer)
    return results


async def write_group(
    conn: Any, q: dict[str, str], batches: list[WriteBatch], writer: Writer | None = None
) -> list[Result]:
    """Store ``batches`` on ``conn``; the outcome of each. Raises on connection errors."""
    writer = writer or CLIENT
    try:
        results = await _write_common(conn, q, batches, writer)
        if results is not None:
            return results
        return await _write_fast(conn, q, batches, writer)
    except _REFUSED as exc:
        if is_transient(exc):
            raise
        logger.warning("group commit of %d batches failed (%s); isolating", len(batches), exc)
    return await _write_one_by_one(conn, q, batches, writer)
