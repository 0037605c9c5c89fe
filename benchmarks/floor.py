"""The floor: what a node step cannot cost less than on this machine.

    python -m benchmarks.floor                      # SQLite and Postgres, 5 runs
    python -m benchmarks.floor --runtime sqlite     # without Postgres
    python -m benchmarks.floor --save benchmarks/results/floor.json

Prints the cost of the primitives a node step is made of (an asyncio task
switch, a hop to a thread and back, a SQLite commit on its own thread and
through the runtime's connection thread, a Postgres round trip and commit
through asyncpg), then each scenario's cost per node next to the commit
floor of its runtime, so a change can say how far from the floor it is.
Each scenario's figure is split into the engine's own (the scenario on the
in-memory runtime, which stores nothing) and the rest, its storage.

Each figure is the median over ``--runs`` rounds of many repetitions.
The scenarios run in this process, on a fresh database each round.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from .run import PG_DSN, _child

#: Repetitions per round of each primitive.
REPEAT = 2000

_TABLE = "CREATE TABLE IF NOT EXISTS t (k INTEGER PRIMARY KEY, v TEXT)"


def _median_us(rounds: list[float]) -> float:
    return statistics.median(rounds) * 1e6


async def task_switch() -> float:
    """One switch from one task to another and back, through a future each way."""
    loop = asyncio.get_running_loop()
    box: list[asyncio.Future[None]] = [loop.create_future()]

    async def echo() -> None:
        for _ in range(REPEAT):
            await box[0]
            box[0] = loop.create_future()

    other = asyncio.create_task(echo())
    await asyncio.sleep(0)
    began = time.perf_counter()
    for _ in range(REPEAT):
        box[0].set_result(None)
        await asyncio.sleep(0)
    took = time.perf_counter() - began
    await other
    return took / REPEAT / 2


def _sqlite_conn(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(_TABLE)
    return conn


def _sqlite_commit(conn: sqlite3.Connection, k: int) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (k % 1000, "x" * 200))
    conn.execute("COMMIT")


def sqlite_commit_inline(path: str) -> float:
    conn = _sqlite_conn(path)
    try:
        began = time.perf_counter()
        for k in range(REPEAT):
            _sqlite_commit(conn, k)
        return (time.perf_counter() - began) / REPEAT
    finally:
        conn.close()


async def _through_thread(path: str, commit: bool) -> float:
    """Await ``REPEAT`` calls on the runtime's connection thread, one at a time."""
    from aiobamboo_sqlite._thread import SQLiteThread

    thread = SQLiteThread(path)
    await thread.open()
    try:
        await thread.call(
            lambda conn: (conn.execute("PRAGMA journal_mode=WAL"), conn.execute(_TABLE))
        )
        await thread.execute("PRAGMA synchronous=NORMAL")
        began = time.perf_counter()
        if commit:
            for k in range(REPEAT):
                await thread.call(_sqlite_commit, k)
        else:
            for _ in range(REPEAT):
                await thread.call(_noop)
        return (time.perf_counter() - began) / REPEAT
    finally:
        await thread.close()


def _noop(conn: Any) -> None:
    return None


async def thread_hop(path: str) -> float:
    return await _through_thread(path, commit=False)


async def sqlite_commit_threaded(path: str) -> float:
    return await _through_thread(path, commit=True)


