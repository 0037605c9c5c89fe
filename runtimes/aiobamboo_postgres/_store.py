"""Storage on an asyncpg pool, with group commit.

Round trips dominate on Postgres, so concurrent batches are queued and one
committer task writes everything queued in one transaction:

- each batch that creates a run costs one statement (``insert_run``); a
  refused one (duplicate run id, node ids of another run) changes nothing, or
  is undone by one compensating statement;
- the rows of all other accepted batches are merged (last write per key, in
  call order) and upserted by ONE statement (``write_rows``, unnest arrays);
- if that fails with a data error, the group is written again one batch per
  SAVEPOINT, so the faulty batch alone fails and the others commit.

A group that fails on a connection error (a killed backend, a restart) is
written again on a fresh connection a few times. That is safe when the first
outcome is unknown: writes are upserts, histories are inserted with ON
CONFLICT DO NOTHING, and a run that exists with the same tree and
created_time counts as created.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from importlib import resources
from operator import attrgetter
from typing import Any, TypeAlias, TypeVar

import asyncpg
import attrs

from aiobamboo.exceptions import InvalidOperationError, StaleWriteError, StorageError
from aiobamboo.runtime import (
    CallbackRow,
    CommandRow,
    ContextRow,
    ExecutionDataRow,
    NamedQueryReads,
    NodeDataRow,
    ProcessRow,
    RunRow,
    RunSnapshot,
    ScheduleRow,
    StateRow,
    WriteBatch,
    load_sql_blocks,
)
from aiobamboo.storage import BatchOutcome, GroupCommitter, Merged, merge

from ._connect import (
    MAX_IDENTIFIER_BYTES,
    channel_for,
    check_schema,
    close_pool,
    create_pool,
    cut,
    redact,
)
from ._errors import (
    CLOSE_TIMEOUT,
    COMMIT_BACKOFF,
    DRIVER_ERRORS,
    connection_lost,
    is_transient,
    storage_error,
)
from ._migrate import migrate, quote_ident

__all__ = [
    "CLOSE_TIMEOUT",
    "COMMIT_BACKOFF",
    "DRIVER_ERRORS",
    "Merged",
    "Queries",
    "Store",
    "arguments",
    "connection_lost",
    "is_transient",
    "load_queries",
    "merge",
    "parts",
    "storage_error",
    "write_group",
]

logger = logging.getLogger("aiobamboo.postgres")

T = TypeVar("T")


class Queries(dict[str, str]):
    """The named queries of one schema, and the statements composed from them.

    The composed statements name the schema too, so they are cached here,
    with the queries they were made from, and die with them.
    """

    def __init__(self, queries: dict[str, str]) -> None:
        super().__init__(queries)
        self.composed: dict[tuple[tuple[str, ...], bool], str] = {}


def load_queries(schema: str) -> Queries:
    """The named queries with every table qualified by the quoted ``schema``.

    Qualifying at load time works on any pool (an adopted one included) and
    costs no ``SET search_path`` round trip; only the identifier is formatted
    in, never a value.
    """
    text = resources.files(__package__).joinpath("sql/queries.sql").read_text()
    quoted = quote_ident(schema)
    return Queries(
        {name: sql.replace("{schema}", quoted) for name, sql in load_sql_blocks(text).items()}
    )


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


def _process(p: ProcessRow) -> tuple[Any, ...]:
    return (
        p.id, p.root_id, p.parent_id, p.current_node_id, p.destination_id,
        json.dumps(p.stack), p.status, p.suspended_by, json.dumps(p.children), json.dumps(p.acks),
    )  # fmt: skip


def _columns(rows: Iterable[tuple[Any, ...]], width: int) -> list[Sequence[Any]]:
    """Rows to one sequence per column, as ``unnest`` takes them."""
    columns: list[Sequence[Any]] = list(zip(*rows, strict=True))
    return columns or [()] * width


def arguments(merged: Merged) -> list[Sequence[Any]]:
    """The 68 array arguments of ``write_rows``, in its parameter order."""
    return [
        *_columns(map(_STATE, merged.states.values()), 14),
        *_columns(map(_EXECUTION_DATA, merged.execution_data.values()), 4),
        *_columns(map(_NODE_DATA, merged.node_data.values()), 3),
        *_columns(map(_CONTEXT, merged.context.values()), 6),
        *_columns(map(_process, merged.processes.values()), 10),
        *_columns(map(_SCHEDULE, merged.schedules.values()), 9),
        *_columns(map(_CALLBACK, merged.callbacks.values()), 7),
        *_columns(map(_HISTORY, merged.histories), 12),
        list(merged.run_status),
        list(merged.run_status.values()),
        sorted(merged.ended),
    ]


def parts(merged: Merged) -> list[tuple[str, list[Sequence[Any]]]]:
    """The tables a group touches, each with its part's array arguments."""
    out: list[tuple[str, list[Sequence[Any]]]] = []
    tables = (
        ("states", map(_STATE, merged.states.values()), 14),
        ("execution_data", map(_EXECUTION_DATA, merged.execution_data.values()), 4),
        ("node_data", map(_NODE_DATA, merged.node_data.values()), 3),
        ("context", map(_CONTEXT, merged.context.values()), 6),
        ("processes", map(_process, merged.processes.values()), 10),
        ("schedules", map(_SCHEDULE, merged.schedules.values()), 9),
        ("callbacks", map(_CALLBACK, merged.callbacks.values()), 7),
        ("histories", map(_HISTORY, merged.histories), 12),
    )
    for name, rows, width in tables:
        columns = _columns(rows, width)
        if columns[0]:
            out.append((name, columns))
    if merged.run_status:
        out.append(("run_status", [list(merged.run_status), list(merged.run_status.values())]))
    if merged.ended:
        out.append(("drop_processes", [sorted(merged.ended), list(merged.processes)]))
    return out


