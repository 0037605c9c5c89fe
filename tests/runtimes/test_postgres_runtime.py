"""PostgresRuntime at the storage level: migrations, schemas, pools, group commit, faults.

Every test works in its own schema, dropped at the end. The store tests open
the runtime with ``worker=False`` so the scheduler leaves their hand-made runs
alone.
"""

from __future__ import annotations

import asyncio
import gc
import json
import re
import uuid
import weakref
from collections.abc import AsyncIterator, Callable
from importlib import resources
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import attrs
import pytest

import aiobamboo_postgres._store as pg_store
import aiobamboo_postgres._write as pg_write
from aiobamboo import api
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
from aiobamboo.component import Component, ComponentLibrary, Service
from aiobamboo.engine import Settings
from aiobamboo.exceptions import (
    ConfigurationError,
    InvalidOperationError,
    StaleWriteError,
    StorageError,
)
from aiobamboo.runtime import (
    CallbackRow,
    ContextRow,
    EventRow,
    ExecutionDataRow,
    HistoryRow,
    NodeDataRow,
    ProcessRow,
    RunRow,
    Runtime,
    ScheduleRow,
    StateRow,
    TimerRow,
    WriteBatch,
    load_sql_blocks,
)
from aiobamboo.storage import Merged, merge
from aiobamboo_postgres import PostgresRuntime, PostgresStore
from aiobamboo_postgres._migrate import migrate, migrations, quote_ident
from conftest import PG_DSN, require_postgres

pytestmark = pytest.mark.postgres


async def _active_runs(runtime: Any) -> list[str]:
    """Root ids of the active runs (a query the engine itself does not need)."""
    return [r[0] for r in await runtime.store._all("active_runs")]


# -- fixtures and helpers --------------------------------------------------------


