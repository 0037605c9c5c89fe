"""The SQLite file itself: checkpoints beside the commits, a SIGKILL, the schema's upgrades.

Run as a script, this module is the child process of the SIGKILL test.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from aiobamboo import api, bench
from aiobamboo.bench import library
from aiobamboo.engine import Settings
from aiobamboo.exceptions import StorageError
from aiobamboo.runtime import EventRow, NamedQueryReads, RunRow, WriteBatch
from aiobamboo_sqlite import SQLiteRuntime, _migrate, _store
from aiobamboo_sqlite._checkpoint import WRITER_PAGES


def _chain(n: int) -> dict[str, Any]:
    """start -> ``n`` activities that return at once -> end."""
    return bench.chain(n)[0]


async def _run(runtime: SQLiteRuntime, tree: dict[str, Any]) -> None:
    started = await api.run_pipeline(runtime, tree)
    assert started.result, started.message
    waited = await api.wait_pipeline(runtime, tree["id"], timeout=60)
    assert waited.data == "FINISHED", waited.message


def _wal_frames(db: Path) -> int:
    wal = Path(f"{db}-wal")
    if not wal.exists():
        return 0
    # A frame: its 24-byte header and one page (the log's header says the page size).
    with wal.open("rb") as log:
        header = log.read(32)
    if len(header) < 32:
        return 0
    return max(0, (wal.stat().st_size - 32) // (24 + int.from_bytes(header[8:12], "big")))


# -- checkpoints -------------------------------------------------------------------


async def test_the_checkpointer_copies_the_log_beside_the_commits(tmp_path: Path) -> None:
    db = tmp_path / "flows.db"
    async with SQLiteRuntime(db, components=library) as runtime:
        checkpointer = runtime.store.checkpointer
        assert checkpointer is not None
        # Long enough for several checkpoints (one at most every 10 ms) beside it.
        await _run(runtime, _chain(400))
        deadline = time.monotonic() + 5
        while True:
            last = checkpointer.last
            if last is not None and last[1] == last[2] and last[0] == 0:
                break  # everything in the log is in the database file
            assert time.monotonic() < deadline, f"log not copied: {last}"
            await anyio.sleep(0.01)
        assert checkpointer.rounds > 1, checkpointer.rounds


async def test_the_writer_seldom_finishes_a_checkpoint(tmp_path: Path) -> None:
    """The checkpoint the writer finishes holds its commits up: once in thousands of frames."""
    db = tmp_path / "flows.db"
    async with SQLiteRuntime(db, components=library) as runtime:
        checkpointer = runtime.store.checkpointer
        assert checkpointer is not None
        await _run(runtime, _chain(300))
        frames = _wal_frames(db)
        assert frames > 2000, frames  # some 4,000: the log was never started over
        assert checkpointer.handed == 0, (checkpointer.handed, frames)


def test_a_checkpoint_handed_over_as_the_runtime_closes_is_dropped_quietly(
    tmp_path: Path,
) -> None:
    """The checkpointer may hand the writer a checkpoint just after closing closed it."""
    conn = sqlite3.connect(tmp_path / "flows.db")
    conn.close()
    handed_back: list[bool] = []
    _store._finish_checkpoint(conn, lambda: handed_back.append(True))
    assert handed_back == [True]


#: The log's largest size allowed: the writer's own threshold, plus what the
#: commits write during one checkpoint beside them (an fsync of a busy disk
#: can take tens of milliseconds). The runs below write some 38,000 frames.
MOST_FRAMES = WRITER_PAGES + 6000


@pytest.mark.parametrize(("chains", "steps"), [(1, 3000), (30, 200)])
async def test_the_log_stays_bounded_under_commits_that_never_pause(
    tmp_path: Path, chains: int, steps: int
) -> None:
    db = tmp_path / "flows.db"
    async with SQLiteRuntime(db, components=library) as runtime:
        async with anyio.create_task_group() as tg:
            for _ in range(chains):
                tg.start_soon(_run, runtime, _chain(steps))
        written = await runtime.store._all("last_event_id")
        assert written[0][0] >= 6000, written
        # The log file never shrinks: its size is the most it ever held.
        assert _wal_frames(db) < MOST_FRAMES, _wal_frames(db)


async def test_closing_copies_the_last_commits_into_the_file(tmp_path: Path) -> None:
    db = tmp_path / "flows.db"
    tree = _chain(3)
    async with SQLiteRuntime(db, components=library) as runtime:
        await _run(runtime, tree)
    assert _wal_frames(db) == 0
    # The file alone holds the run: opened read-only, without its log.
    conn = sqlite3.connect(f"file:{db}?mode=ro&immutable=1", uri=True)
    try:
        row = conn.execute("SELECT state FROM states WHERE node_id = ?", (tree["id"],)).fetchone()
    finally:
        conn.close()
    assert row == ("FINISHED",)


async def test_a_client_runs_no_checkpointer(tmp_path: Path) -> None:
    db = tmp_path / "flows.db"
    async with SQLiteRuntime(db, worker=False) as client:
        assert client.store.checkpointer is None
    async with SQLiteRuntime(":memory:") as memory:
        assert memory.store.checkpointer is None


# -- commits on the event loop's thread ---------------------------------------------


async def _thread_idle(store: Any) -> None:
    """Until no call submitted to the connection's thread is queued or running."""
    with anyio.fail_after(10):
        while True:
            if store.conn.idle:
                return
            await anyio.sleep(0.001)