async def _pg(fn: Callable[[Any], Awaitable[None]]) -> float:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    table = "floor_" + uuid.uuid4().hex[:8]
    try:
        await conn.execute(f"CREATE TABLE {table} (k integer PRIMARY KEY, v text)")
        await conn.execute(
            f"PREPARE ins AS INSERT INTO {table} VALUES ($1, $2) "
            "ON CONFLICT (k) DO UPDATE SET v = excluded.v"
        )
        began = time.perf_counter()
        for k in range(REPEAT // 2):
            await fn(conn, k)
        return (time.perf_counter() - began) / (REPEAT // 2)
    finally:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.close()


async def pg_round_trip() -> float:
    async def one(conn: Any, k: int) -> None:
        await conn.fetchval("SELECT 1")

    return await _pg(one)


async def pg_commit() -> float:
    """A transaction of one upsert, sent as one message: one round trip and a WAL flush."""

    async def one(conn: Any, k: int) -> None:
        await conn.execute(f"BEGIN; EXECUTE ins({k % 1000}, '{'x' * 200}'); COMMIT")

    return await _pg(one)


def _rounds(runs: int, measure: Callable[[], float]) -> float:
    return _median_us([measure() for _ in range(runs)])


def primitives(runs: int, with_pg: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "floor.db")
        out["asyncio task switch"] = _rounds(runs, lambda: asyncio.run(task_switch()))
        out["thread hop (runtime's connection thread, no SQL)"] = _rounds(
            runs, lambda: asyncio.run(thread_hop(path))
        )
        out["SQLite commit, same thread"] = _rounds(runs, lambda: sqlite_commit_inline(path))
        out["SQLite commit through the connection thread"] = _rounds(
            runs, lambda: asyncio.run(sqlite_commit_threaded(path))
        )
    if with_pg:
        out["Postgres round trip (SELECT 1)"] = _rounds(runs, lambda: asyncio.run(pg_round_trip()))
        out["Postgres commit (one upsert, one message)"] = _rounds(
            runs, lambda: asyncio.run(pg_commit())
        )
    return out


#: The commit floor each scenario's per-node cost is compared with: the way a
#: lone node step's commit goes (on SQLite, on the event loop's own thread).
FLOOR_OF = {
    "sqlite": "SQLite commit, same thread",
    "postgres": "Postgres commit (one upsert, one message)",
}


def _us_per_node(runs: int, kind: str, name: str) -> float:
    # The scenarios as `benchmarks.run` runs them, but in this process.
    rounds = [asyncio.run(_child(name, kind, None, 0)) for _ in range(runs)]
    return statistics.median(r["seconds"] / r["nodes"] for r in rounds) * 1e6


def per_node(runs: int, kinds: list[str], scenarios: list[str]) -> dict[str, dict[str, float]]:
    """Each scenario's cost per node on each runtime, and the engine's alone.

    The engine's alone is the scenario on the in-memory runtime of the tests,
    which stores nothing: what is left of a runtime's figure is its storage
    (the write, the hops, the waits for the database).
    """
    engine = {name: _us_per_node(runs, "memory", name) for name in scenarios}
    out: dict[str, dict[str, float]] = {}
    for kind in kinds:
        for name in scenarios:
            out[f"{name}/{kind}"] = {
                "us_per_node": _us_per_node(runs, kind, name),
                "engine_us_per_node": engine[name],
            }
    return out


def _pg_reachable() -> bool:
    async def probe() -> None:
        import asyncpg

        conn = await asyncio.wait_for(asyncpg.connect(PG_DSN), 3)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        print(f"Postgres at {PG_DSN} is not reachable ({exc}); measuring SQLite only")
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--runtime", nargs="+", choices=["sqlite", "postgres"], default=["sqlite", "postgres"]
    )
    parser.add_argument("--scenarios", nargs="+", default=["S1", "S2", "S3", "S4", "S6"])
    parser.add_argument("--save", help="write the figures as JSON")
    args = parser.parse_args(argv)
    kinds = list(args.runtime)
    if "postgres" in kinds and not _pg_reachable():
        kinds.remove("postgres")
    prims = primitives(args.runs, "postgres" in kinds)
    print(f"{'primitive':<52} {'us':>8}")
    print("-" * 61)
    for name, us in prims.items():
        print(f"{name:<52} {us:8.1f}")
    nodes = per_node(args.runs, kinds, args.scenarios)
    print()
    heads = ("us/node", "engine", "storage", "floor us", "x floor")
    print(f"{'scenario':<14}" + "".join(f" {h:>8}" for h in heads))
    print("-" * 60)
    for name, fig in nodes.items():
        floor = prims[FLOOR_OF[name.split("/")[1]]]
        fig["floor_us"] = floor
        fig["x_floor"] = fig["us_per_node"] / floor
        storage = fig["us_per_node"] - fig["engine_us_per_node"]
        print(
            f"{name:<14} {fig['us_per_node']:8.1f} {fig['engine_us_per_node']:8.1f} "
            f"{storage:8.1f} {floor:9.1f} {fig['x_floor']:8.1f}"
        )
    if args.save:
        with open(args.save, "w") as out:
            json.dump(
                {
                    "date": time.strftime("%Y-%m-%d"),
                    "command": "python -m benchmarks.floor " + " ".join(sys.argv[1:]),
                    "primitives_us": prims,
                    "scenarios": nodes,
                },
                out,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
