"""Run the benchmark scenarios and print a table.

    python -m benchmarks.run                       # every scenario, SQLite, 3 runs each
    python -m benchmarks.run S1 S2 --runs 5
    python -m benchmarks.run --runtime sqlite postgres
    python -m benchmarks.run --save benchmarks/results/base.json
    python -m benchmarks.run --compare benchmarks/results/base.json
    python -m benchmarks.run S1 S4 --runs 5 --compare main  # another revision, in the same run
    python -m benchmarks.run S7 --runs 1 --runtime sqlite postgres
    python -m benchmarks.run S7 --runs 1 --count 2000           # a quick check
    python -m benchmarks.run S1 S2 --observe tracing            # under an observer
    python -m benchmarks.run S4 S5 --gc worker                  # GC as `aiobamboo worker` sets it
    python -m benchmarks.run S2 S4 --gc-stats                   # and what the collector cost

Each run is a fresh child process with a fresh database, so peak RSS is that
scenario's own. Times are medians; compare ratios within one run of this
script, since the machines are noisy. ``--compare REVISION`` does that: it
extracts the revision (``git archive``) and alternates its runs with this
tree's, printing both medians' ratio ("vs base": this tree's time over the
revision's; "speed-up": its inverse).

S7 on SQLite runs embedded, in the child process, with default settings. On
Postgres it runs as deployed: one ``aiobamboo worker`` process holds the
engine, and the child is a client (``worker=False``) that starts the
pipelines and sends the callbacks, which reach the worker through the
database. Its memory figures are the worker's.

S1-S6 run with Python's default garbage collector settings, as in an
application that embeds the engine; ``--gc worker`` applies instead the
settings the ``aiobamboo worker`` and ``serve`` commands give their own
process (start-up objects frozen, the youngest generation collected less
often), to show what a process that only runs the engine gets.
``--gc-stats`` adds what the collector did while the pipelines ran (S1-S4,
S6: from the first start to the last end, the trees built before left out;
S5: the whole scenario; S7: none): its passes over the two youngest
generations and its full passes, and the milliseconds they held the loop.
"""

from __future__ import annotations

import argparse
import functools
import gc
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio

BUDGETS = {"S1": 0.5, "S2": 1.0, "S3": 0.1, "S4": 1.5, "S6": 2.0}
#: S7's targets: callbacks/s by runtime; peak RSS with every pipeline waiting (SQLite).
S7_CALLBACKS_PER_S = {"sqlite": 2_000, "postgres": 3_000}
S7_RSS_MB = 150
S7_RSS_GROWTH = 1.3
EXTRA_KEYS = (
    "callbacks_per_s",
    "callback_p50_ms",
    "callback_p99_ms",
    "start_to_all_waiting_s",
    "gc_young",
    "gc_young_ms",
    "gc_full",
    "gc_full_ms",
)
#: Carries --observe to the child processes.
OBSERVE_ENV = "AIOBAMBOO_BENCH_OBSERVE"
#: Carries --gc to the child processes: ``worker`` for the settings of ``aiobamboo worker``.
GC_ENV = "AIOBAMBOO_BENCH_GC"
#: Carries --gc-stats to the child processes.
GC_STATS_ENV = "AIOBAMBOO_BENCH_GC_STATS"
PG_DSN = os.environ.get("AIOBAMBOO_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
ROOT = Path(__file__).resolve().parents[1]
#: The S7 worker's --concurrency: runs it holds in memory at once.
S7_WORKER_CONCURRENCY = 100


async def _drop_schema(schema: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_DSN)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await conn.close()


async def _child(scenario: str, runtime_kind: str, count: int | None, concurrency: int) -> Any:
    from aiobamboo.engine import Settings

    from .scenarios import SCENARIOS, library

    if scenario == "S7":
        return await _s7_child(runtime_kind, count, concurrency)
    driver = SCENARIOS[scenario]
    if count is not None:
        driver = functools.partial(driver, count=count)
    if os.environ.get(GC_STATS_ENV):
        driver = _counting_collections(driver)
    settings = Settings(rerun_limit=10_000, observer=_observer())
    if runtime_kind == "memory":
        from aiobamboo.testing import MemoryRuntime

        async with MemoryRuntime(components=library, settings=settings) as runtime:
            return await driver(runtime)
    if runtime_kind == "sqlite":
        from aiobamboo_sqlite import SQLiteRuntime

        with tempfile.TemporaryDirectory() as tmp:
            async with SQLiteRuntime(
                os.path.join(tmp, "bench.db"), components=library, settings=settings
            ) as runtime:
                return await driver(runtime)
    from aiobamboo_postgres import PostgresRuntime

    schema = "bench_" + uuid.uuid4().hex[:10]
    pg_runtime = PostgresRuntime(PG_DSN, schema=schema, components=library, settings=settings)
    try:
        async with pg_runtime:
            return await driver(pg_runtime)
    finally:
        await _drop_schema(schema)


class _Collections:
    """The collector's passes and how long they took, told by ``gc.callbacks``.

    Young: passes over the two youngest generations; full: over every object.
    """

    def __init__(self) -> None:
        self.passes = [0, 0, 0]
        self.ms = [0.0, 0.0, 0.0]
        self._began = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._began = time.perf_counter()
            return
        generation = info["generation"]
        self.passes[generation] += 1
        self.ms[generation] += (time.perf_counter() - self._began) * 1000

    def __enter__(self) -> _Collections:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)

    def report(self) -> dict[str, float]:
        return {
            "gc_young": self.passes[0] + self.passes[1],
            "gc_young_ms": self.ms[0] + self.ms[1],
            "gc_full": self.passes[2],
            "gc_full_ms": self.ms[2],
        }