@pytest.fixture
async def admin() -> AsyncIterator[asyncpg.Connection]:
    """A plain connection for looking at and tampering with the database."""
    await require_postgres()
    conn = await asyncpg.connect(PG_DSN)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def schemas(admin: asyncpg.Connection) -> AsyncIterator[Callable[[], str]]:
    """Makes unique schema names; drops them all at the end."""
    made: list[str] = []

    def new(prefix: str = "t_", digits: str = "0123456789abcdef") -> str:
        """``prefix`` and 12 random hex digits, spelled with ``digits``."""
        made.append(
            prefix + uuid.uuid4().hex[:12].translate(str.maketrans("0123456789abcdef", digits))
        )
        return made[-1]

    yield new
    for name in made:
        await admin.execute(f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE")


@pytest.fixture
def schema(schemas: Callable[[], str]) -> str:
    return schemas()


@pytest.fixture
async def runtime(schema: str) -> AsyncIterator[PostgresRuntime]:
    # pytest-asyncio runs a fixture's setup and teardown in different tasks,
    # and the scheduler's task group must be left in the task that entered it,
    # so one task holds the runtime open for the whole test.
    rt = PostgresRuntime(PG_DSN, schema=schema, worker=False)
    opened, finished = asyncio.Event(), asyncio.Event()

    async def host() -> None:
        async with rt:
            opened.set()
            await finished.wait()

    task = asyncio.create_task(host())
    waiter = asyncio.create_task(opened.wait())
    await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # raises why it could not open
    try:
        yield rt
    finally:
        finished.set()
        await task


async def kill_backends(admin: asyncpg.Connection, application_name: str) -> int:
    """Terminate every connection of the runtime's pool; how many there were."""
    killed = await admin.fetch(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        " AND application_name = $1",
        application_name,
    )
    return len(killed)


async def table(admin: asyncpg.Connection, schema: str, name: str) -> list[tuple[Any, ...]]:
    rows = await admin.fetch(f"SELECT * FROM {quote_ident(schema)}.{name} ORDER BY 1, 2")
    return [tuple(r) for r in rows]


TABLES = (
    "runs",
    "nodes",
    "states",
    "execution_data",
    "node_data",
    "context",
    "processes",
    "schedules",
    "callbacks",
    "histories",
    "timers",
    "events",
)


async def dump(admin: asyncpg.Connection, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    return {name: await table(admin, schema, name) for name in TABLES}


def new_run_batch(root: str, nodes: tuple[str, ...] = (), created: float = 1.0) -> WriteBatch:
    return WriteBatch(
        root_id=root,
        new_run=RunRow(root, json.dumps({"id": root}), "{}", "active", created),
        new_nodes=(root, *nodes),
    )


def state(node: str, root: str, st: str = "RUNNING", t: float = 1.0, **kw: Any) -> StateRow:
    fields: dict[str, Any] = {
        "node_id": node,
        "root_id": root,
        "parent_id": root,
        "name": f"node {node}",
        "state": st,
        "version": "v1",
        "loop": 1,
        "inner_loop": 1,
        "retry": 0,
        "skip": False,
        "error_ignored": False,
        "created_time": t,
        "started_time": t,
        "archived_time": None,
    }
    fields.update(kw)
    return StateRow(**fields)


def process(pid: str, root: str, at: str) -> ProcessRow:
    return ProcessRow(
        id=pid,
        root_id=root,
        parent_id=None,
        current_node_id=at,
        destination_id=None,
        stack=(root,),
        status="running",
        suspended_by=None,
        children=("c1", "c2"),
        acks=(),
    )


def full_batch(root: str) -> WriteBatch:
    """A batch with every kind of row, for node ``a`` of run ``root``."""
    batch = WriteBatch(root_id=root)
    batch.states = {
        "a": state("a", root, started_time=None),
        # A node paused by pause_node_appoint before any process reached it.
        "b": state("b", "", "SUSPENDED", t=2.0, parent_id=root),
    }
    batch.execution_data = {"a": ExecutionDataRow("a", root, '{"x": 1}', '{"y": [1, 2]}')}
    batch.node_data = {"a": NodeDataRow("a", root, '{"x": 2}')}
    batch.context = {(root, "${k}"): ContextRow(root, "${k}", root, 1, '"v"', None)}
    batch.processes = {"p1": process("p1", root, "a")}
    batch.schedules = {"s1": ScheduleRow("s1", root, "a", "v1", 1, "p1", False, False, 0)}
    batch.callbacks = {
        "cb1": CallbackRow("cb1", root, "a", "v1", '{"ok": true}', False, 3.0),
        "cb2": CallbackRow("cb2", root, "a", "v1", '{"ok": false}', True, 4.0),
    }
    batch.histories = [
        HistoryRow("h1", root, "a", 1.0, 2.0, 1, False, 0, "v0", "{}", "{}", 2.0),
        HistoryRow("h2", root, "a", 3.0, 4.0, 2, True, 1, "v1", "{}", "{}", 4.0),
    ]
    return batch


def event(root: str, node: str, st: str, t: float = 1.0, kind: str = "state") -> EventRow:
    return EventRow(root, node, kind, st, json.dumps({"at": t}), t)


def stored(events: list[EventRow]) -> list[tuple[str, str, str]]:
    """What tells the events of these tests apart, ids left out."""
    return [(e.root_id, e.node_id, e.state) for e in events]


def count_groups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the size of every group the committer writes."""
    sizes: list[int] = []
    original = pg_store.write_group

    async def spy(conn: Any, q: dict[str, str], batches: list[WriteBatch], *writer: Any) -> Any:
        sizes.append(len(batches))
        return await original(conn, q, batches, *writer)

    monkeypatch.setattr(pg_store, "write_group", spy)
    return sizes


# -- the SQL file ----------------------------------------------------------------


def test_every_query_the_store_uses_is_in_the_file() -> None:
    text = (resources.files("aiobamboo_postgres") / "sql/queries.sql").read_text()
    names = set(load_sql_blocks(text))
    source = Path(pg_store.__file__).read_text() + Path(pg_write.__file__).read_text()
    used = set(re.findall(r'(?:q|self\.queries)\["(\w+)"\]', source))
    used |= set(re.findall(r'self\._(?:all|one)\("(\w+)"', source))
    assert used
    assert used <= names


def test_every_part_takes_one_argument_per_parameter() -> None:
    q = pg_store.load_queries("x")
    batch = full_batch("r")
    batch.timers = {"t1": TimerRow("t1", "r", "a", "v1", "poll", 5.0)}
    batch.events = [EventRow("r", "a", "state", "RUNNING", "{}", 1.0)]
    ended = WriteBatch(root_id="q", run_status="finished")
    assert pg_write.parts(Merged()) == []
    for retrying in (False, True):
        touched = pg_write.parts(merge([batch, ended]), "ch", retrying)
        names = [name for name, _ in touched]
        assert ("events_again" if retrying else "events") in names
        assert {"timers", "drop_timers", "drop_processes"} <= set(names)
        for name, arguments in touched:
            params = {int(n) for n in re.findall(r"\$(\d+)", q[f"part_{name}"])}
            assert params == set(range(1, len(arguments) + 1)), name
    assert "{events_lock}" not in "".join(q.values())


def test_queries_qualify_tables_with_the_quoted_schema() -> None:
    q = pg_store.load_queries('we"ird')
    assert 'FROM "we""ird".runs' in q["get_run"]
    assert "{schema}" not in "".join(q.values())


def test_composed_statements_stay_with_the_schema_they_were_composed_for() -> None:
    """Each set of queries composes its own statements, even at a freed one's address.

    Freeing a dict and making the next one here usually reuses the address, so
    a cache keyed by identity would hand schema s1 the statements of s0.
    """
    shape = ("states", "processes")
    for i in range(20):
        q = pg_store.load_queries(f"s{i}")
        for fenced in (False, True):
            sql = pg_write._compose(q, shape, fenced)
            assert set(re.findall(r'"(s\d+)"\.', sql)) == {f"s{i}"}, (i, fenced)
        del q


# -- lifecycle -------------------------------------------------------------------


def _count_statements(store: Any, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the statements ``store`` sends outside its group commits, as it sends them."""
    statements: list[str] = []
    write = store._write

    async def counted(name: str, *args: Any) -> list[Any]:
        statements.append(name)
        return await write(name, *args)

    monkeypatch.setattr(store, "_write", counted)
    return statements


async def test_open_creates_schema_and_migrations_are_idempotent(
    admin: asyncpg.Connection, schema: str
) -> None:
    async with PostgresRuntime(PG_DSN, schema=schema, worker=False) as rt:
        assert rt.pool is not None
        assert rt.scheduler is not None
    async with PostgresRuntime(PG_DSN, schema=schema, worker=False) as rt:
        pass
    assert rt.pool is None
    assert rt.scheduler is None
    applied = await admin.fetch(f"SELECT id FROM {quote_ident(schema)}.aiobamboo_migrations")
    assert [r["id"] for r in applied] == [mid for mid, _ in migrations()]
    async with admin.transaction():
        assert await migrate(admin, schema) == []
    columns = await admin.fetch(
        "SELECT column_name, data_type FROM information_schema.columns"
        " WHERE table_schema = $1 AND table_name = 'runs'",
        schema,
    )
    found = {r["column_name"]: r["data_type"] for r in columns}
    assert found["owner"] == "text"
    assert found["lease_until"] == "double precision"
    assert found["tree"] == "text"


async def test_concurrent_opens_migrate_once(admin: asyncpg.Connection, schema: str) -> None:
    """Four runtimes (think: processes) open a schema that does not exist yet, at once."""
    all_open = asyncio.Barrier(4)

    async def open_and_write(i: int) -> None:
        async with PostgresRuntime(PG_DSN, schema=schema, worker=False, min_pool_size=1) as rt:
            await all_open.wait()
            await rt.store.commit(new_run_batch(f"r{i}"))

    await asyncio.gather(*(open_and_write(i) for i in range(4)))
    applied = await admin.fetchval(
        f"SELECT count(*) FROM {quote_ident(schema)}.aiobamboo_migrations"
    )
    assert applied == len(migrations())
    assert len(await table(admin, schema, "runs")) == 4


async def test_nested_async_with_is_a_no_op(schema: str) -> None:
    rt = PostgresRuntime(PG_DSN, schema=schema, worker=False)
    async with rt:
        pool = rt.pool
        async with rt as inner:
            assert inner is rt
            assert rt.pool is pool
        assert rt.pool is pool
        await rt.store.commit(new_run_batch("r"))
    assert rt.pool is None
    with pytest.raises(StorageError):
        await rt.store.commit(new_run_batch("r2"))
    with pytest.raises(StorageError):
        await rt.store.get_run("r")
    async with rt:  # and it opens again
        assert await rt.store.get_run("r") is not None


async def test_schemas_are_isolated(admin: asyncpg.Connection, schemas: Any) -> None:
    first, odd = schemas(), schemas('t_we"ird name ')
    async with (
        PostgresRuntime(PG_DSN, schema=first, worker=False) as a,
        PostgresRuntime(PG_DSN, schema=odd, worker=False) as b,
    ):
        await a.store.commit(new_run_batch("r"))
        assert await a.store.get_run("r") is not None
        assert await b.store.get_run("r") is None
        await b.store.commit(new_run_batch("r"))  # the same id in another schema
        assert await _active_runs(b) == ["r"]
    assert await admin.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", odd)


async def test_a_runtime_made_after_another_was_freed_writes_only_its_own_schema(
    admin: asyncpg.Connection, schemas: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = schemas(), schemas()
    rt = PostgresRuntime(PG_DSN, schema=first, worker=False)
    async with rt:
        await rt.store.commit(new_run_batch("r", ("a", "b")))
        await rt.store.commit(full_batch("r"))
    before = await dump(admin, first)
    freed, gone = id(rt.store.queries), weakref.ref(rt)
    del rt
    gc.collect()
    assert gone() is None

    # The allocator tends to reuse a freed dict's address; help it by making
    # copies until one sits where the first runtime's queries did (usually
    # within a few hundred), so that a cache keyed by address would be fooled.
    original = pg_store.load_queries

    def at_the_freed_address(schema: str) -> pg_store.Queries:
        made = [original(schema)]
        while id(made[-1]) != freed and len(made) < 20_000:
            made.append(type(made[0])(made[0]))
        return made[-1]

    monkeypatch.setattr(pg_store, "load_queries", at_the_freed_address)
    async with PostgresRuntime(PG_DSN, schema=second, worker=False) as rt2:
        await rt2.store.commit(new_run_batch("r2", ("a2", "b2")))
        await rt2.store.commit(full_batch("r2"))
    assert await dump(admin, first) == before
    after = await dump(admin, second)
    assert [r[0] for r in after["runs"]] == ["r2"]
    assert [r[0] for r in after["states"]] == ["a", "b"]
    assert [r[0] for r in after["processes"]] == ["p1"]


async def test_an_adopted_pool_gets_the_schema_and_stays_open(
    admin: asyncpg.Connection, schema: str
) -> None:
    pool = await asyncpg.create_pool(PG_DSN, min_size=1, max_size=2)
    try:
        async with PostgresRuntime(PG_DSN, schema=schema, pool=pool, worker=False) as rt:
            assert rt.pool is pool
            assert rt.adopted_pool
            await rt.store.commit(new_run_batch("r"))
            assert (await rt.store.get_run("r")) is not None
        assert not pool._closed
        assert await pool.fetchval(f"SELECT count(*) FROM {quote_ident(schema)}.runs") == 1
        # Nothing leaked into the pool's sessions.
        assert await pool.fetchval("SHOW search_path") == '"$user", public'
    finally:
        await pool.close()


def test_repr_hides_the_password_and_bad_schemas_are_refused() -> None:
    rt = PostgresRuntime("postgresql://bob:s3cret@db.example/flows", schema="x")
    assert "s3cret" not in repr(rt)
    assert "bob" in repr(rt)
    for bad in ("", "x" * 64, "ж" * 32, "a\x00b", "\x00", "bad\ud800"):
        with pytest.raises(ConfigurationError, match="schema"):
            PostgresRuntime(PG_DSN, schema=bad)
    assert issubclass(ConfigurationError, ValueError)
    PostgresRuntime(PG_DSN, schema="x" * 63)  # the longest that fits


def test_every_name_derived_from_a_schema_fits_in_an_identifier() -> None:
    """Postgres refuses a NOTIFY channel over 63 bytes; bytes, not characters, count."""
    made = [
        PostgresRuntime(PG_DSN, schema=name)
        for name in (
            "x",
            "x" * 53,
            "x" * 54,
            "x" * 63,
            "ж" * 26,
            "ж" * 27,
            "ж" * 31,
            "a" + "ж" * 31,
        )
    ]
    for rt in made:
        assert 0 < len(rt.channel.encode()) <= 63, rt.schema
        assert 0 < len(rt.store.events_channel.encode()) <= 63, rt.schema
        assert 0 < len(rt.application_name.encode()) <= 63, rt.schema
        rt.channel.encode().decode()  # cut between characters, never inside one
        rt.store.events_channel.encode().decode()
    assert made[1].channel == "aiobamboo." + "x" * 53  # a name that fits is kept whole
    assert made[4].channel == "aiobamboo." + "ж" * 26
    # Names too long to keep whole still get a channel each.
    assert len({rt.channel for rt in made}) == len(made)
    assert len({rt.store.events_channel for rt in made} - {rt.channel for rt in made}) == len(made)
    assert PostgresRuntime(PG_DSN, schema="ж" * 31).channel == made[6].channel


async def test_an_unreachable_server_is_a_storage_error() -> None:
    rt = PostgresRuntime("postgresql://nobody:pw@127.0.0.1:1/none", schema="x")
    with pytest.raises(StorageError, match="cannot connect") as info:
        async with rt:
            pass
    assert isinstance(info.value.__cause__, OSError)
    assert "pw@" not in str(info.value)
    assert rt.pool is None


async def test_server_settings_in_the_dsn_reach_every_connection(schema: str) -> None:
    """The documented way to choose the server's commit durability: a DSN parameter."""
    dsn = PG_DSN + ("&" if "?" in PG_DSN else "?") + "synchronous_commit=off"
    async with PostgresRuntime(dsn, schema=schema, worker=False) as rt:
        await rt.store.commit(new_run_batch("r", ("a",)))
        assert await rt.store.get_run("r") is not None
        async with rt.pool.acquire() as conn:
            assert await conn.fetchval("SHOW synchronous_commit") == "off"
        writer = rt.store._writer_conn  # the committer's own connection
        assert writer is not None
        assert await writer.fetchval("SHOW synchronous_commit") == "off"


# -- writes and reads ------------------------------------------------------------


async def test_commit_and_every_read_roundtrip(runtime: PostgresRuntime) -> None:
    await runtime.store.commit(new_run_batch("r", ("a", "b")))
    await runtime.store.commit(full_batch("r"))

    run = await runtime.store.get_run("r")
    assert run == RunRow("r", '{"id": "r"}', "{}", "active", 1.0)
    assert await _active_runs(runtime) == ["r"]
    assert await runtime.store.get_node_root("b") == "r"
    assert await runtime.store.get_node_root("zz") is None
    assert await runtime.store.get_state("a") == state("a", "r", started_time=None)
    assert await runtime.store.get_state("zz") is None
    assert [s.node_id for s in await runtime.store.get_states_by_root("r")] == ["a"]
    assert [s.node_id for s in await runtime.store.get_states_by_parent("r")] == ["a", "b"]
    assert await runtime.store.get_execution_data("a") == ExecutionDataRow(
        "a", "r", '{"x": 1}', '{"y": [1, 2]}'
    )
    assert await runtime.store.get_node_data("a") == NodeDataRow("a", "r", '{"x": 2}')
    assert await runtime.store.get_node_data("b") is None
    assert [h.id for h in await runtime.store.get_histories("a")] == ["h1", "h2"]
    assert [h.id for h in await runtime.store.get_histories("a", loop=2)] == ["h2"]
    assert (await runtime.store.get_histories("a"))[1] == full_batch("r").histories[1]

    snap = await runtime.store.load_run("r")
    assert snap is not None
    expected = full_batch("r")
    assert snap.run == run
    # load_runs reads states through the nodes table: the appointed pause (root_id '') is there.
    assert sorted(snap.states, key=lambda s: s.node_id) == list(expected.states.values())
    assert list(snap.execution_data) == list(expected.execution_data.values())
    assert list(snap.node_data) == list(expected.node_data.values())
    assert list(snap.context) == list(expected.context.values())
    assert list(snap.processes) == list(expected.processes.values())
    assert list(snap.schedules) == list(expected.schedules.values())
    assert [c.id for c in snap.callbacks] == ["cb1"]  # only those not consumed
    assert await runtime.store.load_run("zz") is None


async def test_upserts_overwrite_and_an_ended_run_drops_its_processes(
    runtime: PostgresRuntime,
) -> None:
    await runtime.store.commit(new_run_batch("r", ("a",)))
    await runtime.store.commit(full_batch("r"))
    later = WriteBatch(root_id="r")
    later.states = {"a": state("a", "r", "FINISHED", archived_time=9.0)}
    later.schedules = {"s1": ScheduleRow("s1", "r", "a", "v1", 1, "p1", True, False, 3)}
    later.histories = [full_batch("r").histories[0]]  # again: ignored
    await runtime.store.commit(later)
    assert (await runtime.store.get_state("a")) == later.states["a"]
    assert len(await runtime.store.get_histories("a")) == 2
    snap = await runtime.store.load_run("r")
    assert snap is not None
    assert snap.schedules == [later.schedules["s1"]]

    await runtime.store.commit(WriteBatch(root_id="r", run_status="finished"))
    assert (await runtime.store.get_run("r")).status == "finished"  # type: ignore[union-attr]
    assert await _active_runs(runtime) == []
    snap = await runtime.store.load_run("r")
    assert snap is not None
    assert snap.processes == []


async def test_a_duplicate_run_is_refused_without_sinking_its_group(
    runtime: PostgresRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    await runtime.store.commit(new_run_batch("r", ("a",)))
    sizes = count_groups(monkeypatch)
    dup = new_run_batch("r", ("x",), created=2.0)
    dup.states = {"x": state("x", "r")}
    reuse = new_run_batch("q", ("a",))  # node a belongs to run r
    reuse.states = {"a2": state("a2", "q")}
    results = await asyncio.gather(
        runtime.store.commit(new_run_batch("s", ("s1",))),
        runtime.store.commit(dup),
        runtime.store.commit(reuse),
        runtime.store.commit(full_batch("s")),
        return_exceptions=True,
    )
    assert sizes == [4]
    assert results[0] is None
    assert results[3] is None
    assert isinstance(results[1], InvalidOperationError)
    assert str(results[1]) == "pipeline r already exists"
    assert isinstance(results[2], InvalidOperationError)
    assert "reuses node ids" in str(results[2])
    # Refused batches left nothing behind, the others are all there.
    assert await runtime.store.get_state("x") is None
    assert await runtime.store.get_state("a2") is None
    assert await runtime.store.get_run("q") is None
    assert await runtime.store.get_node_root("a") == "r"
    assert await runtime.store.get_node_root("x") is None
    assert await runtime.store.get_run("s") is not None
    assert await runtime.store.get_state("a") is not None  # full_batch("s") wrote node a


async def test_large_values_are_stored_with_lz4_where_the_server_has_it(
    runtime: PostgresRuntime, admin: asyncpg.Connection, schema: str
) -> None:
    offered = await admin.fetchval(
        "SELECT 'lz4' = ANY (enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
    )
    tree = json.dumps(
        {"id": "r", "activities": {f"a{i}": {"name": f"step {i}"} for i in range(2000)}}
    )
    batch = WriteBatch(
        root_id="r", new_run=RunRow("r", tree, "{}", "active", 1.0), new_nodes=("r",)
    )
    batch.execution_data = {"r": ExecutionDataRow("r", "r", tree, tree)}
    await runtime.store.commit(batch)
    methods = await admin.fetchrow(
        "SELECT pg_column_compression(r.tree) AS tree, pg_column_compression(e.outputs) AS outputs "
        f"FROM {quote_ident(schema)}.runs AS r, {quote_ident(schema)}.execution_data AS e"
    )
    expected = "lz4" if offered else "pglz"
    assert (methods["tree"], methods["outputs"]) == (expected, expected)
    snap = await runtime.store.load_run("r")
    assert snap is not None
    assert snap.run.tree_json == tree
    assert snap.execution_data[0].outputs_json == tree


async def test_rows_travel_as_json_and_come_back_exactly(runtime: PostgresRuntime) -> None:
    """Floats keep every bit, text every character, through the JSON row parameters."""
    await runtime.store.commit(new_run_batch("r", ("a", "b")))
    odd_times = (0.1 + 0.2, 1e-7, 1796488951.8863125, 1e300, 5e-324)
    batch = WriteBatch(root_id="r")
    batch.states = {
        "a": state("a", "r", t=odd_times[0], started_time=odd_times[1], archived_time=1.5),
        "b": state("b", "r", t=odd_times[3], started_time=odd_times[4], name='"\\é\n\U0001f600'),
    }
    batch.timers = {"t": TimerRow("t", "r", "a", "v1", "poll", odd_times[2])}
    await runtime.store.commit(batch)
    snap = await runtime.store.load_run("r")
    assert snap is not None
    assert sorted(snap.states, key=lambda s: s.node_id) == list(batch.states.values())
    assert snap.timers == list(batch.timers.values())


async def test_a_nan_is_refused_without_sinking_its_group(runtime: PostgresRuntime) -> None:
    await runtime.store.commit(new_run_batch("r", ("a", "b")))
    bad, good = WriteBatch(root_id="r"), WriteBatch(root_id="r")
    bad.states = {"a": state("a", "r", t=float("nan"))}
    good.states = {"b": state("b", "r")}
    outcomes = await asyncio.gather(
        runtime.store.commit(bad), runtime.store.commit(good), return_exceptions=True
    )
    assert isinstance(outcomes[0], StorageError), outcomes
    assert outcomes[1] is None
    assert await runtime.store.get_state("a") is None
    assert await runtime.store.get_state("b") == good.states["b"]


async def test_concurrent_callbacks_to_parked_runs_share_one_statement(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with PostgresRuntime(PG_DSN, schema=schema, worker=False) as rt:
        store = rt.store
        for root in ("r1", "r2", "r3"):
            batch = new_run_batch(root, (f"{root}a",))
            await store.commit(batch)
            waiting = WriteBatch(root_id=root)
            node = f"{root}a"
            waiting.states = {node: state(node, root)}
            waiting.processes = {
                f"{root}p": ProcessRow(
                    f"{root}p", root, None, node, None, (), "sleeping", None, (), ()
                )
            }
            sched = ScheduleRow(f"{root}s", root, node, "v1", 1, f"{root}p", False, False, 0)
            waiting.schedules = {sched.id: sched}
            await store.commit(waiting)
        # Parked and held by nobody, as a worker leaves a run waiting for a callback.
        assert sorted(await store.claim_runs(3, ["r1", "r2", "r3"])) == ["r1", "r2", "r3"]
        assert sorted(await store.park_runs(["r1", "r2", "r3"])) == ["r1", "r2", "r3"]

        statements = _count_statements(store, monkeypatch)

        def callback(node: str, version: str = "v1") -> CallbackRow:
            return CallbackRow(uuid.uuid4().hex, "", node, version, '{"n": 1}', False, 1.5)

        outcomes = await asyncio.gather(
            store.deliver_callback_to_node(callback("r1a")),
            store.deliver_callback_to_node(callback("r2a")),
            store.deliver_callback_to_node(callback("r1a")),  # a second one for r1
            store.deliver_callback_to_node(callback("nowhere")),
            store.deliver_callback_to_node(callback("r3a", "v2")),
        )
        assert outcomes == [
            ("r1", True),
            ("r2", True),
            ("r1", False),
            (None, False),
            ("r3", False),
        ]
        assert statements.count("deliver_callbacks") == 1, statements
        # Stored once each, and the runs handed to the workers; r3 stays parked.
        assert sorted(await store.claim_runs(10)) == ["r1", "r2"]
        snaps = await store.load_runs(["r1", "r2", "r3"])
        assert [len(snaps[r].callbacks) for r in ("r1", "r2", "r3")] == [1, 1, 0]

        # A value Postgres refuses fails its own callback only.
        assert await store.release_runs(["r1", "r2"]) is None
        faulty = attrs.evolve(callback("r3a"), data_json="\x00")
        outcomes = await asyncio.gather(
            store.deliver_callback_to_node(callback("nowhere")),
            store.deliver_callback_to_node(faulty),
            return_exceptions=True,
        )
        assert outcomes[0] == (None, False)
        assert isinstance(outcomes[1], StorageError), outcomes


async def test_concurrent_lookups_share_statements_and_find_what_one_finds(
    runtime: PostgresRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = runtime.store
    for root in ("r1", "r2"):
        batch = new_run_batch(root, (f"{root}a",))
        batch.states = {f"{root}a": state(f"{root}a", root)}
        await store.commit(batch)
    sent: list[str] = []
    read = store._read

    async def counted(what: str, call: Any) -> Any:
        sent.append(what)
        return await read(what, call)

    monkeypatch.setattr(store, "_read", counted)
    asked = ["r1a", "r2a", "r1a", "nowhere", "r2", "r1a"] * 5
    roots = await asyncio.gather(*(store.get_node_root(n) for n in asked))
    assert roots == ["r1", "r2", "r1", None, "r2", "r1"] * 5
    states = await asyncio.gather(*(store.get_state(n) for n in asked))
    assert [s and (s.node_id, s.root_id) for s in states] == [
        ("r1a", "r1"),
        ("r2a", "r2"),
        ("r1a", "r1"),
        None,
        None,
        ("r1a", "r1"),
    ] * 5
    # A few go out alone, the others together.
    assert sent.count("node_root") < 10, sent
    assert sent.count("get_state") < 10, sent
    # One at a time, each is sent alone and sees every commit made before it was asked.
    sent.clear()
    assert await store.get_node_root("r1a") == "r1"
    await store.commit(WriteBatch(root_id="r1", states={"r1a": state("r1a", "r1", "FINISHED")}))
    found = await store.get_state("r1a")
    assert found is not None
    assert found.state == "FINISHED"
    assert sent == ["node_root", "get_state"]


async def test_a_lookup_whose_caller_left_is_not_sent_and_errors_reach_every_caller(
    runtime: PostgresRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = runtime.store
    lookups = store._root_lookups
    await store.commit(new_run_batch("r", ("a",)))
    sent: list[list[str]] = []
    release = asyncio.Event()
    one, many = lookups._fetch_one, lookups._fetch

    async def slow_one(key: str) -> Any:
        sent.append([key])
        await release.wait()
        return await one(key)

    async def slow_many(keys: list[str]) -> dict[str, Any]:
        sent.append(keys)
        await release.wait()
        return await many(keys)

    monkeypatch.setattr(lookups, "_fetch_one", slow_one)
    monkeypatch.setattr(lookups, "_fetch", slow_many)
    first = []
    for i in range(4):  # as many as may be under way, each alone
        first.append(asyncio.create_task(store.get_node_root(f"k{i}")))
        await asyncio.sleep(0.01)
    assert sent == [["k0"], ["k1"], ["k2"], ["k3"]]
    later = [asyncio.create_task(store.get_node_root(n)) for n in ("a", "gone", "a")]
    await asyncio.sleep(0.01)
    later[1].cancel()
    release.set()
    assert await asyncio.gather(*first) == [None] * 4
    assert await later[0] == "r"
    assert await later[2] == "r"
    assert sent[4:] == [["a"]]

    async def failing(*_: Any) -> Any:
        raise StorageError("the server went away")

    monkeypatch.setattr(lookups, "_fetch_one", failing)
    monkeypatch.setattr(lookups, "_fetch", failing)
    outcomes = await asyncio.gather(
        *(store.get_node_root(n) for n in "abcdefab"), return_exceptions=True
    )
    assert all(isinstance(o, StorageError) for o in outcomes), outcomes
    assert not lookups.lanes


async def test_a_retried_identical_new_run_counts_as_created(runtime: PostgresRuntime) -> None:
    await runtime.store.commit(new_run_batch("r", ("a",)))
    await runtime.store.commit(new_run_batch("r", ("a",)))  # same tree and created_time
    with pytest.raises(InvalidOperationError, match="already exists"):
        await runtime.store.commit(new_run_batch("r", ("a",), created=5.0))


async def test_concurrent_commits_share_transactions(
    runtime: PostgresRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = count_groups(monkeypatch)
    await asyncio.gather(*(runtime.store.commit(new_run_batch(f"r{i}")) for i in range(50)))
    assert sum(sizes) == 50
    assert len(sizes) < 50
    assert len(await _active_runs(runtime)) == 50


async def test_a_data_error_fails_only_its_batch(
    runtime: PostgresRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = count_groups(monkeypatch)
    bad = WriteBatch(root_id="r")
    bad.states = {"n": state("n", "r", name="nul \x00 byte")}  # text cannot hold NUL
    good = WriteBatch(root_id="r")
    good.states = {"m": state("m", "r")}
    results = await asyncio.gather(
        runtime.store.commit(new_run_batch("r", ("n", "m"))),
        runtime.store.commit(bad),
        runtime.store.commit(good),
        return_exceptions=True,
    )
    assert sizes == [3]
    assert results[0] is None
    assert results[2] is None
    assert isinstance(results[1], StorageError)
    assert isinstance(results[1].__cause__, asyncpg.PostgresError)
    assert await runtime.store.get_state("m") is not None
    assert await runtime.store.get_state("n") is None
    await runtime.store.commit(good)  # the committer carries on


async def test_a_group_stores_what_one_batch_at_a_time_stores(
    admin: asyncpg.Connection, schemas: Any
) -> None:
    """The merged write of a group equals applying its batches in order."""
    root = "r"
    batches = [new_run_batch(root, ("a", "b"))]
    for step in range(6):
        batch = WriteBatch(root_id=root)
        node = "ab"[step % 2]
        batch.states = {node: state(node, root, f"S{step}", t=float(step))}
        batch.processes = {f"p{step % 3}": process(f"p{step % 3}", root, node)}
        batch.schedules = {
            f"s{step}": ScheduleRow(f"s{step}", root, node, "v1", 3, "p0", step > 3, False, step)
        }
        batch.context = {(root, "k"): ContextRow(root, "k", root, 1, str(step), None)}
        batch.histories = [
            HistoryRow(f"h{step % 4}", root, node, 1, 2, step, False, 0, "v", "{}", "{}", step)
        ]
        batch.timers = {f"t{step % 2}": TimerRow(f"t{step % 2}", root, node, "v1", "poll", step)}
        batch.events = [event(root, node, f"S{step}", t=step), event(root, node, "x", t=step)]
        batches.append(batch)
        if step == 3:
            batches.append(WriteBatch(root_id=root, run_status="finished"))
    together, apart = schemas(), schemas()
    for name in (together, apart):
        await migrate(admin, name)
    q_together, q_apart = pg_store.load_queries(together), pg_store.load_queries(apart)
    results = await pg_store.write_group(admin, q_together, batches)
    assert results == [None] * len(batches)
    for batch in batches:
        assert await pg_store.write_group(admin, q_apart, [batch]) == [None]
    assert await dump(admin, together) == await dump(admin, apart)
    # Steps 0-3 wrote p0, p1, p2 and the end deleted them; steps 4 and 5 wrote p1, p2.
    assert [r[0] for r in await table(admin, together, "processes")] == ["p1", "p2"]
    # Likewise the timers: t0 and t1 as steps 4 and 5 wrote them.
    assert [r[0::5] for r in await table(admin, together, "timers")] == [("t0", 4), ("t1", 5)]
    assert [r[4] for r in await table(admin, together, "events")] == [
        state for step in range(6) for state in (f"S{step}", "x")
    ]


def count_single_inserts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the root id of every run inserted by a statement of its own."""
    inserted: list[str] = []
    original = pg_write._create_run

    async def spy(conn: Any, q: dict[str, str], run: RunRow, *rest: Any) -> Any:
        inserted.append(run.root_id)
        return await original(conn, q, run, *rest)

    monkeypatch.setattr(pg_write, "_create_run", spy)
    return inserted


async def test_the_new_runs_of_a_group_go_in_together(
    runtime: PostgresRuntime,
    admin: asyncpg.Connection,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    q = pg_store.load_queries(schema)
    worker = pg_write.Writer(owner="w", lease_seconds=30.0, channel="", events_channel="")
    singles = count_single_inserts(monkeypatch)
    batches = [new_run_batch(f"r{i}", (f"a{i}", f"b{i}"), created=float(i)) for i in range(8)]
    batches[3].states = {"a3": state("a3", "r3")}
    assert await pg_store.write_group(admin, q, batches, worker) == [None] * 8
    assert singles == []
    for i in range(8):
        run = await runtime.store.get_run(f"r{i}")
        assert run is not None
        assert (run.tree_json, run.created_time) == (f'{{"id": "r{i}"}}', i)
        assert await runtime.store.get_node_root(f"b{i}") == f"r{i}"
    assert await runtime.store.get_state("a3") is not None
    held = await admin.fetch(
        f"SELECT owner, lease_until IS NOT NULL AS leased FROM {quote_ident(schema)}.runs"
    )
    assert [tuple(r) for r in held] == [("w", True)] * 8


async def test_a_refused_new_run_is_told_apart_and_the_others_of_its_group_go_in(
    runtime: PostgresRuntime,
    admin: asyncpg.Connection,
    schema: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    q = pg_store.load_queries(schema)
    assert await pg_store.write_group(admin, q, [new_run_batch("old", ("taken",))]) == [None]
    singles = count_single_inserts(monkeypatch)
    batches = [
        new_run_batch("r0", ("a0",)),
        new_run_batch("old", ("x",), created=2.0),  # the id is taken
        new_run_batch("r2", ("taken",)),  # a node id of run old
        new_run_batch("r3", ("a3", "shared")),
        new_run_batch("r4", ("shared",)),  # a node id of r3, an earlier run of the group
        new_run_batch("r5", ("a5",)),
    ]
    results = await pg_store.write_group(admin, q, batches)
    assert singles == ["r0", "old", "r2", "r3", "r4", "r5"]
    assert [r is None for r in results] == [True, False, False, True, False, True]
    assert str(results[1]) == "pipeline old already exists"
    assert "reuses node ids" in str(results[2])
    assert "reuses node ids" in str(results[4])
    for root in ("r0", "r3", "r5"):
        assert await runtime.store.get_run(root) is not None
    for root in ("r2", "r4"):
        assert await runtime.store.get_run(root) is None
    assert await runtime.store.get_node_root("taken") == "old"
    assert await runtime.store.get_node_root("shared") == "r3"
    assert await runtime.store.get_node_root("x") is None
    assert [r[0] for r in await table(admin, schema, "runs")] == ["old", "r0", "r3", "r5"]


# -- timers, events, parking -----------------------------------------------------


async def test_timers_and_events_roundtrip(runtime: PostgresRuntime) -> None:
    store = runtime.store
    assert await store.last_event_id() == 0
    assert await store.read_events(0) == []
    await store.commit(new_run_batch("r", ("a", "b")))
    await store.commit(new_run_batch("q", ("c",)))
    seen = store.events_seen
    batch = WriteBatch(root_id="r")
    batch.timers = {
        "t1": TimerRow("t1", "r", "a", "v1", "poll", 5.0),
        "t2": TimerRow("t2", "r", "b", "v1", "poll", None),  # fired: inert
    }
    batch.events = [event("r", "a", "RUNNING"), event("r", "b", "READY")]
    other = WriteBatch(root_id="q", events=[event("q", "c", "RUNNING")])
    await asyncio.gather(store.commit(batch), store.commit(other))
    assert store.events_seen > seen

    events = await store.read_events(0)
    assert [e.id for e in events] == sorted(e.id for e in events)
    assert len({e.id for e in events}) == 3
    # One batch's events keep their order.
    mine = [e for e in events if e.root_id == "r"]
    assert stored(mine) == [("r", "a", "RUNNING"), ("r", "b", "READY")]
    assert mine[0] == attrs.evolve(batch.events[0], id=mine[0].id)
    assert await store.last_event_id() == events[-1].id
    assert await store.read_events(events[0].id) == events[1:]
    assert await store.read_events(0, limit=1) == events[:1]
    assert await store.read_events(0, root_id="q") == [e for e in events if e.root_id == "q"]
    assert await store.read_events(events[-1].id) == []

    snap = await store.load_run("r")
    assert snap is not None
    assert list(snap.timers) == [batch.timers["t1"]]  # only timers still due

    # Upserted by id: a timer that fired goes inert.
    later = WriteBatch(root_id="r", timers={"t1": TimerRow("t1", "r", "a", "v1", "poll", None)})
    await store.commit(later)
    snap = await store.load_run("r")
    assert snap is not None
    assert list(snap.timers) == []


async def test_an_ended_run_drops_its_timers(
    runtime: PostgresRuntime, admin: asyncpg.Connection, schema: str
) -> None:
    store = runtime.store
    await store.commit(new_run_batch("r", ("a",)))
    await store.commit(new_run_batch("q", ("b",)))
    await store.commit(
        WriteBatch(root_id="r", timers={"t1": TimerRow("t1", "r", "a", "v1", "poll", 5.0)})
    )
    await store.commit(
        WriteBatch(root_id="q", timers={"t2": TimerRow("t2", "q", "b", "v1", "poll", 5.0)})
    )
    await store.commit(WriteBatch(root_id="r", run_status="finished"))
    assert [r[0] for r in await table(admin, schema, "timers")] == ["t2"]


async def test_the_fallback_paths_store_timers_and_events(
    runtime: PostgresRuntime, admin: asyncpg.Connection, schema: str
) -> None:
    """A batch the fence refuses, and a batch with bad data, fail alone; the others are stored."""
    q = pg_store.load_queries(schema)
    worker = pg_write.Writer(owner="w", lease_seconds=30.0, channel="", events_channel="")
    assert await pg_store.write_group(admin, q, [new_run_batch("r", ("a",))], worker) == [None]
    await runtime.store.commit(new_run_batch("q", ("b",)))  # a client's: held by nobody

    held = WriteBatch(root_id="r", events=[event("r", "a", "RUNNING")])
    held.timers = {"t1": TimerRow("t1", "r", "a", "v1", "poll", 5.0)}
    stale = WriteBatch(root_id="q", events=[event("q", "b", "RUNNING")])
    results = await pg_store.write_group(admin, q, [held, stale], worker)  # the fast path
    assert results[0] is None
    assert isinstance(results[1], StaleWriteError)

    bad = WriteBatch(root_id="r", events=[event("r", "a", "nul \x00 byte")])
    good = WriteBatch(root_id="r", events=[event("r", "a", "FINISHED")])
    good.timers = {"t2": TimerRow("t2", "r", "a", "v1", "poll", 6.0)}
    results = await pg_store.write_group(admin, q, [bad, good], worker)  # one by one
    assert results[0] is not None
    assert results[1] is None

    assert stored(await runtime.store.read_events(0)) == [
        ("r", "a", "RUNNING"),
        ("r", "a", "FINISHED"),
    ]
    snap = await runtime.store.load_run("r")
    assert snap is not None
    assert sorted(t.id for t in snap.timers) == ["t1", "t2"]


async def test_a_retried_group_does_not_store_its_events_twice(
    runtime: PostgresRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt commits, then its connection dies before the answer."""
    await runtime.store.commit(new_run_batch("r", ("a",)))
    original = pg_store.write_group
    writers: list[Any] = []

    async def lose_answer(
        conn: Any, q: dict[str, str], batches: list[WriteBatch], *writer: Any
    ) -> Any:
        writers.extend(writer)
        result = await original(conn, q, batches, *writer)
        if len(writers) == 1:
            conn.terminate()
            raise asyncpg.ConnectionDoesNotExistError("connection was closed")
        return result

    monkeypatch.setattr(pg_store, "write_group", lose_answer)
    batch = WriteBatch(root_id="r", events=[event("r", "a", "RUNNING"), event("r", "a", "DONE")])
    await runtime.store.commit(batch)
    assert [w.retrying for w in writers] == [False, True]
    assert stored(await runtime.store.read_events(0)) == [
        ("r", "a", "RUNNING"),
        ("r", "a", "DONE"),
    ]


async def test_purge_events_deletes_the_old_ones_a_thousand_at_a_time(
    runtime: PostgresRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = runtime.store
    await store.commit(new_run_batch("r", ("a",)))
    old = [event("r", "a", f"S{i}", t=1.0 + i / 10_000) for i in range(2500)]
    await store.commit(WriteBatch(root_id="r", events=old))
    await store.commit(WriteBatch(root_id="r", events=[event("r", "a", "new", t=100.0)]))
    last = await store.last_event_id()
    statements = _count_statements(store, monkeypatch)
    assert await store.purge_events(1.0) == 0
    assert await store.purge_events(50.0) == 2500
    assert statements == ["purge_events"] * 4  # 0; then 1000, 1000, 500
    assert stored(await store.read_events(0)) == [("r", "a", "new")]
    assert await store.last_event_id() == last


async def test_event_ids_grow_in_commit_order(
    runtime: PostgresRuntime, admin: asyncpg.Connection, schema: str
) -> None:
    """A writer that drew ids and has not committed yet holds back every other writer.

    Otherwise a later writer could commit a higher id first, and a reader that
    saw it would skip the lower one for ever.
    """
    store = runtime.store
    await store.commit(new_run_batch("r", ("a",)))
    q = pg_store.load_queries(schema)
    async with admin.transaction():
        first = WriteBatch(root_id="r", events=[event("r", "a", "first")])
        assert await pg_store.write_group(admin, q, [first]) == [None]
        second = asyncio.create_task(
            store.commit(WriteBatch(root_id="r", events=[event("r", "a", "second")]))
        )
        await asyncio.sleep(0.3)
        assert not second.done()
        assert await store.read_events(0) == []
    with anyio.fail_after(10):
        await second
    assert stored(await store.read_events(0)) == [("r", "a", "first"), ("r", "a", "second")]


async def test_readers_miss_no_event_of_concurrent_writers(schema: str) -> None:
    """Two stores (think: worker processes) commit events at once; a reader tails them."""
    async with (
        PostgresRuntime(PG_DSN, schema=schema, worker=False) as a,
        PostgresRuntime(PG_DSN, schema=schema, worker=False) as b,
    ):
        for rt, root in ((a, "ra"), (b, "rb")):
            await rt.store.commit(new_run_batch(root, (f"{root}-n",)))
        done = False
        tailed: list[EventRow] = []

        async def tail() -> None:
            while True:
                finished = done
                tailed.extend(await a.store.read_events(tailed[-1].id if tailed else 0))
                if finished:
                    return

        async def write(rt: PostgresRuntime, root: str, writer: int) -> None:
            for i in range(20):
                batch = WriteBatch(root_id=root, events=[event(root, str(writer), str(i))] * 2)
                await rt.store.commit(batch)

        reader = asyncio.create_task(tail())
        await asyncio.gather(
            *(write(rt, r, w) for rt, r in ((a, "ra"), (b, "rb")) for w in range(4))
        )
        done = True
        await reader
        everything = await a.store.read_events(0, limit=10_000)
        assert len(everything) == 2 * 4 * 20 * 2
        assert tailed == everything
        for root in ("ra", "rb"):
            for w in range(4):
                mine = [
                    int(e.state) for e in everything if (e.root_id, e.node_id) == (root, str(w))
                ]
                assert mine == sorted(mine)


async def test_a_waiter_hears_of_events_committed_by_another_process(schema: str) -> None:
    async with (
        PostgresRuntime(PG_DSN, schema=schema, worker=False) as listener,
        PostgresRuntime(PG_DSN, schema=schema, worker=False) as writer,
    ):
        store = listener.store
        assert store.events_channel != store.channel
        await store.wait_for_events(store.events_seen, 0.01)  # opens the LISTEN connection
        await writer.store.commit(new_run_batch("r", ("a",)))
        seen = store.events_seen
        waiter = asyncio.create_task(store.wait_for_events(seen, 30))
        await asyncio.sleep(0.05)
        assert not waiter.done()  # a group without events notifies nobody
        await writer.store.commit(WriteBatch(root_id="r", events=[event("r", "a", "RUNNING")]))
        with anyio.fail_after(10):
            await waiter
        assert store.events_seen > seen


async def test_events_committed_within_the_interval_share_one_later_notify(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits with events NOTIFY at most once an interval; the last ones are never left out."""
    monkeypatch.setattr(pg_store, "EVENTS_NOTIFY_EVERY", 2.0)
    async with (
        PostgresRuntime(PG_DSN, schema=schema, worker=False) as listener,
        PostgresRuntime(PG_DSN, schema=schema, worker=False) as writer,
    ):
        store = listener.store
        await store.wait_for_events(store.events_seen, 0.01)  # opens the LISTEN connection
        await writer.store.commit(new_run_batch("r", ("a",)))
        seen = store.events_seen
        for i in range(5):
            await writer.store.commit(WriteBatch(root_id="r", events=[event("r", "a", str(i))]))
        # The first commit notified; the other four wait for the interval's end.
        with anyio.fail_after(10):
            while store.events_seen < seen + 2:
                await store.wait_for_events(store.events_seen, 30)
        await asyncio.sleep(0.3)
        assert store.events_seen == seen + 2, store.events_seen - seen
        assert [e.state for e in await store.read_events(0)] == ["0", "1", "2", "3", "4"]


async def test_closing_sends_the_notify_its_last_events_wait_for(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pg_store, "EVENTS_NOTIFY_EVERY", 60.0)
    async with PostgresRuntime(PG_DSN, schema=schema, worker=False) as listener:
        store = listener.store
        await store.wait_for_events(store.events_seen, 0.01)  # opens the LISTEN connection
        async with PostgresRuntime(PG_DSN, schema=schema, worker=False) as writer:
            await writer.store.commit(new_run_batch("r", ("a",)))
            first = store.events_seen
            await writer.store.commit(WriteBatch(root_id="r", events=[event("r", "a", "1")]))
            with anyio.fail_after(10):
                await store.wait_for_events(first, 30)
            seen = store.events_seen
            await writer.store.commit(WriteBatch(root_id="r", events=[event("r", "a", "2")]))
            await asyncio.sleep(0.3)
            assert store.events_seen == seen  # within the interval: no NOTIFY yet
        with anyio.fail_after(10):
            await store.wait_for_events(seen, 30)
        assert store.events_seen > seen


async def test_parked_runs_are_claimed_when_woken(runtime: PostgresRuntime) -> None:
    store = runtime.store
    for root in ("due", "later", "asked", "plain"):
        await store.commit(new_run_batch(root, (f"{root}-a",)))
    assert sorted(await store.claim_runs(10)) == ["asked", "due", "later", "plain"]
    await store.commit(
        WriteBatch(root_id="due", timers={"t1": TimerRow("t1", "due", "due-a", "v", "poll", 5.0)})
    )
    await store.commit(
        WriteBatch(
            root_id="later", timers={"t2": TimerRow("t2", "later", "later-a", "v", "poll", 50.0)}
        )
    )
    for root in ("due", "later", "asked"):
        assert await store.park_run(root)
    await store.release_runs(["plain"])
    assert not await store.park_run("plain")  # not held by this owner

    # Claiming without ids passes parked runs by; naming them takes them.
    assert await store.claim_runs(10) == ["plain"]
    assert await store.claim_woken(10, now=10.0) == ["due"]
    assert await store.claim_woken(10, now=10.0) == []
    assert await store.park_run("due")
    await store.submit_command("asked", "pause", "{}")
    assert sorted(await store.claim_woken(10, now=10.0)) == ["asked", "due"]
    assert await store.claim_woken(10, now=100.0) == ["later"]
    assert await store.claim_woken(10, now=100.0) == []

    # A pending command keeps a run from parking, and so does one being applied
    # (taken): parked, a claim would requeue it and it would be applied twice.
    assert not await store.park_run("asked")
    [command] = await store.pending_commands(["asked"])
    assert not await store.park_run("asked")
    await store.complete_command(command.id, True, "")
    assert await store.park_run("asked")
    assert await store.claim_runs(10) == []
    assert await store.claim_runs(10, ["asked"]) == ["asked"]
    assert await store.park_run("asked")

    # Another owner cannot park a run it does not hold, nor wake one held.
    other = PostgresStore(PG_DSN, schema=runtime.schema, worker=False)
    await other.open()
    try:
        assert not await other.park_run("later")
        assert await other.claim_woken(10, now=1000.0) == []
        assert await other.claim_runs(10, ["asked"]) == ["asked"]
    finally:
        await other.aclose()
    # A run that ended wakes nobody, whatever it left behind.
    await store.commit(WriteBatch(root_id="later", run_status="finished"))
    assert not await store.park_run("later")


# -- faults ----------------------------------------------------------------------


async def test_driver_errors_become_storage_errors(
    runtime: PostgresRuntime, admin: asyncpg.Connection, schema: str
) -> None:
    await admin.execute(f"DROP TABLE {quote_ident(schema)}.states CASCADE")
    with pytest.raises(StorageError, match="get_state") as info:
        await runtime.store.get_state("a")
    assert isinstance(info.value.__cause__, asyncpg.UndefinedTableError)
    batch = WriteBatch(root_id="r")
    batch.states = {"a": state("a", "r")}
    with pytest.raises(StorageError) as info:
        await runtime.store.commit(batch)
    assert isinstance(info.value.__cause__, asyncpg.PostgresError)
    await runtime.store.commit(new_run_batch("r"))  # other tables still work


async def test_killed_connections_are_replaced(
    runtime: PostgresRuntime, admin: asyncpg.Connection
) -> None:
    await runtime.store.commit(new_run_batch("r", ("a", "b")))
    assert await runtime.store.get_run("r") is not None
    assert await kill_backends(admin, runtime.application_name) >= 1
    await runtime.store.commit(full_batch("r"))
    assert await kill_backends(admin, runtime.application_name) >= 1
    assert await runtime.store.get_state("a") is not None
    snap = await runtime.store.load_run("r")
    assert snap is not None
    assert len(snap.states) == 2


async def test_commits_survive_backends_killed_while_they_run(
    runtime: PostgresRuntime, admin: asyncpg.Connection
) -> None:
    killed = 0

    async def killer() -> None:
        nonlocal killed
        for _ in range(5):
            await asyncio.sleep(0.03)
            killed += await kill_backends(admin, runtime.application_name)

    async def writer(i: int) -> None:
        await runtime.store.commit(new_run_batch(f"r{i}", (f"a{i}",)))
        for step in range(20):
            batch = WriteBatch(root_id=f"r{i}")
            batch.states = {f"a{i}": state(f"a{i}", f"r{i}", f"S{step}")}
            batch.histories = [
                HistoryRow(f"h{i}-{step}", f"r{i}", f"a{i}", 1, 2, 1, False, 0, "v", "{}", "{}", 1)
            ]
            await runtime.store.commit(batch)
            await asyncio.sleep(0.005)

    await asyncio.gather(killer(), *(writer(i) for i in range(8)))
    assert killed >= 1
    for i in range(8):
        assert (await runtime.store.get_state(f"a{i}")).state == "S19"  # type: ignore[union-attr]
        assert len(await runtime.store.get_histories(f"a{i}")) == 20


async def test_a_commit_whose_outcome_was_lost_is_retried_safely(
    runtime: PostgresRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first attempt commits, then its connection dies before the answer."""
    original = pg_store.write_group
    calls = 0

    async def lose_answer(
        conn: Any, q: dict[str, str], batches: list[WriteBatch], *writer: Any
    ) -> Any:
        nonlocal calls
        calls += 1
        result = await original(conn, q, batches, *writer)
        if calls == 1:
            conn.terminate()
            raise asyncpg.ConnectionDoesNotExistError("connection was closed")
        return result

    monkeypatch.setattr(pg_store, "write_group", lose_answer)
    batch = new_run_batch("r", ("a",))
    batch.histories = full_batch("r").histories
    await runtime.store.commit(batch)
    assert calls == 2
    assert len(await runtime.store.get_histories("a")) == 2


async def test_a_commit_gives_up_after_a_few_connection_errors(
    runtime: PostgresRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = 0

    async def always_lost(
        conn: Any, q: dict[str, str], batches: list[WriteBatch], *writer: Any
    ) -> Any:
        nonlocal calls
        calls += 1
        raise asyncpg.ConnectionDoesNotExistError("connection was closed")

    monkeypatch.setattr(pg_store, "write_group", always_lost)
    monkeypatch.setattr(pg_store, "COMMIT_BACKOFF", (0.0, 0.0, 0.0))
    with pytest.raises(StorageError) as info:
        await runtime.store.commit(new_run_batch("r"))
    assert calls == 4
    assert isinstance(info.value.__cause__, asyncpg.ConnectionDoesNotExistError)


# -- end to end ------------------------------------------------------------------

library = ComponentLibrary()


class SlowService(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        await anyio.sleep(0.05)
        data.outputs.done = True
        return True


class SlowComponent(Component):
    code = "pg_slow"
    name = "Slow"
    bound_service = SlowService
    auto_register = False


library.register(SlowComponent)


# The engine calls every method of the Runtime protocol; while the protocol
# grows faster than this runtime, running pipelines cannot work.
_MISSING = sorted(
    name
    for name in dir(Runtime)
    if not name.startswith("_")
    and callable(getattr(Runtime, name))
    and not hasattr(PostgresStore, name)
)


@pytest.mark.skipif(bool(_MISSING), reason=f"PostgresStore lacks Runtime.{_MISSING}")
async def test_a_pipeline_finishes_although_its_connections_are_killed(
    schema: str, admin: asyncpg.Connection
) -> None:
    start = EmptyStartEvent()
    node = start
    for _ in range(6):
        node = node.extend(ServiceActivity(component_code="pg_slow"))
    node.extend(EmptyEndEvent())
    tree = build_tree(start)
    async with PostgresRuntime(PG_DSN, schema=schema, components=library) as rt:
        assert (await api.run_pipeline(rt, tree)).result
        for _ in range(3):
            await asyncio.sleep(0.06)
            await kill_backends(admin, rt.application_name)
        res = await api.wait_pipeline(rt, tree["id"], timeout=20)
        assert res.data == "FINISHED", res.message
    # A new runtime reads it all back from the database.
    async with PostgresRuntime(PG_DSN, schema=schema, components=library, worker=False) as rt:
        states = await api.get_pipeline_states(rt, tree["id"])
        assert states.data[tree["id"]]["state"] == "FINISHED"


async def test_a_schema_of_31_cyrillic_letters_works_end_to_end(schemas: Any) -> None:
    """62 bytes: a valid identifier, though ``aiobamboo.`` and it make too long a channel."""
    schema = schemas("ж" * 19, digits="абвгдеёзийклмноп")
    assert len(schema) == 31
    assert len(schema.encode()) == 62
    start = EmptyStartEvent()
    start.extend(ServiceActivity(component_code="pg_slow")).extend(EmptyEndEvent())
    tree = build_tree(start)
    # The worker polls once a minute, so only the client's NOTIFY can wake it in time.
    settings = Settings(poll_interval=60.0)
    async with PostgresRuntime(
        PG_DSN, schema=schema, components=library, settings=settings
    ) as worker:
        with anyio.fail_after(10):
            while worker.store._listener is None:  # noqa: ASYNC110 - private state, no event
                await asyncio.sleep(0.01)
        async with PostgresRuntime(PG_DSN, schema=schema, worker=False) as client:
            assert (await api.run_pipeline(client, tree)).result
            res = await api.wait_pipeline(client, tree["id"], timeout=10)
            assert res.data == "FINISHED", res.message


# -- the LISTEN connection -------------------------------------------------------


def listen_connections(
    monkeypatch: pytest.MonkeyPatch, gate: asyncio.Event | None = None
) -> tuple[list[Any], asyncio.Event]:
    """Record each connection the store opens to LISTEN; hold each opening at ``gate``."""
    made: list[Any] = []
    entered = asyncio.Event()
    real = asyncpg.connect

    async def connect(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        if gate is not None:
            await gate.wait()
        conn = await real(*args, **kwargs)
        made.append(conn)
        return conn

    monkeypatch.setattr(pg_store.asyncpg, "connect", connect)
    return made, entered


async def test_concurrent_waiters_share_one_listen_connection(
    schema: str, admin: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    made, _ = listen_connections(monkeypatch)
    async with PostgresRuntime(PG_DSN, schema=schema, worker=False) as rt:
        await asyncio.gather(*(rt.store.wait_for_signal(0.01) for _ in range(5)))
        assert len(made) == 1
        waiter = asyncio.create_task(rt.store.wait_for_signal(30))
        await admin.execute("SELECT pg_notify($1, 'x')", rt.channel)
        with anyio.fail_after(10):
            await waiter  # woken, not timed out
        assert len(made) == 1
    assert all(conn.is_closed() for conn in made)


async def test_closing_while_the_listen_connection_opens_leaves_none_open(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = asyncio.Event()
    made, entered = listen_connections(monkeypatch, gate)
    rt = PostgresRuntime(PG_DSN, schema=schema, worker=False)
    async with rt:
        # A task of the application, not of the runtime: closing does not cancel it.
        waiter = asyncio.create_task(rt.store.wait_for_signal(0.05))
        with anyio.fail_after(10):
            await entered.wait()
    gate.set()
    with anyio.fail_after(10):
        await waiter
        await rt.store.wait_for_signal(0.01)  # a closed runtime opens none
    try:
        assert [conn for conn in made if not conn.is_closed()] == []
        assert rt.store._listener is None
    finally:
        for conn in made:
            conn.terminate()
