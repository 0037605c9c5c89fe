"""Scale-out: S2 and S4 on Postgres with 1, 2 and 4 worker processes.

    python -m benchmarks.scaling                  # workers 1 2 4, S2 and S4, 3 runs each
    python -m benchmarks.scaling --workers 1 2 --runs 1

A client process (this one, ``worker=False``) starts the pipelines; separate
``aiobamboo worker`` processes claim and run them. Time runs from the first
``run_pipeline`` until the database shows every run finished.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import asyncpg

from aiobamboo import api
from aiobamboo_postgres import PostgresRuntime

from .scenarios import seventeen, single

ROOT = Path(__file__).resolve().parents[1]
PG_DSN = os.environ.get("AIOBAMBOO_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
SHAPES = {
    "S2": lambda: [seventeen() for _ in range(100)],
    "S4": lambda: [single() for _ in range(1000)],
}


def _start_workers(count: int, schema: str) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runtimes")])}
    command = [
        sys.executable, "-m", "aiobamboo.cli", "worker", "--db", PG_DSN, "--schema", schema,
        "--import", "benchmarks.worker_components",
    ]  # fmt: skip
    return [
        subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        for _ in range(count)
    ]


async def _finished(conn: Any, schema: str) -> int:
    return int(
        await conn.fetchval(f"SELECT count(*) FROM \"{schema}\".runs WHERE status = 'finished'")
    )


async def _one(shape: str, workers: int) -> dict[str, float]:
    schema = "scale_" + uuid.uuid4().hex[:10]
    built = SHAPES[shape]()
    client = PostgresRuntime(PG_DSN, schema=schema, worker=False)
    procs: list[subprocess.Popen[bytes]] = []
    conn = await asyncpg.connect(PG_DSN)
    try:
        async with client:  # creates the schema before the workers start
            procs = _start_workers(workers, schema)
            await anyio.sleep(1.0)  # let them connect and LISTEN
            began = time.perf_counter()
            async with anyio.create_task_group() as tg:
                for tree, _ in built:
                    tg.start_soon(api.run_pipeline, client, tree)
            with anyio.fail_after(300):
                while await _finished(conn, schema) < len(built):  # noqa: ASYNC110 - other processes
                    await anyio.sleep(0.02)
            seconds = time.perf_counter() - began
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait()
        await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await conn.close()
    nodes = sum(n for _, n in built)
    return {
        "seconds": seconds,
        "nodes_per_s": nodes / seconds,
        "pipelines_per_s": len(built) / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--shapes", nargs="+", default=["S2", "S4"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"{'scenario':<10}{'workers':>8}{'median s':>10}{'nodes/s':>10}{'pipelines/s':>13}")
    for shape in args.shapes:
        for workers in args.workers:
            runs = [anyio.run(_one, shape, workers) for _ in range(args.runs)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(
                f"{shape:<10}{workers:>8}{med['seconds']:>10.3f}{med['nodes_per_s']:>10.0f}"
                f"{med['pipelines_per_s']:>13.0f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