def _counting_collections(driver: Any) -> Any:
    """``driver``, its result telling what the collector did while its pipelines ran.

    The scenarios that time one call of ``aiobamboo.bench._run_all`` are counted
    inside it, so that building their trees beforehand is left out, as it is
    of their time; S5 from start to end.
    """
    from aiobamboo import bench

    counted: list[_Collections] = []
    timed = bench._run_all

    async def run_all(*args: Any, **kwargs: Any) -> float:
        with _Collections() as collections:
            counted.append(collections)
            return await timed(*args, **kwargs)

    async def counting(runtime: Any) -> dict[str, Any]:
        bench._run_all = run_all
        try:
            with _Collections() as whole:
                result = dict(await driver(runtime))
        finally:
            bench._run_all = timed
        result.update((counted[0] if len(counted) == 1 else whole).report())
        return result

    return counting


def _observer() -> Any:
    """What ``--observe`` asks the scenarios to run under; None: nothing observes.

    ``tracing`` exports every span to an in-memory exporter, so the figure is
    the engine's own cost of tracing, not an exporter's.
    """
    kind = os.environ.get(OBSERVE_ENV)
    if kind == "tracing":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from aiobamboo.observe.tracing import TracingObserver

        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
        return TracingObserver(provider)
    if kind == "metrics":
        from prometheus_client import CollectorRegistry

        from aiobamboo.observe.metrics import PrometheusObserver

        return PrometheusObserver(CollectorRegistry())
    return None


async def _s7_child(runtime_kind: str, count: int | None, concurrency: int) -> dict[str, Any]:
    from .scenarios import S7_PIPELINES, library, s7

    count = S7_PIPELINES if count is None else count
    if runtime_kind == "sqlite":
        from aiobamboo_sqlite import SQLiteRuntime

        with tempfile.TemporaryDirectory() as tmp:
            async with SQLiteRuntime(os.path.join(tmp, "bench.db"), components=library) as runtime:
                return await s7(runtime, count)
    from aiobamboo_postgres import PostgresRuntime

    schema = "bench_" + uuid.uuid4().hex[:10]
    client = PostgresRuntime(PG_DSN, schema=schema, components=library, worker=False)
    try:
        async with client:  # creates the schema before the worker opens it
            with tempfile.TemporaryDirectory() as tmp:
                log = Path(tmp, "worker.log")
                worker = _start_worker(schema, concurrency, log)
                try:
                    await _worker_ready(worker, log)
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_watch_worker, worker, log)
                        result = await s7(client, count, engine_pid=worker.pid)
                        tg.cancel_scope.cancel()
                finally:
                    worker.terminate()
                    worker.wait()
                result["worker_concurrency"] = concurrency
                return result
    finally:
        await _drop_schema(schema)


def _start_worker(schema: str, concurrency: int, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runtimes")])}
    command = [
        sys.executable, "-m", "aiobamboo.cli", "worker", "--db", PG_DSN, "--schema", schema,
        "--concurrency", str(concurrency), "--import", "benchmarks.worker_components",
    ]  # fmt: skip
    # Appending: the worker's writes never land where this process reads from.
    with open(log, "ab") as out:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)


def _read_log(log: Path) -> str:
    return log.read_text(errors="replace")


async def _worker_ready(worker: subprocess.Popen[bytes], log: Path) -> None:
    """Return once the worker says it runs pipelines (its runtime is open)."""
    with anyio.fail_after(30):
        while "running pipelines" not in _read_log(log):
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited at start:\n{_read_log(log)[-4000:]}")
            await anyio.sleep(0.05)


async def _watch_worker(worker: subprocess.Popen[bytes], log: Path) -> None:
    """Fail the run if the worker dies: the client would otherwise wait for ever."""
    await anyio.to_thread.run_sync(worker.wait, abandon_on_cancel=True)
    raise RuntimeError(f"the worker exited ({worker.returncode}):\n{_read_log(log)[-4000:]}")


