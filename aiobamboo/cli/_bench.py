"""``aiobamboo bench``: the benchmark scenarios, on the user's own database."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

import anyio

from .. import api
from ..engine import Settings
from ..host import Engine, open_url, scheme_of
from ._common import (
    EXIT_DATABASE,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    add_database_options,
    database,
    print_json,
    unwrap,
)

#: What each scenario runs (the benchmarks' README has the targets).
SCENARIO_TEXT = {
    "S1": "one pipeline of 1,000 activities in a row",
    "S2": "100 pipelines of 17 nodes (gateways, a sub-process) at once",
    "S3": "one parallel gateway of 100 branches",
    "S4": "1,000 one-activity pipelines at once",
    "S5": "pipelines waiting on a callback, then called back by 100 senders",
    "S6": "a loop of 200 iterations",
    "S7": "pipelines parked on a callback, then called back by 100 senders",
}
DEFAULT_SCENARIOS = ["S1", "S2", "S3", "S4", "S5", "S6"]
#: The Postgres schema the bench's pipelines go to: never the application's.
BENCH_SCHEMA = "aiobamboo_bench"


def add_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="run the benchmark scenarios on your database",
        description=(
            "Run the benchmark scenarios against --db and print nodes/s, callbacks/s, "
            "callback latency and peak memory. On SQLite they run on a temporary file "
            "beside --db (same disk), removed at the end; on Postgres in the schema "
            f"{BENCH_SCHEMA} (--schema), whose pipelines are deleted at the end. "
            "Scenarios: "
            + "; ".join(f"{name}: {text}" for name, text in SCENARIO_TEXT.items())
            + "."
        ),
    )
    bench.add_argument(
        "--scenario",
        dest="scenarios",
        action="append",
        choices=sorted(SCENARIO_TEXT),
        help="a scenario to run (repeatable; default: S1 to S6)",
    )
    bench.add_argument(
        "--pipelines",
        type=int,
        default=None,
        help="pipelines of S5 and S7 (default 10,000; 100,000)",
    )
    bench.add_argument(
        "--concurrency",
        type=int,
        default=10_000,
        help="pipelines each engine holds in memory at once (default: %(default)s)",
    )
    bench.add_argument(
        "--workers",
        type=int,
        default=0,
        help="Postgres: run the pipelines in this many worker processes, this one a client "
        "(default: 0, in this process)",
    )
    # Its own schema by default: the bench deletes the pipelines it finds there.
    add_database_options(bench, schema=BENCH_SCHEMA)
    bench.set_defaults(handler=handle_bench)


@contextlib.contextmanager
def _bench_database(db: str) -> Iterator[str]:
    """Where the bench runs: a temporary SQLite file beside ``db``, or ``db`` itself."""
    if scheme_of(db) != "sqlite":
        yield db
        return
    path = db.removeprefix("sqlite://")
    if path == ":memory:":
        yield path
        return
    folder = os.path.dirname(os.path.abspath(path))
    with tempfile.TemporaryDirectory(prefix=".aiobamboo-bench-", dir=folder) as tmp:
        yield os.path.join(tmp, "bench.db")


def _hwm_mb(pid: int) -> float:
    from ..bench import memory_mb

    try:
        return memory_mb(pid)[0]
    except OSError:
        return 0.0


def _spawn_workers(
    args: argparse.Namespace, db: str, log_dir: str
) -> list[tuple[subprocess.Popen[bytes], IO[bytes]]]:
    started: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
    for i in range(args.workers):
        log = open(os.path.join(log_dir, f"worker-{i}.log"), "w+b")
        command = [
            sys.executable, "-m", "aiobamboo.cli", "worker", "--db", db,
            "--schema", args.schema, "--import", "aiobamboo.bench",
            "--concurrency", str(args.concurrency),
        ]  # fmt: skip
        started.append((subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log))
    return started


def _ready(worker: subprocess.Popen[bytes], log: IO[bytes]) -> bool:
    log.seek(0)
    text = log.read().decode(errors="replace")
    if "running pipelines" in text:
        return True
    if worker.poll() is not None:
        raise CliError(f"a bench worker exited:\n{text[-2000:]}", EXIT_DATABASE)
    return False


def _stop(started: list[tuple[subprocess.Popen[bytes], IO[bytes]]]) -> None:
    for worker, _ in started:
        worker.terminate()
    for worker, log in started:
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.wait(timeout=30)
        log.close()


@contextlib.asynccontextmanager
async def _workers(
    args: argparse.Namespace, db: str, log_dir: str
) -> AsyncIterator[list[subprocess.Popen[bytes]]]:
    """``args.workers`` worker processes on the bench schema, ready; stopped on exit."""
    started = _spawn_workers(args, db, log_dir)
    try:
        with anyio.fail_after(60):
            for worker, log in started:
                while True:  # the worker says so in its log
                    if _ready(worker, log):
                        break
                    await anyio.sleep(0.1)
        yield [worker for worker, _ in started]
    finally:
        _stop(started)


async def _one(
    runtime: Engine, name: str, count: int | None, engine_pids: list[int]
) -> dict[str, Any]:
    from ..bench import S7_PIPELINES, SCENARIOS, s7

    driver = SCENARIOS[name]
    if name == "S7":
        # Its memory figures are those of the process that holds the pipelines.
        driver = functools.partial(s7, count=count or S7_PIPELINES, engine_pid=engine_pids[0])
    elif name == "S5" and count is not None:
        driver = functools.partial(driver, count=count)
    result = dict(await driver(runtime))
    result["nodes_per_s"] = result["nodes"] / result["seconds"]
    # Peak resident memory of the processes that ran the pipelines, so far.
    result["peak_rss_mb"] = max(_hwm_mb(pid) for pid in engine_pids)
    return result


async def handle_bench(args: argparse.Namespace) -> int:
    db = database(args)
    scenarios = args.scenarios or DEFAULT_SCENARIOS
    if args.workers and scheme_of(db) != "postgresql":
        raise CliError("--workers needs a postgresql:// database", EXIT_USAGE)
    if args.pipelines is not None and args.pipelines < 1:
        raise CliError("--pipelines must be at least 1", EXIT_USAGE)
    settings = Settings(rerun_limit=10_000, concurrency=args.concurrency)
    results: dict[str, dict[str, Any]] = {}
    with _bench_database(db) as target, tempfile.TemporaryDirectory() as log_dir:
        runtime = open_url(
            target,
            worker=not args.workers,
            settings=settings,
            schema=args.schema,
        )
        try:
            async with runtime:
                # It deletes the pipelines it runs: never where there are others.
                found = unwrap(await api.list_pipelines(runtime, limit=1))
                if found and found["pipelines"]:
                    raise CliError(
                        f"schema {args.schema} already holds pipelines; the bench deletes "
                        "what it runs, so it runs on an empty schema: name another with --schema",
                        EXIT_USAGE,
                    )
            async with runtime, _workers(args, target, log_dir) as workers:
                pids = [w.pid for w in workers] or [os.getpid()]
                for name in scenarios:
                    if not args.json:
                        print(f"{name}: {SCENARIO_TEXT[name]} ...", file=sys.stderr, flush=True)
                    results[name] = await _one(runtime, name, args.pipelines, pids)
                    # Each scenario's pipelines go before the next starts.
                    unwrap(await api.purge_pipelines(runtime, time.time() + 1))
        except OSError as exc:
            raise CliError(f"{target}: {exc}", EXIT_DATABASE) from exc
    meta = {
        "database": "sqlite (a file beside --db)" if scheme_of(db) == "sqlite" else "postgresql",
        "workers": args.workers,
        "concurrency": args.concurrency,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "this_process_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    if args.json:
        print_json({"results": results, "meta": meta})
    else:
        print(bench_table(results))
    return EXIT_OK


def _figure(result: dict[str, Any], key: str, width: int, digits: int) -> str:
    value = result.get(key)
    return f"{value:>{width}.{digits}f}" if value is not None else f"{'-':>{width}}"


def bench_table(results: dict[str, dict[str, Any]]) -> str:
    head = (
        f"{'scenario':<9}{'seconds':>9}{'nodes/s':>10}{'callbacks/s':>13}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'peak RSS MB':>13}"
    )
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        lines.append(
            f"{name:<9}{r['seconds']:>9.3f}{r['nodes_per_s']:>10.0f}"
            f"{_figure(r, 'callbacks_per_s', 13, 0)}{_figure(r, 'callback_p50_ms', 9, 1)}"
            f"{_figure(r, 'callback_p99_ms', 9, 1)}{r['peak_rss_mb']:>13.0f}"
        )
    return "\n".join(lines)
