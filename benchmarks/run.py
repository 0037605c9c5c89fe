"""Run the benchmark scenarios and print a table.

    python -m benchmarks.run                       # every scenario, SQLite, 3 runs each
    python -m benchmarks.run S1 S2 --runs 5
    python -m benchmarks.run --runtime sqlite postgres
    python -m benchmarks.run --save benchmarks/results/base.json
    python -m benchmarks.run --compare benchmarks/results/base.json

Each run is a fresh child process with a fresh database, so peak RSS is that
scenario's own. Times are medians; compare ratios within one run of this
script, since the machines are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import uuid
from typing import Any

import anyio

BUDGETS = {"S1": 0.5, "S2": 1.0, "S3": 0.1, "S4": 1.5, "S6": 2.0}
EXTRA_KEYS = ("callbacks_per_s", "callback_p50_ms", "callback_p99_ms", "start_to_all_waiting_s")
PG_DSN = os.environ.get("AIOBAMBOO_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


async def _child(scenario: str, runtime_kind: str) -> dict[str, Any]:
    from aiobamboo.engine import Settings

    from .scenarios import SCENARIOS, library

    settings = Settings(rerun_limit=10_000)
    if runtime_kind == "sqlite":
        from aiobamboo_sqlite import SQLiteRuntime

        with tempfile.TemporaryDirectory() as tmp:
            async with SQLiteRuntime(
                os.path.join(tmp, "bench.db"), components=library, settings=settings
            ) as runtime:
                return await SCENARIOS[scenario](runtime)
    from aiobamboo_postgres import PostgresRuntime

    schema = "bench_" + uuid.uuid4().hex[:10]
    runtime = PostgresRuntime(PG_DSN, schema=schema, components=library, settings=settings)
    try:
        async with runtime:
            return await SCENARIOS[scenario](runtime)
    finally:
        import asyncpg

        conn = await asyncpg.connect(PG_DSN)
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()


def run_child(scenario: str, runtime_kind: str) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--child", scenario, "--runtime", runtime_kind],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"{scenario} on {runtime_kind} failed:\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"runs": len(runs)}
    for key in runs[0]:
        values = [r[key] for r in runs]
        summary[key] = statistics.median(values)
    summary["nodes_per_s"] = summary["nodes"] / summary["seconds"]
    return summary


def table(results: dict[str, dict[str, Any]], baseline: dict[str, Any] | None) -> str:
    head = f"{'scenario':<14}{'median s':>10}{'nodes/s':>11}{'peak RSS MB':>13}{'budget s':>10}"
    head += "  extra" if baseline is None else f"{'vs base':>9}  extra"
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
            line += f"{ratio:>9}"
        lines.append(f"{line}  {extra}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", default=["S1", "S2", "S3", "S4", "S5", "S6"])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--runtime", nargs="+", default=["sqlite"], choices=["sqlite", "postgres"])
    parser.add_argument("--save", help="write the results as JSON")
    parser.add_argument("--compare", help="a JSON file from --save to compare against")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = anyio.run(_child, args.child, args.runtime[0])
        result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    results: dict[str, dict[str, Any]] = {}
    for scenario in args.scenarios:
        for kind in args.runtime:
            runs = [run_child(scenario, kind) for _ in range(args.runs)]
            results[f"{scenario}/{kind}"] = summarise(runs)
            print(
                f"{scenario}/{kind}: {results[f'{scenario}/{kind}']['seconds']:.3f} s",
                file=sys.stderr,
            )
    baseline = json.loads(open(args.compare).read()) if args.compare else None
    print(table(results, baseline))
    if args.save:
        with open(args.save, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
