"""Storage on an asyncpg pool, with group commit.

Round trips dominate on Postgres, so concurrent batches are queued by the
group committer (:mod:`aiobamboo.storage`) and each group is written in one
transaction by :func:`~aiobamboo_postgres._write.write_group`.

A group that fails on a connection error (a killed backend, a restart) is
written again on a fresh connection a few times. That is safe when the first
outcome is unknown: writes are upserts, histories are inserted with ON
CONFLICT DO NOTHING, a run that exists with the same tree and created_time
counts as created, and a retry skips the events stored already (those the
first attempt committed before the retry began).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import operator
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Generic, TypeVar

import asyncpg
import attrs

from aiobamboo.exceptions import StorageError
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
    RunSummary,
    ScheduleRow,
    StateRow,
    TimerRow,
    WriteBatch,
    load_sql_blocks,
)
from aiobamboo.storage import Broadcast, GroupCommitter, read_package_text

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
from ._write import Result, Writer, write_group

__all__ = [
    "COMMIT_BACKOFF",
    "PostgresStore",
    "Queries",
    "events_channel_for",
    "events_lock_key",
    "load_queries",
    "write_group",
]

logger = logging.getLogger("aiobamboo.postgres")

T = TypeVar("T")
Request = TypeVar("Request")
Outcome = TypeVar("Outcome")


class Queries(dict[str, str]):
    """The named queries of one schema, and the statements composed from them.

    The composed statements name the schema too, so they are cached here,
    with the queries they were made from, and die with them.
    """

    def __init__(self, queries: dict[str, str]) -> None:
        super().__init__(queries)
        self.composed: dict[tuple[tuple[str, ...], bool], str] = {}


#: Commits with events NOTIFY the events channel at most once in this many
#: seconds. Postgres signals every backend that listens on any channel of the
#: database at each NOTIFY (each worker's own LISTEN connection included),
#: and each wakes to read the notification queue: at a commit per node step,
#: that cost a chain some 25 us a step. A commit within the interval leaves
#: its NOTIFY to the next commit that sends one, or, when none comes in time,
#: to a NOTIFY of its own sent once the interval is over, after the commit:
#: a subscriber of another process hears of every event, at most this much
#: later. Subscribers of this process are woken by the commit itself.
EVENTS_NOTIFY_EVERY = 0.01

#: What a NOTIFY sent on its own may fail with: it is logged, and the
#: subscribers of other processes find the events when they next look.
_NOTIFY_ERRORS: tuple[type[BaseException], ...] = (StorageError, *DRIVER_ERRORS)

#: A NOTIFY of its own waits until no group was written for this long: while
#: groups follow one another, the next one to start sends it.
EVENTS_NOTIFY_IDLE = 0.001


def events_lock_key(schema: str) -> int:
    """The advisory lock that orders the event ids of ``schema`` (signed 64 bits).

    Every process derives the same key from the name, as with the migration lock.
    """
    digest = hashlib.blake2b(f"aiobamboo-events:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def events_channel_for(schema: str) -> str:
    """The NOTIFY channel for committed events of ``schema``, within 63 bytes.

    Its prefix differs from every worker channel's (``aiobamboo.``), so no
    schema's worker channel can be another schema's events channel.
    """
    channel = f"aiobamboo-events.{schema}"
    if len(channel.encode()) <= MAX_IDENTIFIER_BYTES:
        return channel
    digest = hashlib.blake2b(schema.encode(), digest_size=4).hexdigest()
    return cut(channel, MAX_IDENTIFIER_BYTES - len(digest) - 1) + "#" + digest


def load_queries(schema: str) -> Queries:
    """The named queries with every table qualified by the quoted ``schema``.

    Qualifying at load time works on any pool (an adopted one included) and
    costs no ``SET search_path`` round trip; only the identifier, and the
    events lock key computed from it, are formatted in, never a value.
    """
    text = read_package_text(__package__, "sql/queries.sql")
    quoted = quote_ident(schema)
    key = str(events_lock_key(schema))
    return Queries(
        {
            name: sql.replace("{schema}", quoted).replace("{events_lock}", key)
            for name, sql in load_sql_blocks(text).items()
        }
    )


class PostgresStore(NamedQueryReads):
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
        self.events_channel = events_channel_for(schema)
        self.queries: dict[str, str] = load_queries(schema)
        self.pool: Any = None
        self._adopted_pool = pool
        self._signal = asyncio.Event()
        self._events = Broadcast()
        self._listener: Any = None
        # Whether a subscriber waited for events, and whether the listener hears them.
        self._events_wanted = False
        self._listening_events = False
        #: The committer's connection, kept between groups (None: take one from the pool).
        self._writer_conn: Any = None
        #: Callbacks to deliver, those sent at the same time sharing a statement.
        self._deliveries: _Batches[tuple[CallbackRow, str], tuple[str | None, bool]] = _Batches(
            self._deliver_batch, lanes=_DELIVERY_LANES, batch=_DELIVERY_BATCH
        )
        #: Node-root and state lookups, those asked at the same time sharing a statement.
        self._root_lookups = _KeyedReads(super().get_node_root, self._read_node_roots)
        self._state_lookups = _KeyedReads(super().get_state, self._read_states)
        # The one task that opens the LISTEN connection, and whether one may
        # be opened (only while the runtime is open).
        self._listen_task: asyncio.Task[None] | None = None
        self._may_listen = False
        #: Sends the NOTIFY that wakes workers for unparked runs; whether another is due.
        self._waker: asyncio.Task[None] | None = None
        self._wake_wanted = False
        #: The events NOTIFY (see EVENTS_NOTIFY_EVERY): when one was last sent (loop
        #: time), whether committed events wait for one, a group being written,
        #: when the last one ended, and the timer and the task of the NOTIFY
        #: sent on its own.
        self._events_notified_at = -math.inf
        self._events_unnotified = False
        self._writing = False
        self._written_at = -math.inf
        self._events_timer: asyncio.TimerHandle | None = None
        self._events_notifier: asyncio.Task[None] | None = None
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
        lanes = self._deliveries.lanes | self._root_lookups.lanes | self._state_lookups.lanes
        if lanes:  # deliveries under way end first: their callers wait for them
            _, late = await asyncio.wait(lanes, timeout=CLOSE_TIMEOUT)
            for lane in late:
                lane.cancel()
            if late:
                await asyncio.wait(late)
        waker, self._waker = self._waker, None
        if waker is not None and not waker.done():
            waker.cancel()
            await asyncio.wait({waker})
        await self._close_listener()
        await self._committer.aclose()
        await self._close_events_notify()
        writer_conn, self._writer_conn = self._writer_conn, None
        if writer_conn is not None:
            with contextlib.suppress(*DRIVER_ERRORS):
                await self.pool.release(writer_conn)
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
        """:meth:`_write_group_now`, and the NOTIFY of its events, with it or after it."""
        events = any(b.events for b in batches)
        notify = events and self._events_notify_due()
        self._writing = True
        try:
            results = await self._write_group_now(batches, self._writer(notify))
        finally:
            self._writing = False
            self._events_written(notify, events)
        return results

    def _events_notify_due(self) -> bool:
        """Whether the group written now sends the events NOTIFY (then it counts as sent)."""
        now = asyncio.get_running_loop().time()
        if now - self._events_notified_at < EVENTS_NOTIFY_EVERY:
            return False
        self._events_notified_at = now
        return True

    def _events_written(self, notified: bool, events: bool) -> None:
        """After a group: a NOTIFY on its own follows events that went without one.

        Groups are written one after the other, so a group's NOTIFY (sent at
        its commit) follows every earlier group's events. Whether the group
        committed is unknown after a failure: its events count as unnotified.
        """
        if notified:
            self._events_unnotified = False
        elif events:
            self._events_unnotified = True
        self._written_at = asyncio.get_running_loop().time()
        self._arm_events_notify()

    def _arm_events_notify(self) -> None:
        if self._events_unnotified and self._events_timer is None and self._may_listen:
            loop = asyncio.get_running_loop()
            at = max(
                self._written_at + EVENTS_NOTIFY_IDLE,
                self._events_notified_at + EVENTS_NOTIFY_EVERY,
            )
            self._events_timer = loop.call_at(at, self._notify_events_alone)

    def _notify_events_alone(self) -> None:
        self._events_timer = None
        loop = asyncio.get_running_loop()
        if not self._events_unnotified or self._writing:
            return  # the group under way sends it, or comes back here when it ends
        busy = self._events_notifier is not None and not self._events_notifier.done()
        if busy or loop.time() - self._written_at < EVENTS_NOTIFY_IDLE:
            # Another group may follow at once, and send it; or the last one is
            # still being sent.
            self._arm_events_notify()
            return
        self._events_unnotified = False
        self._events_notified_at = loop.time()
        self._events_notifier = loop.create_task(self._send_events_notify())

    async def _send_events_notify(self) -> None:
        try:
            await self._write("notify", self.events_channel, "")
        except _NOTIFY_ERRORS as exc:
            # Subscribers elsewhere find the events when they next look.
            logger.warning("postgres NOTIFY of committed events failed: %s", exc)

    async def _close_events_notify(self) -> None:
        """Cancel the timer, and send the NOTIFY that events still wait for."""
        timer, self._events_timer = self._events_timer, None
        if timer is not None:
            timer.cancel()
        notifier, self._events_notifier = self._events_notifier, None
        if notifier is not None:
            await asyncio.wait({notifier})
        if self._events_unnotified and self.pool is not None:
            self._events_unnotified = False
            await self._send_events_notify()

    async def _write_group_now(self, batches: list[WriteBatch], writer: Writer) -> list[Result]:
        """:func:`write_group` on a pooled connection; on a fresh one after a connection error."""

        async def attempt(conn: Any) -> list[Result]:
            return await write_group(conn, self.queries, batches, writer)

        for delay in (*COMMIT_BACKOFF, None):
            try:
                results = await self._on_writer(attempt)
            except DRIVER_ERRORS as exc:
                if delay is None or not is_transient(exc):
                    raise storage_error("postgres commit failed", exc) from exc
                logger.warning("postgres commit failed (%s: %s); retrying", type(exc).__name__, exc)
                # The attempt may have committed before its answer was lost.
                writer = attrs.evolve(writer, retrying=True)
                await asyncio.sleep(delay)
                continue
            if any(b.events for b, r in zip(batches, results, strict=True) if r is None):
                self._events.bump()
            return results
        raise AssertionError("unreachable")

    async def _on_writer(self, call: Callable[[Any], Awaitable[T]]) -> T:
        """``call(connection)`` on the connection the committer keeps between groups.

        The committer writes one group at a time, so it keeps one pooled
        connection rather than taking one from the pool and giving it back for
        every group (tens of microseconds of Python each). Any failure gives it
        back to the pool, which resets it or, once expired, replaces it.
        """
        conn = self._writer_conn
        if conn is None:
            conn = self._writer_conn = await self.pool.acquire()
        try:
            return await call(conn)
        except BaseException as exc:
            self._writer_conn = None
            if isinstance(exc, DRIVER_ERRORS) and connection_lost(exc):
                await self.pool.expire_connections()
                with contextlib.suppress(asyncpg.InterfaceError):  # closed already
                    conn.terminate()
            await self.pool.release(conn)
            raise

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

    async def get_node_root(self, node_id: str) -> str | None:
        """Concurrent lookups share a statement, as deliveries do (see _KeyedReads)."""
        root: str | None = await self._root_lookups.get(node_id)
        return root

    async def _read_node_roots(self, node_ids: list[str]) -> dict[str, str]:
        sql = self.queries["node_roots"]
        rows = await self._read("node_root", lambda conn: conn.fetch(sql, node_ids))
        return {row[0]: row[1] for row in rows}

    async def get_state(self, node_id: str) -> StateRow | None:
        """Concurrent lookups share a statement (see _KeyedReads)."""
        state: StateRow | None = await self._state_lookups.get(node_id)
        return state

    async def _read_states(self, node_ids: list[str]) -> dict[str, StateRow]:
        sql = self.queries["states_of"]
        rows = await self._read("get_state", lambda conn: conn.fetch(sql, node_ids))
        return {row[0]: StateRow(*row) for row in rows}

    async def load_run(self, root_id: str) -> RunSnapshot | None:
        return (await self.load_runs([root_id])).get(root_id)

    async def load_runs(self, root_ids: Sequence[str]) -> dict[str, RunSnapshot]:
        if not root_ids:
            return {}
        sql, ids = self.queries["load_runs"], list(root_ids)
        return _snapshots(await self._read("load_runs", lambda conn: conn.fetch(sql, ids)))

    # -- ownership and commands ----------------------------------------------------
    def _writer(self, notify_events: bool) -> Writer:
        """This store as the writer of a group; ``notify_events``: its events NOTIFY at commit."""
        return Writer(
            owner=self.owner_id if self.worker else None,
            lease_seconds=self.lease_seconds,
            channel=self.channel,
            events_channel=self.events_channel if notify_events else "",
        )

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

    async def claim_woken(self, limit: int, now: float) -> list[str]:
        rows = await self._write("claim_woken", self.owner_id, self.lease_seconds, now, limit)
        return [r[0] for r in rows]

    async def park_runs(self, root_ids: Sequence[str]) -> list[str]:
        if not root_ids:
            return []
        rows = await self._write("park_runs", list(root_ids), self.owner_id)
        return [r[0] for r in rows]

    async def park_run(self, root_id: str) -> bool:
        """:meth:`park_runs` for one run: whether it was parked."""
        return await self.park_runs([root_id]) == [root_id]

    async def deliver_callback(self, row: CallbackRow) -> bool:
        """Stored only for a run with root id ``row.root_id``; shares a statement as below."""
        return (await self._queue_delivery(row, row.root_id))[1]

    async def deliver_callback_to_node(self, row: CallbackRow) -> tuple[str | None, bool]:
        """:meth:`deliver_callback` with the run found from ``row.node_id`` in the same round trip.

        ``row.root_id`` is ignored. Returns the node's root id (None: no such
        node) and whether the callback was stored. Concurrent deliveries share a
        statement and its commit (a few statements in flight at most), as
        concurrent steps share a group commit: many callbacks at once cost one
        transaction, not one each.
        """
        return await self._queue_delivery(row, "")

    async def _queue_delivery(self, row: CallbackRow, root: str) -> tuple[str | None, bool]:
        """``row`` delivered with the next statement; ``root``: the run it must be for ('': any)."""
        return await self._deliveries.submit((row, root))

    async def _deliver_batch(
        self, rows: list[tuple[CallbackRow, str]]
    ) -> list[tuple[str | None, bool] | Exception]:
        """Each callback's outcome, or the error it alone fails with."""
        callbacks = [
            [r.node_id, r.version, r.id, r.data_json, r.created_time, root] for r, root in rows
        ]
        try:
            found = await self._write("deliver_callbacks", json.dumps(callbacks))
        except (StorageError, ValueError):
            if len(rows) == 1:
                raise
            # One faulty callback (a value Postgres refuses) must not fail the others.
            outcomes: list[tuple[str | None, bool] | Exception] = []
            for row, root in rows:
                try:
                    outcomes.append(await self._deliver_one(row, root))
                except StorageError as exc:
                    outcomes.append(exc)
            return outcomes
        return [(rec["root_id"], self._delivered(rec["stored"])) for rec in found]

    async def _deliver_one(self, row: CallbackRow, root: str) -> tuple[str | None, bool]:
        if root:
            found = await self._write(
                "deliver_callback",
                root,
                row.node_id,
                row.version,
                row.id,
                row.data_json,
                row.created_time,
            )
            return root, self._delivered(bool(found and found[0]["stored"]))
        found = await self._write(
            "deliver_callback_to_node",
            row.node_id,
            row.version,
            row.id,
            row.data_json,
            row.created_time,
        )
        return found[0]["root_id"], self._delivered(bool(found[0]["stored"]))

    def _delivered(self, stored: bool) -> bool:
        if stored:
            self._signal.set()  # this process's own worker, if it is one, at once
            self._wake_workers()
        return stored

    def _wake_workers(self) -> None:
        """NOTIFY the workers that runs were unparked: one NOTIFY for many callbacks.

        PostgreSQL serializes the commits of notifying transactions (a lock held
        through the commit's WAL flush), so a NOTIFY in each delivery would cap
        callbacks at the rate of those commits. One NOTIFY at a time is sent
        instead, each after the deliveries it covers have committed; deliveries
        committed while it is on its way get the next one. Best effort, as every
        signal: a worker that misses it finds the runs on its next poll.
        """
        self._wake_wanted = True
        if self._waker is None or self._waker.done():
            self._waker = asyncio.get_running_loop().create_task(self._send_wakes())

    async def _send_wakes(self) -> None:
        while self._wake_wanted and self.pool is not None:
            self._wake_wanted = False
            try:
                await self._write("notify", self.channel, "run")
            except Exception as exc:
                logger.debug("waking the workers failed (%s); they poll", exc)
                return

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

    # -- events ------------------------------------------------------------------
    async def purge_events(self, before: float) -> int:
        total = 0
        while True:
            # A statement per thousand: each is short, and holds few row locks.
            deleted = int((await self._write("purge_events", before))[0][0])
            total += deleted
            if deleted < 1000:
                return total

    @property
    def events_seen(self) -> int:
        return self._events.count

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
        rows = await self._all("list_runs", after, until, *key, state, limit)
        return [RunSummary(*r) for r in rows]

    async def purge_runs(self, finished_before: float, limit: int) -> list[str]:
        return await self._read("purge_runs", lambda c: self._purge(c, finished_before, limit))

    async def _purge(self, conn: Any, before: float, limit: int) -> list[str]:
        schema = quote_ident(self.schema)
        async with conn.transaction():
            ids = [r[0] for r in await conn.fetch(self.queries["purge_runs"], before, limit)]
            if ids:
                await conn.execute(self.queries["purge_states"], ids)
                for table in _PURGED_BY_ROOT:
                    # The table names are the constants below, never a caller's value.
                    await conn.execute(
                        f"DELETE FROM {schema}.{table} WHERE root_id = ANY($1::text[])", ids
                    )
        return ids

    async def wait_for_events(self, seen: int, at_most: float) -> None:
        """Woken by this store's commits and by other processes' NOTIFY; else after ``at_most``.

        The events channel is listened to from the first wait on: a process
        nobody subscribes in is not sent a notification for every commit.
        """
        self._events_wanted = True
        await self._ensure_listener()
        await self._events.wait(seen, at_most)

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
        to other workers, event subscribers), so one task owned by the store
        opens the connection for all of them: two openings racing would leave
        one connection unowned and unclosed. Callers wait for that task without
        cancelling it when they are cancelled themselves, so a LISTEN half
        done is never kept or dropped unclosed; closing the runtime cancels it.
        """
        while True:
            listener = self._listener
            if listener is not None and not listener.is_closed():
                if self._listening_events or not self._events_wanted:
                    return
            else:
                self._listener = None
            if not self._may_listen:
                return
            task = self._listen_task
            ours = task is None or task.done()
            if ours:
                task = self._listen_task = asyncio.get_running_loop().create_task(self._listen())
            assert task is not None
            await asyncio.wait({task})
            if task.cancelled():  # the runtime is closing
                return
            task.result()
            if ours:  # done as asked, or failed (polling only): not tried again at once
                return
            # Another caller's opening, which may not have listened to the events.

    async def _listen(self) -> None:
        """Open the LISTEN connection, or add the events channel to the open one."""
        conn = self._listener
        fresh = conn is None or conn.is_closed()
        if fresh:
            try:
                conn = await asyncpg.connect(self.dsn)
            except DRIVER_ERRORS as exc:
                # Notifications only make waiting shorter; polling still finds the work.
                logger.warning("cannot LISTEN on %s (%s); polling only", self.channel, exc)
                return
            self._listening_events = False
        try:
            if fresh:
                await conn.add_listener(self.channel, self._on_notify)
            if self._events_wanted and not self._listening_events:
                await conn.add_listener(self.events_channel, self._on_events)
                self._listening_events = True
        except BaseException as exc:  # cancelled by closing included
            self._listener = None
            conn.terminate()
            if not isinstance(exc, DRIVER_ERRORS):
                raise
            logger.warning("cannot LISTEN on %s (%s); polling only", self.channel, exc)
            return
        self._listener = conn

    def _on_notify(self, *_: Any) -> None:
        self._signal.set()

    def _on_events(self, *_: Any) -> None:
        self._events.bump()

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


class _Batches(Generic[Request, Outcome]):
    """Requests made while others are under way, sent together, a few statements at once.

    Each request is queued with a future; up to ``lanes`` tasks each send
    what is queued, ``batch`` requests a statement, until nothing is. A
    statement is sent after every request it carries was made, so each sees
    every commit made before it was asked, as a statement of its own would.
    ``send`` returns each request's outcome (an Exception fails that request
    alone), or raises, failing every request it carried.
    """

    def __init__(
        self,
        send: Callable[[list[Request]], Awaitable[list[Outcome | Exception]]],
        *,
        lanes: int,
        batch: int,
    ) -> None:
        self._send = send
        self._lanes = lanes
        self._batch = batch
        self._queued: list[tuple[Request, asyncio.Future[Outcome]]] = []
        #: The tasks sending statements now.
        self.lanes: set[asyncio.Task[None]] = set()

    @property
    def busy(self) -> bool:
        return bool(self._queued or self.lanes)

    async def submit(self, request: Request, *, elsewhere: int = 0) -> Outcome:
        """The request's outcome; ``elsewhere``: its kind's statements under way outside."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queued.append((request, future))
        self.start_lane(elsewhere)
        return await future

    def start_lane(self, elsewhere: int = 0) -> None:
        if self._queued and elsewhere + len(self.lanes) < self._lanes:
            self.lanes.add(asyncio.get_running_loop().create_task(self._lane()))

    async def _lane(self) -> None:
        try:
            while self._queued:
                queued = self._queued[: self._batch]
                del self._queued[: self._batch]
                # A caller gone before the statement was sent takes its request back.
                batch = [item for item in queued if not item[1].done()]
                if not batch:
                    continue
                try:
                    outcomes = await self._send([request for request, _ in batch])
                except BaseException as exc:
                    _fail_waiters((future for _, future in batch), exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (_, future), outcome in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if isinstance(outcome, Exception):
                        future.set_exception(outcome)
                    else:
                        future.set_result(outcome)
        finally:
            # With no await since the queue was found empty: a caller queueing
            # after this sees the lane gone and starts one.
            self.lanes.discard(asyncio.current_task())


class _KeyedReads:
    """Lookups by key, those asked for while others are under way sent as one statement.

    Many concurrent callers (API calls on runs not held here, each finding
    its node's run or reading a state first) would otherwise each wait for a
    pooled connection and cost a round trip. A lookup asked while no other is
    under way goes out at once, from its caller's task, as a statement of its
    own; the others are queued and go out together (``_Batches``).
    """

    def __init__(
        self,
        fetch_one: Callable[[str], Awaitable[Any]],
        fetch_many: Callable[[list[str]], Awaitable[dict[str, Any]]],
    ) -> None:
        self._fetch_one = fetch_one
        self._fetch = fetch_many
        self._batches: _Batches[str, Any] = _Batches(
            self._send, lanes=_READ_LANES, batch=_READ_BATCH
        )
        self._alone = 0  # lookups under way in their callers' tasks

    @property
    def lanes(self) -> set[asyncio.Task[None]]:
        return self._batches.lanes

    async def get(self, key: str) -> Any:
        """The value found for ``key``, None if none was."""
        if not (self._alone or self._batches.busy):
            self._alone += 1
            try:
                return await self._fetch_one(key)
            finally:
                self._alone -= 1
                self._batches.start_lane(self._alone)
        return await self._batches.submit(key, elsewhere=self._alone)

    async def _send(self, keys: list[str]) -> list[Any]:
        found = await self._fetch(list(dict.fromkeys(keys)))  # each key once
        return [found.get(key) for key in keys]


#: Statements a _KeyedReads has under way at most, and the most lookups one carries.
_READ_LANES = 4
_READ_BATCH = 500


def _fail_waiters(futures: Iterable[asyncio.Future[Any]], exc: BaseException) -> None:
    """Tell the callers still waiting that their statement failed (or was cancelled)."""
    for future in futures:
        if future.done():
            continue
        if isinstance(exc, Exception):
            future.set_exception(exc)
        else:
            future.cancel()


#: Statements delivering callbacks at once (deliver_callback_to_node), and the
#: most callbacks one carries. Small enough that a burst of callbacks goes out
#: as statements side by side, each a fraction as long, rather than as one
#: long statement on one lane while the others idle.
_DELIVERY_LANES = 4
_DELIVERY_BATCH = 50

#: The tables whose rows of a purged run are found by ``root_id`` (runs went first).
_PURGED_BY_ROOT = (
    "execution_data", "node_data", "context", "processes", "schedules", "callbacks",
    "histories", "timers", "events", "commands", "nodes",
)  # fmt: skip


#: Per table of the ``load_runs`` query: the columns its rows fill, in the order
#: of its row class (after the table and the root id: 10 text, 3 int, 2 bool, 3 float).
_T = tuple(range(2, 12))
_I, _B, _F = (12, 13, 14), (15, 16), (17, 18, 19)
_LOAD_COLUMNS: dict[str, tuple[int, ...]] = {
    "runs": (*_T[:4], _F[0]),
    "states": (*_T[:6], *_I, *_B, *_F),
    "execution_data": _T[:4],
    "node_data": _T[:3],
    "context": (*_T[:3], _I[0], *_T[3:5]),
    "processes": _T,
    "schedules": (*_T[:4], _I[0], _T[4], *_B, _I[1]),
    "callbacks": (*_T[:5], _B[0], _F[0]),
    "timers": (*_T[:5], _F[0]),
}
_LOAD_ROWS: dict[str, Callable[[Sequence[Any]], Any]] = {
    "runs": lambda r: RunRow(*r),
    "states": lambda r: StateRow(*r),
    "execution_data": lambda r: ExecutionDataRow(*r),
    "node_data": lambda r: NodeDataRow(*r),
    "context": lambda r: ContextRow(*r),
    "processes": lambda r: _process_row(r),
    "schedules": lambda r: ScheduleRow(*r),
    "callbacks": lambda r: CallbackRow(*r),
    "timers": lambda r: TimerRow(*r),
}
_LOADERS = {
    table: (operator.itemgetter(*columns), _LOAD_ROWS[table])
    for table, columns in _LOAD_COLUMNS.items()
}


def _snapshots(rows: Sequence[Any]) -> dict[str, RunSnapshot]:
    """The rows of ``load_runs`` as one snapshot per run found."""
    tables: dict[str, dict[str, list[Any]]] = {}
    for row in rows:
        table, root_id = row[0], row[1]
        pick, make = _LOADERS[table]
        tables.setdefault(root_id, {}).setdefault(table, []).append(make(pick(row)))
    return {
        root_id: RunSnapshot(
            run=found.pop("runs")[0], **{t: found.get(t, []) for t in _LOAD_ROWS if t != "runs"}
        )
        for root_id, found in tables.items()
        if "runs" in found
    }


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