def run_child(
    scenario: str,
    runtime_kind: str,
    count: int | None = None,
    concurrency: int = S7_WORKER_CONCURRENCY,
    tree: Path | None = None,
) -> dict[str, Any]:
    """One run of ``scenario`` in a fresh process; ``tree``: the code of another revision."""
    command = [sys.executable, "-m", "benchmarks.run", "--child", scenario]
    command += ["--runtime", runtime_kind, "--worker-concurrency", str(concurrency)]
    if count is not None:
        command += ["--count", str(count)]
    env = None
    if tree is not None:
        # Ahead of the installed (editable) checkout on sys.path: the child, and
        # the worker it may start, import that revision's code only.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "runtimes")])}
    out = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=tree or ROOT, env=env
    )
    if out.returncode != 0:
        raise SystemExit(f"{scenario} on {runtime_kind} failed:\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def checkout(revision: str, into: Path) -> Path:
    """The files of ``revision`` (any git revision) in ``into``, for --compare."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision], cwd=ROOT, capture_output=True, check=False
    )
    if archive.returncode != 0:
        raise SystemExit(f"--compare {revision}: neither a file nor a git revision")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"runs": len(runs)}
    for key in runs[0]:
        values = [r[key] for r in runs]
        summary[key] = statistics.median(values)
    summary["nodes_per_s"] = summary["nodes"] / summary["seconds"]
    return summary


def table(results: dict[str, dict[str, Any]], baseline: dict[str, Any] | None) -> str:
    head = f"{'scenario':<14}{'median s':>10}{'nodes/s':>11}{'peak RSS MB':>13}{'budget s':>10}"
    head += "  extra" if baseline is None else f"{'vs base':>9}{'speed-up':>10}  extra"
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        scenario = name.split("/")[0]
        budget = BUDGETS.get(scenario)
        extra = ", ".join(f"{k}={v:.1f}" for k, v in r.items() if k in EXTRA_KEYS)
        line = (
            f"{name:<14}{r['seconds']:>10.3f}{r['nodes_per_s']:>11.0f}{r['peak_rss_mb']:>13.0f}"
            f"{budget if budget else '-':>10}"
        )
        if baseline is not None:
            base = baseline.get(name)
            ratio = f"{r['seconds'] / base['seconds']:.2f}x" if base else "-"
            faster = f"{base['seconds'] / r['seconds']:.2f}x" if base else "-"
            line += f"{ratio:>9}{faster:>10}"
        lines.append(f"{line}  {extra}")
    return "\n".join(lines)


def s7_table(results: dict[str, dict[str, Any]]) -> str:
    """S7's own table: its figures are phases and memory marks, not one time."""
    head = (
        f"{'scenario':<12}{'pipelines':>10}{'all wait s':>11}{'cb/s':>7}{'p50 ms':>8}"
        f"{'p99 ms':>8}{'done/s':>8}{'total s':>9}{'HWM@10% MB':>12}{'HWM@all MB':>12}"
        f"{'RSS@all MB':>12}{'HWM end MB':>12}  memory of"
    )
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        kind = name.split("/")[1]
        lines.append(
            f"{name:<12}{r['pipelines']:>10,.0f}{r['start_to_all_waiting_s']:>11.1f}"
            f"{r['callbacks_per_s']:>7.0f}{r['callback_p50_ms']:>8.1f}{r['callback_p99_ms']:>8.1f}"
            f"{r['finished_per_s']:>8.0f}"
            f"{r['seconds']:>9.1f}{r['hwm_mark_mb']:>12.0f}{r['hwm_all_waiting_mb']:>12.0f}"
            f"{r['rss_all_waiting_mb']:>12.0f}{r['hwm_end_mb']:>12.0f}  "
            + ("this process" if kind == "sqlite" else "the worker")
        )
    for name, r in results.items():
        kind = name.split("/")[1]
        checks = [
            (
                f"callbacks/s >= {S7_CALLBACKS_PER_S[kind]:,}",
                r["callbacks_per_s"] >= S7_CALLBACKS_PER_S[kind],
            )
        ]
        if kind == "sqlite":
            checks += [
                (f"HWM@all <= {S7_RSS_MB} MB", r["hwm_all_waiting_mb"] <= S7_RSS_MB),
                (
                    f"HWM@all <= {S7_RSS_GROWTH}x HWM@10%",
                    r["hwm_all_waiting_mb"] <= S7_RSS_GROWTH * r["hwm_mark_mb"],
                ),
            ]
        said = ", ".join(f"{what}: {'met' if ok else 'MISSED'}" for what, ok in checks)
        lines.append(f"{name}: {said}")
    return "\n".join(lines)


def _meta(argv: list[str]) -> dict[str, str]:
    """When and on which code a result was measured: the commit, and a digest of
    uncommitted engine changes (results from a tree in flux are then told apart)."""

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=False)
        return out.stdout.decode(errors="replace")

    revision = git("rev-parse", "--short", "HEAD").strip() or "unknown"
    diff = git("diff", "HEAD", "--", "aiobamboo", "runtimes")
    if diff:
        revision += "+" + hashlib.sha1(diff.encode()).hexdigest()[:8]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "revision": revision,
        "command": "python -m benchmarks.run " + " ".join(argv[1:]),
    }