# -- writing a group -------------------------------------------------------------

Result: TypeAlias = BatchOutcome


@attrs.frozen
class Writer:
    """Who writes: a worker owns the runs it creates and may only write runs it owns."""

    owner: str | None  # None: a client; its new runs wait for a worker to claim them
    lease_seconds: float
    channel: str

    @property
    def fenced(self) -> bool:
        return self.owner is not None


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
        await conn.execute(q["undo_run"], run.root_id)
        return InvalidOperationError(f"pipeline {run.root_id} reuses node ids of another pipeline")
    return None


async def _write_batch_run(
    conn: Any, q: dict[str, str], batch: WriteBatch, writer: Writer
) -> Result:
    if batch.new_run is None:
        return None
    return await _create_run(conn, q, batch.new_run, list(batch.new_nodes), writer)


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


async def _write_merged(conn: Any, q: dict[str, str], batches: Iterable[WriteBatch]) -> None:
    merged = merge(batches)
    if merged:
        await conn.execute(q["write_rows"], *arguments(merged))


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
    conn: Any, q: dict[str, str], batches: list[WriteBatch], writer: Writer
) -> None:
    """Write the merged rows of ``batches`` with one statement; raise _NotHeld if fenced out."""
    touched = parts(merge(batches))
    if not touched:
        return
    args: list[Any] = []
    if writer.fenced:
        args += [sorted({b.root_id for b in batches}), writer.owner]
    for _, columns in touched:
        args.extend(columns)
    sql = _compose(q, tuple(name for name, _ in touched), writer.fenced)
    if not await conn.fetchval(sql, *args):
        raise _NotHeld


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
            await _write_composed(conn, q, batches, writer)
            return results
        async with conn.transaction():
            for i, batch in enumerate(batches):
                results[i] = await _write_batch_run(conn, q, batch, writer)
            accepted = [b for b, r in zip(batches, results, strict=True) if r is None]
            await _write_composed(conn, q, accepted, writer)
            await _signal_new_runs(conn, q, batches, results, writer)
    except _NotHeld:
        return None
    return results