async def test_small_commits_are_written_on_the_loop_thread_when_the_connection_is_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiobamboo_sqlite import _store

    where: list[str] = []
    apply_group, unless_busy = _store._apply_group, _store._apply_group_unless_busy

    def on_thread(*args: Any) -> Any:
        where.append("thread")
        return apply_group(*args)

    def here(*args: Any) -> Any:
        where.append("here")
        return unless_busy(*args)

    monkeypatch.setattr(_store, "_apply_group", on_thread)
    monkeypatch.setattr(_store, "_apply_group_unless_busy", here)
    async with SQLiteRuntime(tmp_path / "flows.db", components=library) as runtime:
        await _run(runtime, _chain(20))
    # One commit per activity at least; those made while a read was on the
    # connection's thread went there.
    assert where.count("here") >= 15, where


async def test_a_large_group_is_written_on_the_loop_thread_only_while_nothing_else_waits(
    tmp_path: Path,
) -> None:
    """Past WRITE_HERE_ROWS a group goes to the connection's thread, so that the loop
    serves whatever else waits meanwhile; when nothing does, it is written here."""
    async with SQLiteRuntime(tmp_path / "flows.db", components=library) as runtime:
        store = runtime.store

        def group(tag: str, rows: int) -> list[WriteBatch]:
            # Each batch of new events: one row each in the group's estimate.
            return [_events_batch(f"{tag}{i}", 1, 1.0) for i in range(rows)]

        await _thread_idle(store)
        large = _store.WRITE_HERE_ROWS + 50
        assert store._write_now(group("idle", large)) == [None] * large
        asyncio.get_running_loop().call_soon(lambda: None)  # someone waits to run
        assert store._write_now(group("busy", large)) is None
        await _thread_idle(store)
        huge = _store.WRITE_HERE_IDLE_ROWS + 1
        assert store._write_now(group("huge", huge)) is None
        small = _store.WRITE_HERE_ROWS
        asyncio.get_running_loop().call_soon(lambda: None)
        assert store._write_now(group("small", small)) == [None] * small
        roots = {e.root_id[:4] for e in await store.read_events(0, limit=10_000)}
        assert roots == {"idle", "smal"}