def _measure(
    args: argparse.Namespace, base_tree: Path | None
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """Medians per scenario and runtime; with ``base_tree``, that revision's too.

    The two trees' runs alternate, so both see the same moments of a noisy machine.
    """
    results: dict[str, dict[str, Any]] = {}
    base: dict[str, dict[str, Any]] = {}
    for scenario in args.scenarios:
        for kind in args.runtime:
            name = f"{scenario}/{kind}"
            runs, base_runs = [], []
            for _ in range(args.runs):
                if base_tree is not None:
                    base_runs.append(
                        run_child(scenario, kind, args.count, args.worker_concurrency, base_tree)
                    )
                runs.append(run_child(scenario, kind, args.count, args.worker_concurrency))
            results[name] = summarise(runs)
            said = f"{name}: {results[name]['seconds']:.3f} s"
            if base_runs:
                base[name] = summarise(base_runs)
                said += f" (base {base[name]['seconds']:.3f} s)"
            print(said, file=sys.stderr)
    return results, base


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", default=["S1", "S2", "S3", "S4", "S5", "S6"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--runtime",
        nargs="+",
        default=["sqlite"],
        choices=["sqlite", "postgres", "memory"],
        help="memory: the engine alone, on the in-memory runtime of the tests (S1-S6)",
    )
    parser.add_argument("--save", help="write the results as JSON")
    parser.add_argument(
        "--compare",
        help="a JSON file from --save, or a git revision measured in the same run "
        "(its runs interleaved with this tree's)",
    )
    parser.add_argument(
        "--count", type=int, help="pipelines of S5 and S7 (default 10,000 and 100,000)"
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=S7_WORKER_CONCURRENCY,
        help="--concurrency of the S7 Postgres worker (default: %(default)s)",
    )
    parser.add_argument(
        "--observe",
        choices=["tracing", "metrics"],
        help="run S1-S6 under an observer: tracing to an in-memory exporter, or metrics",
    )
    parser.add_argument(
        "--gc",
        choices=["default", "worker"],
        default="default",
        help="garbage collector settings of each run: Python's (default), or those "
        "aiobamboo worker gives its process",
    )
    parser.add_argument(
        "--gc-stats",
        action="store_true",
        help="add the collector's passes and their milliseconds to each result (this "
        "tree's runs only: a revision compared with reports none)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if "memory" in args.runtime and "S7" in (args.scenarios or []):
        parser.error("S7 measures parked runs, which need storage: run it on sqlite or postgres")
    if args.observe:
        os.environ[OBSERVE_ENV] = args.observe
    if args.gc != "default":
        if args.compare and not os.path.exists(args.compare):
            # A revision's own children may not know the setting: the comparison would not be fair.
            parser.error("--gc worker cannot be used with --compare REVISION")
        os.environ[GC_ENV] = args.gc
    if args.gc_stats:
        os.environ[GC_STATS_ENV] = "1"
    if args.child:
        if os.environ.get(GC_ENV) == "worker":
            from aiobamboo.cli._common import tune_gc

            tune_gc()
        result = anyio.run(_child, args.child, args.runtime[0], args.count, args.worker_concurrency)
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    meta = _meta(sys.argv)  # before the runs: the code they load
    with tempfile.TemporaryDirectory() as tmp:
        base_tree = None
        if args.compare and not os.path.exists(args.compare):
            base_tree = checkout(args.compare, Path(tmp))
        results, base_results = _measure(args, base_tree)
    if base_tree is not None:
        baseline: dict[str, Any] | None = base_results
        meta["compared_with"] = args.compare
    else:
        baseline = json.loads(open(args.compare).read()) if args.compare else None
    others = {k: v for k, v in results.items() if not k.startswith("S7/")}
    if others:
        print(table(others, baseline))
    parked = {k: v for k, v in results.items() if k.startswith("S7/")}
    if parked:
        print(s7_table(parked))
    if args.save:
        saved: dict[str, Any] = {**results, "_meta": meta}
        if base_tree is not None:
            saved["_base"] = base_results
        with open(args.save, "w") as fh:
            json.dump(saved, fh, indent=2)


if __name__ == "__main__":
    main()