async def _write_fast(
    conn: Any, q: dict[str, str], batches: list[WriteBatch], writer: Writer
) -> list[Result]:
    """One transaction: new runs one by one, then every other row in one statement.

    Creating the runs first is equivalent to applying the batches in order:
    the other batches of a group cannot touch a run that does not exist yet.
    """
    results: list[Result] = [None] * len(batches)
    async with conn.transaction():
        for i, batch in enumerate(batches):
            results[i] = await _write_batch_run(conn, q, batch, writer)
        await _fence(conn, q, batches, results, writer)
        accepted = (b for b, r in zip(batches, results, strict=True) if r is None)
        await _write_merged(conn, q, accepted)
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
                    result = await _write_batch_run(conn, q, batch, writer)
                    if result is None:
                        outcome: list[Result] = [None]
                        await _fence(conn, q, [batch], outcome, writer)
                        result = outcome[0]
                    if result is None:
                        await _write_merged(conn, q, [batch])
            except DRIVER_ERRORS as exc:
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
    except DRIVER_ERRORS as exc:
        if is_transient(exc):
            raise
        logger.warning("group commit of %d batches failed (%s); isolating", len(batches), exc)
    return await _write_one_by_one(conn, q, batches, writer)


class Store(NamedQueryReads):
    """The SQL side of :class:`~aiobamboo_postgres.PostgresRuntime`: one schema, one pool."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "aiobamboo",
        pool: Any = None,
        worker: bool = True,
        min_pool_size: int = 2,
        max_pool_size: int = 10,
        lease_seconds: float = 15.0,
    ) -> None:
        check_schema(schema)
        self.dsn = dsn
        self.schema = schema
        self.worker = worker
        self.min_pool_size = min_pool_size
        self.max_pool_size = max_pool_size
        self.application_name = cut(f"aiobamboo/{schema}", MAX_IDENTIFIER_BYTES)
        self.lease_seconds = lease_seconds
        self.owner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # One channel per schema: installations sharing a database do not wake each other.
        self.channel = channel_for(schema)
        self.queries: dict[str, str] = load_queries(schema)
        self.pool: Any = None
        self._adopted_pool = pool
        self._signal = asyncio.Event()
        self._listener: Any = None
        # The one task that opens the LISTEN connection, and whether one may
        # be opened (only while the runtime is open).
        self._listen_task: asyncio.Task[None] | None = None
        self._may_listen = False
        self._committer = GroupCommitter(
            self._write_group, what=f"PostgreSQL schema {schema!r}", close_timeout=CLOSE_TIMEOUT
        )

    def __repr__(self) -> str:
        return f"PostgresStore({redact(self.dsn)!r}, schema={self.schema!r})"

    @property
    def adopted_pool(self) -> bool:
        """Whether the pool was passed in (and is therefore not closed on exit)."""
        return self._adopted_pool is not None

    async def open(self) -> None:
        self.pool = self._adopted_pool or await create_pool(
            self.dsn,
            min_size=self.min_pool_size,
            max_size=self.max_pool_size,
            application_name=self.application_name,
        )
        try:
            async with self.pool.acquire() as conn:
                await migrate(conn, self.schema)
        except DRIVER_ERRORS as exc:
            raise storage_error(f"cannot migrate schema {self.schema!r}", exc) from exc
        self._may_listen = True
        self._committer.start()

    async def aclose(self) -> None:
        await self._close_listener()
        await self._committer.aclose()
        pool, self.pool = self.pool, None
        if pool is not None and pool is not self._adopted_pool:
            await close_pool(pool)

    def statistics(self) -> dict[str, Any]:
        pool = self.pool
        return {
            "pool_size": pool.get_size() if pool is not None else 0,
            "pool_idle": pool.get_idle_size() if pool is not None else 0,
        }

    async def commit(self, batch: WriteBatch) -> None:
        await self._committer.commit(batch)

    async def _write_group(self, batches: list[WriteBatch]) -> list[Result]:
        """:func:`write_group` on a pooled connection; on a fresh one after a connection error."""
        for delay in (*COMMIT_BACKOFF, None):
            try:
                return await self._on_connection(
                    lambda conn: write_group(conn, self.queries, batches, self.writer)
                )
            except DRIVER_ERRORS as exc:
                if delay is None or not is_transient(exc):
                    raise storage_error("postgres commit failed", exc) from exc
                logger.warning("postgres commit failed (%s: %s); retrying", type(exc).__name__, exc)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _on_connection(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """``call(connection)`` on a pooled connection."""
        async with self.pool.acquire() as conn:
            try:
                return await call(conn)
            except DRIVER_ERRORS as exc:
                if connection_lost(exc):
                    # The pool might hand out this connection or its equally
                    # dead siblings again: replace them all.
                    await self.pool.expire_connections()
                    with contextlib.suppress(asyncpg.InterfaceError):  # closed already
                        conn.terminate()
                raise

    # -- reads -----------------------------------------------------------------
    async def _read(self, what: str, call: Callable[[Any], Awaitable[T]]) -> T:
        """``call(connection)``, once more on a fresh connection after a connection error."""
        if self.pool is None:
            raise StorageError("the runtime is not open")
        for attempt in (1, 2):
            try:
                return await self._on_connection(call)
            except DRIVER_ERRORS as exc:
                if attempt == 2 or not is_transient(exc):
                    raise storage_error(f"postgres query {what} failed", exc) from exc
        raise AssertionError("unreachable")

    async def _all(self, name: str, *args: Any) -> list[Any]:
        sql = self.queries[name]
        return await self._read(name, lambda conn: conn.fetch(sql, *args))

    async def _one(self, name: str, *args: Any) -> Any:
        sql = self.queries[name]
        return await self._read(name, lambda conn: conn.fetchrow(sql, *args))

    async def load_run(self, root_id: str) -> RunSnapshot | None:
        return await self._read("load_run", lambda conn: self._load_run(conn, root_id))

    async def _load_run(self, conn: Any, root_id: str) -> RunSnapshot | None:
        q = self.queries
        # One snapshot for all eight queries, so the run is rebuilt as one
        # commit left it even if another process writes meanwhile.
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            run = await conn.fetchrow(q["get_run"], root_id)
            if run is None:
                return None
            return RunSnapshot(
                run=RunRow(*run),
                states=[StateRow(*r) for r in await conn.fetch(q["states_of_run"], root_id)],
                execution_data=[
                    ExecutionDataRow(*r)
                    for r in await conn.fetch(q["execution_data_by_root"], root_id)
                ],
                node_data=[
                    NodeDataRow(*r) for r in await conn.fetch(q["node_data_by_root"], root_id)
                ],
                context=[ContextRow(*r) for r in await conn.fetch(q["context_by_root"], root_id)],
                processes=[
                    _process_row(r) for r in await conn.fetch(q["processes_by_root"], root_id)
                ],
                schedules=[
                    ScheduleRow(*r) for r in await conn.fetch(q["schedules_by_root"], root_id)
                ],
                callbacks=[
                    CallbackRow(*r) for r in await conn.fetch(q["callbacks_by_root"], root_id)
                ],
            )

    # -- ownership and commands ----------------------------------------------------
    @property
    def writer(self) -> Writer:
        owner = self.owner_id if self.worker else None
        return Writer(owner=owner, lease_seconds=self.lease_seconds, channel=self.channel)

    async def _write(self, name: str, *args: Any) -> list[Any]:
        """A statement outside the group commit (autocommit), retried after a lost connection."""
        sql = self.queries[name]
        return await self._read(name, lambda conn: conn.fetch(sql, *args))

    async def claim_runs(self, limit: int, root_ids: Sequence[str] | None = None) -> list[str]:
        if root_ids is None:
            rows = await self._write("claim_runs", self.owner_id, self.lease_seconds, limit)
        else:
            ids = list(root_ids)[:limit]
            rows = await self._write("claim_given", self.owner_id, self.lease_seconds, ids)
        return [r[0] for r in rows]

    async def renew_leases(self, root_ids: Sequence[str]) -> list[str]:
        held = {r[0] for r in await self._write("renew_leases", self.owner_id, self.lease_seconds)}
        return [r for r in root_ids if r in held]

    async def release_runs(self, root_ids: Sequence[str]) -> None:
        await self._write("release_runs", self.owner_id, list(root_ids), self.channel)

    async def submit_command(self, root_id: str, op: str, args_json: str) -> str:
        command_id = "m" + uuid.uuid4().hex
        await self._write(
            "insert_command", command_id, root_id, op, args_json, time.time(), self.channel
        )
        return command_id

    async def pending_commands(self, root_ids: Sequence[str]) -> list[CommandRow]:
        taken = await self._write("take_commands", self.owner_id, list(root_ids))
        return sorted((CommandRow(*r) for r in taken), key=lambda c: c.created_time)

    async def complete_command(self, command_id: str, ok: bool, message: str) -> None:
        await self._write("complete_command", ok, message, command_id, self.channel)

    async def get_command(self, command_id: str) -> CommandRow | None:
        row = await self._one("get_command", command_id)
        return CommandRow(*row) if row else None

    async def cancel_command(self, command_id: str) -> bool:
        return bool(await self._write("cancel_command", command_id))

    async def wait_for_signal(self, at_most: float) -> None:
        """Wait for a NOTIFY on the schema's channel; the timeout is the polling fallback."""
        await self._ensure_listener()
        try:
            await asyncio.wait_for(self._signal.wait(), at_most)
        except TimeoutError:
            return
        self._signal.clear()

    async def _ensure_listener(self) -> None:
        """Open the LISTEN connection unless it is open (or the runtime is closed).

        Several tasks wait for signals at once (the claim loop, commands sent
        to other workers), so one task owned by the store opens the
        connection for all of them: two openings racing would leave one
        connection unowned and unclosed. Callers wait for that task without
        cancelling it when they are cancelled themselves, so a LISTEN half
        done is never kept or dropped unclosed; closing the runtime cancels it.
        """
        listener = self._listener
        if listener is not None and not listener.is_closed():
            return
        self._listener = None
        if not self._may_listen:
            return
        task = self._listen_task
        if task is None or task.done():
            task = self._listen_task = asyncio.get_running_loop().create_task(self._listen())
        await asyncio.wait({task})
        if not task.cancelled():  # cancelled: the runtime is closing
            task.result()

    async def _listen(self) -> None:
        try:
            conn = await asyncpg.connect(self.dsn)
        except DRIVER_ERRORS as exc:
            # Notifications only make waiting shorter; polling still finds the work.
            logger.warning("cannot LISTEN on %s (%s); polling only", self.channel, exc)
            return
        try:
            await conn.add_listener(self.channel, self._on_notify)
        except BaseException as exc:  # cancelled by closing included
            conn.terminate()
            if not isinstance(exc, DRIVER_ERRORS):
                raise
            logger.warning("cannot LISTEN on %s (%s); polling only", self.channel, exc)
            return
        self._listener = conn

    def _on_notify(self, *_: Any) -> None:
        self._signal.set()

    async def _close_listener(self) -> None:
        self._may_listen = False
        task, self._listen_task = self._listen_task, None
        if task is not None:
            task.cancel()
            # Wait without raising: the task's cancellation is not ours.
            await asyncio.wait({task})
            if not task.cancelled() and task.exception() is not None:
                logger.warning("opening the LISTEN connection failed: %r", task.exception())
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            try:
                await asyncio.wait_for(listener.close(), CLOSE_TIMEOUT)
            except DRIVER_ERRORS:
                listener.terminate()


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