async def test_a_write_lock_held_elsewhere_sends_commits_to_the_thread_and_the_loop_runs_on(
    tmp_path: Path,
) -> None:
    db = tmp_path / "flows.db"
    async with SQLiteRuntime(db, components=library) as runtime:
        await _run(runtime, _chain(2))  # the schema exists
        other = sqlite3.connect(db, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")  # as a client process writing would
            tree = _chain(3)
            starting = asyncio.ensure_future(api.run_pipeline(runtime, tree))
            # Its commit waits for the lock on the connection's thread, not on
            # the loop: the loop keeps turning meanwhile.
            with anyio.fail_after(5):
                for _ in range(50):
                    await anyio.sleep(0.002)
            assert not starting.done()
            other.execute("COMMIT")
            started = await starting
            assert started.result, started.message
            waited = await api.wait_pipeline(runtime, tree["id"], timeout=30)
            assert waited.data == "FINISHED", waited.message
        finally:
            other.close()


async def test_the_claim_loops_polls_run_on_the_loop_thread_unless_the_lock_is_held(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll on the connection's thread waits for the GIL at every step while the loop
    is busy, and holds up the group commits behind it: polls go on the loop's thread
    when the connection's is idle, and to that thread when another connection holds
    the write lock, which the loop must not wait for."""
    db = tmp_path / "flows.db"
    settings = Settings(claim_runs=False)  # the test polls, not the claim loop
    async with SQLiteRuntime(db, components=library, settings=settings) as worker:
        store = worker.store
        submitted: list[str] = []
        submit = store.conn.submit

        def recording(fn: Any, args: tuple[Any, ...], report: Any) -> None:
            submitted.append(getattr(fn, "__name__", repr(fn)))
            submit(fn, args, report)

        monkeypatch.setattr(store.conn, "submit", recording)
        async with SQLiteRuntime(db, components=library, worker=False) as client:
            first, second = _chain(1), _chain(1)
            for tree in (first, second):
                started = await api.run_pipeline(client, tree)
                assert started.result, started.message
        await _thread_idle(store)
        submitted.clear()
        assert await store.claim_runs(1) == [first["id"]]
        assert await store.claim_woken(10, time.time()) == []
        assert await store.pending_commands([first["id"]]) == []
        assert submitted == []

        other = sqlite3.connect(db, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            claiming = asyncio.ensure_future(store.claim_runs(1))
            with anyio.fail_after(5):
                for _ in range(20):
                    await anyio.sleep(0.002)  # the loop turns while the claim waits
            assert not claiming.done()
            other.execute("COMMIT")
            assert await claiming == [second["id"]]
        finally:
            other.close()
        assert submitted == ["_claim"]


# -- a SIGKILL ---------------------------------------------------------------------


async def _kill_child(db: str) -> None:
    """Run chains until killed, printing each one's id once it is FINISHED (committed)."""
    async with SQLiteRuntime(db, components=library) as runtime:
        while True:
            tree = _chain(20)
            await _run(runtime, tree)
            print(tree["id"], flush=True)


def test_finished_pipelines_survive_a_sigkill_mid_checkpoint(tmp_path: Path) -> None:
    db = tmp_path / "flows.db"
    finished: list[str] = []
    with subprocess.Popen(
        [sys.executable, __file__, str(db)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            assert child.stdout is not None
            # 30 chains of 20 steps: thousands of frames, so checkpoints were under way.
            while len(finished) < 30:
                line = child.stdout.readline()
                assert line, child.stderr.read() if child.stderr else "child ended"
                finished.append(line.strip())
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.kill()
            child.wait(timeout=30)

    async def check() -> None:
        async with SQLiteRuntime(db, components=library) as runtime:
            for root in finished:
                state = await runtime.store.get_state(root)
                assert state is not None, root
                assert state.state == "FINISHED", (root, state)

    anyio.run(check)
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


# -- upgrades ----------------------------------------------------------------------


def _insert_run_with_its_tree(conn: sqlite3.Connection, batch: WriteBatch, owner: Any) -> None:
    """How runs were inserted while their trees were columns of their own rows."""
    run = batch.new_run
    assert run is not None
    conn.execute(
        "INSERT INTO runs (root_id, tree, options, status, created_time, owner, lease_until)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (run.root_id, run.tree_json, run.options_json, run.status, run.created_time, *owner),
    )
    conn.executemany(_store.Q["insert_node"], [(n, run.root_id) for n in batch.new_nodes])


def _write_events_as_rows(conn: sqlite3.Connection, events: Any, bulk_rows: float) -> None:
    """How events were written while each was a row of its own."""
    conn.executemany(
        "INSERT INTO events (root_id, node_id, kind, state, data, time) VALUES (?, ?, ?, ?, ?, ?)",
        [(e.root_id, e.node_id, e.kind, e.state, e.data_json, e.time) for e in events],
    )


def _events_as_rows(patch: pytest.MonkeyPatch) -> None:
    """Events written and read as while each was a row of its own."""
    patch.setattr(_store, "_write_events", _write_events_as_rows)
    patch.setattr(_store.SQLiteStore, "read_events", NamedQueryReads.read_events)
    columns = "SELECT root_id, node_id, kind, state, data, time, id FROM events"
    patch.setitem(_store.Q, "read_events", f"{columns} WHERE id > ? ORDER BY id LIMIT ?")
    patch.setitem(
        _store.Q,
        "read_events_of_root",
        f"{columns} WHERE root_id = ? AND id > ? ORDER BY id LIMIT ?",
    )
    patch.setitem(_store.Q, "last_event_id", "SELECT coalesce(max(id), 0) FROM events")


def _old_schema(patch: pytest.MonkeyPatch, previous: list[tuple[str, str]]) -> None:
    """Only the migrations ``previous``; events inserted as before events_high, trees in runs."""
    assert all(m[0] < "0008" for m in previous)
    patch.setattr(_migrate, "migrations", lambda: previous)
    _events_as_rows(patch)
    patch.setattr(_store, "_insert_run", _insert_run_with_its_tree)
    patch.setitem(
        _store.Q,
        "get_run",
        "SELECT root_id, tree, options, status, created_time FROM runs WHERE root_id = ?",
    )
    patch.setitem(
        _store.Q,
        "runs_many",
        "SELECT root_id, root_id, tree, options, status, created_time FROM runs"
        " WHERE root_id IN (SELECT value FROM json_each(?))",
    )


def _indexes(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
    finally:
        conn.close()


async def test_a_database_of_the_previous_schema_is_upgraded_with_its_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "flows.db"
    every = _migrate.migrations()
    previous = [m for m in every if m[0] < "0007"]
    assert len(previous) < len(every)
    finished, second = _chain(3), _chain(2)
    with monkeypatch.context() as patch:
        _old_schema(patch, previous)
        async with SQLiteRuntime(db, components=library) as old:
            await _run(old, finished)
            await _run(old, second)
            before_states = await old.store.get_states_by_root(finished["id"])
            before_run = await old.store.load_run(finished["id"])
            before_second = await old.store.load_run(second["id"])
    assert {"states_root", "execution_data_root"} <= _indexes(db)

    async with SQLiteRuntime(db, components=library) as new:
        assert await new.store.get_states_by_root(finished["id"]) == before_states
        assert await new.store.load_run(finished["id"]) == before_run
        loaded = await new.store.load_runs([finished["id"], second["id"]])
        assert loaded[finished["id"]] == before_run
        assert loaded[second["id"]] == before_second
        assert before_second is not None
        assert len(before_second.execution_data) == 3
        # New runs go on in the upgraded file, and ended ones are purged whole.
        another = _chain(2)
        await _run(new, another)
        assert len(await new.store.get_states_by_root(another["id"])) == 5
        purged = await new.store.purge_runs(time.time() + 1, 10)
        assert sorted(purged) == sorted([finished["id"], second["id"], another["id"]])
        assert await new.store.get_states_by_root(finished["id"]) == []
        assert await new.store.get_execution_data(finished["id"]) is None
    indexes = _indexes(db)
    assert not {"states_root", "execution_data_root"} & indexes, indexes
    conn = sqlite3.connect(db)
    try:
        tables = ("states", "execution_data")
        leftovers = [conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in tables]
    finally:
        conn.close()
    assert leftovers == [0, 0]


async def test_a_change_of_a_run_row_leaves_its_tree_as_it_is(tmp_path: Path) -> None:
    """Status changes, claims, lease renewals and parking write the run's row, not its tree."""
    db = tmp_path / "flows.db"
    tree = _chain(300)
    async with SQLiteRuntime(db, components=library) as runtime:
        await _run(runtime, tree)
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the log starts empty
        page = int(conn.execute("PRAGMA page_size").fetchone()[0])
        stored = conn.execute(_store.Q["get_run"], (tree["id"],)).fetchone()
        assert len(stored[1]) > 40 * page, "the tree should span many pages"
        before = _wal_frames(db)
        conn.execute(_store.Q["set_run_status"], ("revoked", tree["id"]))
        written = _wal_frames(db) - before
    finally:
        conn.close()
    assert written <= 3, f"changing a run's status wrote {written} pages"


def test_a_migration_another_process_applied_meanwhile_is_not_applied_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two processes opening a new file at once (``serve --workers 2``) both start."""
    db = tmp_path / "flows.db"
    every = _migrate.migrations()
    mine = sqlite3.connect(db, isolation_level=None)
    other = sqlite3.connect(db, isolation_level=None)

    def listed() -> list[tuple[str, str]]:
        # The other process migrates the file after this one looked at what it lacks.
        monkeypatch.setattr(_migrate, "migrations", lambda: every)
        assert _migrate.migrate(other) == [mid for mid, _ in every]
        return every

    monkeypatch.setattr(_migrate, "migrations", listed)
    try:
        assert _migrate.migrate(mine) == []
        ids = [r[0] for r in mine.execute("SELECT id FROM aiobamboo_migrations ORDER BY id")]
    finally:
        mine.close()
        other.close()
    assert ids == [mid for mid, _ in every]


def _page_size(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("PRAGMA page_size").fetchone()[0])
    finally:
        conn.close()


async def test_an_sqlite_library_too_old_is_refused_with_its_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 31, 1))
    monkeypatch.setattr(sqlite3, "sqlite_version", "3.31.1")
    with pytest.raises(StorageError, match=r"needs SQLite 3\.35\.0 or newer.*3\.31\.1"):
        async with SQLiteRuntime(tmp_path / "flows.db", components=library):
            pass
    assert not (tmp_path / "flows.db").exists()


async def test_a_new_file_gets_small_pages_and_an_existing_one_keeps_its_own(
    tmp_path: Path,
) -> None:
    new, existing = tmp_path / "new.db", tmp_path / "existing.db"
    conn = sqlite3.connect(existing)
    try:
        conn.execute("PRAGMA page_size=4096")
        conn.execute("CREATE TABLE other (x)")
    finally:
        conn.close()
    for db in (new, existing):
        async with SQLiteRuntime(db, components=library) as runtime:
            await _run(runtime, _chain(3))
    assert _page_size(new) == _store.PAGE_SIZE == 2048
    assert _page_size(existing) == 4096
    # The log's frames hold pages of the file's size.
    assert _wal_frames(new) == 0


# -- event ids -----------------------------------------------------------------------


def _events_batch(root_id: str, n: int, at: float, *, new: bool = False) -> WriteBatch:
    batch = WriteBatch(root_id=root_id)
    if new:
        batch.new_run = RunRow(root_id, '{"tree": 1}', "{}", "finished", at)
        batch.new_nodes = (root_id,)
    batch.events.extend(
        EventRow(root_id, root_id, "state", "RUNNING", f'{{"n": {i}}}', at) for i in range(n)
    )
    return batch


def _event_ids(conn: sqlite3.Connection) -> list[int]:
    """The ids of the stored events: each row's first, and as many more as it holds."""
    rows = conn.execute("SELECT id, count FROM events ORDER BY id").fetchall()
    return [i for first, count in rows for i in range(first, first + count)]


@pytest.mark.parametrize("bulk_rows", [math.inf, 1], ids=["row-by-row", "as-json"])
def test_event_ids_are_never_given_again_after_purges(tmp_path: Path, bulk_rows: float) -> None:
    """Subscribers resume from an id: one handed out before a purge never comes back."""
    conn = sqlite3.connect(tmp_path / "flows.db", isolation_level=None)
    try:
        _store._prepare(conn, "NORMAL")

        def write(*batches: WriteBatch) -> None:
            conn.execute("BEGIN IMMEDIATE")
            outcomes = _store._write_group(conn, list(batches), (None, None), bulk_rows)
            assert outcomes == [None] * len(batches)

        write(_events_batch("p1", 3, 10.0, new=True))
        first = _event_ids(conn)
        assert len(first) == 3
        # Every event purged, the newest included.
        assert _store._purge_events(conn, 100.0) == 3
        assert _event_ids(conn) == []
        write(_events_batch("p1", 3, 20.0))
        second = _event_ids(conn)
        assert len(second) == 3
        assert min(second) > max(first), (first, second)
        # Purging the run takes its events, the newest again.
        assert _store._purge_runs(conn, 1e12, 10) == ["p1"]
        assert _event_ids(conn) == []
        write(_events_batch("p2", 2, 30.0, new=True))
        third = _event_ids(conn)
        assert len(third) == 2
        assert min(third) > max(second), (second, third)
        # No gap left: ids go on from the newest row, as before.
        write(_events_batch("p2", 2, 40.0))
        assert _event_ids(conn) == [*third, third[-1] + 1, third[-1] + 2]
    finally:
        conn.close()


def _read_events(
    conn: sqlite3.Connection, after: int, root_id: str | None = None, limit: int = 500
) -> list[EventRow]:
    """What the store's ``read_events`` answers, on ``conn``."""
    return _store._read_events(conn, after, root_id, limit)


@pytest.mark.parametrize("bulk_rows", [math.inf, 1], ids=["row-by-row", "as-json"])
def test_a_commit_keeps_each_runs_events_in_one_row_and_reads_them_one_by_one(
    tmp_path: Path, bulk_rows: float
) -> None:
    """Two runs' commits in one group: a row per run, their events in order, ids unchanged."""
    conn = sqlite3.connect(tmp_path / "flows.db", isolation_level=None)
    try:
        _store._prepare(conn, "NORMAL")
        a1, b = _events_batch("pa", 3, 10.5, new=True), _events_batch("pb", 2, 11.25, new=True)
        a2 = _events_batch("pa", 2, 12.0)
        a2.events[1] = attrs.evolve(
            a2.events[1],
            data_json='{"text":"déjà \\"vu\\"","n":[1,2]}',
            time=1796543042.0312407,  # every digit of a float is kept
        )
        conn.execute("BEGIN IMMEDIATE")
        assert _store._write_group(conn, [a1, b, a2], (None, None), bulk_rows) == [None] * 3

        rows = conn.execute("SELECT root_id, count, time FROM events ORDER BY id").fetchall()
        assert rows == [("pa", 5, 1796543042.0312407), ("pb", 2, 11.25)]
        written = [*a1.events, *a2.events, *b.events]
        read = _read_events(conn, 0)
        assert [e.id for e in read] == list(range(read[0].id, read[0].id + 7))
        assert [attrs.evolve(e, id=0) for e in read] == written
        first = read[0].id
        # From the middle of a row, of one run, and cut in the middle of a row.
        assert _read_events(conn, first + 1) == read[2:]
        assert _read_events(conn, first + 1, "pa") == read[2:5]
        assert _read_events(conn, 0, "pb") == read[5:]
        assert _read_events(conn, first, limit=2) == read[1:3]
        assert _read_events(conn, read[-1].id) == []
        # A purge answers how many events it deleted, not rows.
        assert _store._purge_events(conn, 11.5) == 2
        assert _read_events(conn, 0) == read[:5]
    finally:
        conn.close()


async def test_events_stored_one_per_row_read_the_same_after_the_upgrade(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moving events into a row per commit keeps each one's id, data and exact time."""
    db = tmp_path / "flows.db"
    previous = [m for m in _migrate.migrations() if m[0] < "0011"]
    assert previous[-1][0].startswith("0010")
    tree = _chain(2)
    with monkeypatch.context() as patch:
        patch.setattr(_migrate, "migrations", lambda: previous)
        _events_as_rows(patch)
        async with SQLiteRuntime(db, components=library) as old:
            await _run(old, tree)
            old_events = await old.store.read_events(0, None, 1000)
            old_last = await old.store.last_event_id()
    assert len(old_events) > 4
    assert old_last == old_events[-1].id

    async with SQLiteRuntime(db, components=library) as new:
        assert await new.store.read_events(0, None, 1000) == old_events
        middle = old_events[2].id
        assert await new.store.read_events(middle, tree["id"], 2) == old_events[3:5]
        assert await new.store.last_event_id() == old_last
        another = _chain(1)
        await _run(new, another)
        added = await new.store.read_events(old_last, None, 1000)
        assert added
        assert added[0].id == old_last + 1
        assert {e.root_id for e in added} == {another["id"]}
        assert await new.store.last_event_id() == added[-1].id


async def test_an_upgraded_database_never_gives_an_event_id_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The events table loses AUTOINCREMENT: its counter goes on in events_high."""
    db = tmp_path / "flows.db"
    previous = [m for m in _migrate.migrations() if m[0] < "0008"]
    tree = _chain(2)
    with monkeypatch.context() as patch:
        _old_schema(patch, previous)
        async with SQLiteRuntime(db, components=library) as old:
            await _run(old, tree)
            old_events = await old.store.read_events(0, None, 1000)
    assert old_events
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        # As a purge of that schema leaves it: the newest events gone, the counter kept.
        kept = old_events[: len(old_events) // 2]
        conn.execute("DELETE FROM events WHERE id > ?", (kept[-1].id,))
        assert conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'events'").fetchone()
    finally:
        conn.close()

    async with SQLiteRuntime(db, components=library) as new:
        assert await new.store.read_events(0, None, 1000) == kept
        assert await new.store.read_events(kept[0].id, tree["id"], 1000) == kept[1:]
        another = _chain(1)
        await _run(new, another)
        added = await new.store.read_events(kept[-1].id, None, 1000)
        assert added
        assert min(e.id for e in added) > old_events[-1].id, (old_events, added)
        assert await new.store.last_event_id() == added[-1].id
    conn = sqlite3.connect(db)
    try:
        (sql,) = conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'events'").fetchone()
        assert "AUTOINCREMENT" not in sql.upper()
        assert conn.execute("SELECT count(*) FROM sqlite_sequence").fetchone() == (0,)
        assert {"events_root"} <= _indexes(db)
    finally:
        conn.close()


def _new_run_batch(root_id: str, node_ids: tuple[str, ...]) -> WriteBatch:
    tree = json.dumps({"id": root_id})
    return WriteBatch(
        root_id=root_id,
        new_run=RunRow(root_id, tree, "{}", "active", 1.0),
        new_nodes=(root_id, *node_ids),
    )


def _group(tmp_path: Path, batches: list[WriteBatch]) -> tuple[list[Any], sqlite3.Connection]:
    """Write ``batches`` as one group on a fresh file; each batch's refusal or None."""
    conn = sqlite3.connect(tmp_path / "flows.db", isolation_level=None)
    _store._prepare(conn, "NORMAL")
    conn.execute("BEGIN IMMEDIATE")
    return _store._write_group(conn, batches, ("w", 9.0), math.inf), conn


def _trees(conn: sqlite3.Connection) -> dict[str, str]:
    rows = conn.execute("SELECT r.root_id, t.tree FROM runs r JOIN trees t ON t.id = r.tree_id")
    return {root_id: json.loads(tree)["id"] for root_id, tree in rows}


def test_runs_started_together_go_in_with_one_statement_a_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group's new runs go in together, not with a savepoint and four statements a
    run; each run gets its own tree."""
    one_by_one: list[str] = []
    real = _store._insert_run

    def counted(conn: sqlite3.Connection, batch: WriteBatch, owner: Any) -> None:
        one_by_one.append(batch.root_id)
        real(conn, batch, owner)

    monkeypatch.setattr(_store, "_insert_run", counted)
    batches = [_new_run_batch(f"p{i}", (f"a{i}", f"b{i}")) for i in range(8)]
    results, conn = _group(tmp_path, batches)
    assert results == [None] * 8
    assert one_by_one == []
    assert _trees(conn) == {f"p{i}": f"p{i}" for i in range(8)}
    assert conn.execute("SELECT count(*) FROM nodes").fetchone() == (24,)
    conn.close()


def test_a_refused_run_of_a_group_is_told_apart_and_the_others_go_in(tmp_path: Path) -> None:
    batches = [
        _new_run_batch("p1", ("a1",)),
        _new_run_batch("p1", ("a2",)),  # the id of the first
        _new_run_batch("p3", ("a1",)),  # a node of the first
        _new_run_batch("p4", ("a4",)),
    ]
    results, conn = _group(tmp_path, batches)
    assert results[0] is None
    assert results[3] is None
    assert str(results[1]) == "pipeline p1 already exists"
    assert "reuses node ids" in str(results[2])
    assert _trees(conn) == {"p1": "p1", "p4": "p4"}
    nodes = dict(conn.execute("SELECT node_id, root_id FROM nodes").fetchall())
    assert nodes == {"p1": "p1", "a1": "p1", "p4": "p4", "a4": "p4"}
    assert conn.execute("SELECT count(*) FROM trees").fetchone() == (2,)
    conn.close()


# -- what is bound ---------------------------------------------------------------


async def test_every_value_bound_is_one_sqlite3_takes_without_looking_for_an_adapter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rows of states, processes, schedules, callbacks and histories go in with plain
    ints for their flags and plain text for their statuses, and read back as before.

    sqlite3 binds an exact int, float or str (or None) at once; for a bool or a str
    subclass (an enum member) it searches for an adapter first, which costs more
    than the rest of the row.
    """
    bound: list[tuple[str, Any]] = []
    real_bulk = _store._bulk

    def recording(
        conn: sqlite3.Connection, query: str, rows: list[tuple[Any, ...]], bulk_rows: float
    ) -> None:
        bound.extend((query, value) for row in rows for value in row)
        real_bulk(conn, query, rows, bulk_rows)

    monkeypatch.setattr(_store, "_bulk", recording)
    waiting = bench.waiting_tree("b", 1)
    async with SQLiteRuntime(tmp_path / "bound.db", components=library) as runtime:
        await _run(runtime, bench.seventeen()[0])
        looping = bench.loop(2)[0]  # its second pass keeps the first one's histories
        started = await api.run_pipeline(runtime, looping, cycle_tolerate=True)
        assert started.result, started.message
        waited = await api.wait_pipeline(runtime, looping["id"], timeout=60)
        assert waited.data == "FINISHED", waited.message
        started = await api.run_pipeline(runtime, waiting)
        assert started.result, started.message
        activity, root_id = "ab0000001", waiting["id"]
        with anyio.fail_after(10):
            while True:
                states = await api.get_pipeline_states(runtime, root_id)
                child = (states.data or {}).get(root_id, {}).get("children", {}).get(activity)
                if child and child["state"] == "RUNNING":
                    break
                await anyio.sleep(0.01)
        version = child["version"]
        answered = await api.callback(runtime, activity, version, {"n": 1})
        assert answered.result, answered.message
        waited = await api.wait_pipeline(runtime, root_id, timeout=60)
        assert waited.data == "FINISHED", waited.message
    queries = {query for query, _ in bound}
    written = {"upsert_state", "upsert_process", "upsert_schedule", "upsert_callback"}
    assert written | {"insert_history"} <= queries
    kinds = {(query, type(value).__name__) for query, value in bound}
    adapted = {(q, kind) for q, kind in kinds if kind not in ("str", "int", "float", "NoneType")}
    assert adapted == set()
    # Stored as the integers they always were, and read back as flags.
    conn = sqlite3.connect(tmp_path / "bound.db")
    flags = conn.execute("SELECT DISTINCT typeof(skip), typeof(error_ignored) FROM states")
    assert flags.fetchall() == [("integer", "integer")]
    (finished,) = conn.execute(
        "SELECT finished FROM schedules WHERE node_id = ?", (activity,)
    ).fetchone()
    assert finished == 1
    conn.close()


if __name__ == "__main__":
    anyio.run(_kill_child, sys.argv[1])
