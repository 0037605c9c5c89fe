"""Chaos: 3 worker processes, one Postgres, 300 pipelines; workers are SIGKILLed mid-run.

Every pipeline finishes, no node that was FINISHED when a worker died runs
again, every acknowledged callback takes effect, and the nodes that ran twice
(the at-least-once window) are bounded by the nodes in flight at the kills.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiobamboo import api
from conftest import PG_DSN, require_postgres

from .chaos_components import ACTIVITIES, build, callback_node_id, root_id

ROOT = Path(__file__).resolve().parents[2]
PIPELINES = 300
LEASE = 2.0

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class Workers:
    def __init__(self, schema: str, log: Path, tmp: Path, lease: float = LEASE) -> None:
        self.schema, self.log, self.tmp, self.lease = schema, log, tmp, lease
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []

    def start(self) -> subprocess.Popen[bytes]:
        # ROOT first, so the workers run this checkout's code whatever else is on the path.
        path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, "AIOBAMBOO_CHAOS_LOG": str(self.log), "PYTHONPATH": path}
        err = open(self.tmp / f"worker{len(self.procs)}.log", "wb")
        self.logs.append(err)
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "aiobamboo.cli", "worker", "--db", PG_DSN,
                "--schema", self.schema, "--import", "tests.scaleout.chaos_components",
                "--lease-seconds", str(self.lease),
            ],
            cwd=ROOT, env=env, stdout=err, stderr=err,
        )  # fmt: skip
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            proc.wait()
        for log in self.logs:
            log.close()


async def _snapshot(client: Any) -> tuple[float, set[str], int]:
    """(time, activities FINISHED, activities RUNNING) as the database has them now."""
    at = time.time()
    async with client.pool.acquire() as conn:
        rows = await conn.fetch(
            f'SELECT node_id, state FROM "{client.schema}".states WHERE node_id LIKE $1',
            "e%",
        )
    finished = {r["node_id"] for r in rows if r["state"] == "FINISHED"}
    running = sum(r["state"] == "RUNNING" for r in rows)
    return at, finished, running


def _executions(log: Path) -> list[tuple[float, str]]:
    out = []
    for line in log.read_text().splitlines() if log.exists() else []:
        stamp, kind, node_id, *_ = line.split()
        if kind == "exec":
            out.append((float(stamp), node_id))
    return out


async def _until_executions(log: Path, count: int) -> None:
    """Poll the log (written by other processes: there is no event to wait on)."""
    while len(_executions(log)) < count:  # noqa: ASYNC110
        await anyio.sleep(0.05)


async def _send_callbacks(client: Any, acked: dict[str, dict[str, int]], stop: anyio.Event) -> None:
    pending = set(range(PIPELINES))
    while pending and not stop.is_set():
        for index in sorted(pending):
            node_id = callback_node_id(index)
            states = await api.get_children_states(client, node_id)
            node = (states.data or {}).get(node_id)
            if node and node["state"] == "RUNNING":
                data = {"n": index}
                sent = await api.callback(client, node_id, node["version"], data)
                if sent.result:
                    acked[node_id] = data
                    pending.discard(index)
            elif node and node["state"] == "FINISHED":
                pending.discard(index)
        await anyio.sleep(0.05)


async def test_workers_killed_mid_run_lose_nothing(tmp_path: Path) -> None:
    await require_postgres()
    from aiobamboo_postgres import PostgresRuntime

    schema = "chaos_" + uuid.uuid4().hex[:10]
    log = tmp_path / "executions.log"
    workers = Workers(schema, log, tmp_path)
    client = PostgresRuntime(PG_DSN, schema=schema, worker=False)
    acked: dict[str, dict[str, int]] = {}
    snapshots: list[tuple[float, set[str], int]] = []
    try:
        async with client:
            for _ in range(3):
                workers.start()
            async with anyio.create_task_group() as tg:
                for index in range(PIPELINES):
                    tg.start_soon(api.run_pipeline, client, build(index))
            stop = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_send_callbacks, client, acked, stop)
                with anyio.fail_after(120):
                    # Kill one worker once work is under way, later another, then replace.
                    await _until_executions(log, PIPELINES)
                    workers.procs[0].send_signal(signal.SIGKILL)
                    snapshots.append(await _snapshot(client))
                    await _until_executions(log, PIPELINES * 3)
                    workers.procs[1].send_signal(signal.SIGKILL)
                    snapshots.append(await _snapshot(client))
                    workers.start()
                    for index in range(PIPELINES):
                        waited = await api.wait_pipeline(client, root_id(index), timeout=100)
                        assert waited.data == "FINISHED", (index, waited.message)
                stop.set()
            for node_id, data in acked.items():
                outputs = await api.get_execution_data_outputs(client, node_id)
                assert outputs.data["got"] == data, node_id
            async with client.pool.acquire() as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        workers.stop_all()

    executions = _executions(log)
    counts = Counter(node_id for _, node_id in executions)
    assert len(counts) == PIPELINES * ACTIVITIES
    for at, finished, _ in snapshots:
        again = {n for stamp, n in executions if stamp > at and n in finished}
        assert not again, f"FINISHED before a kill, executed again: {sorted(again)[:5]}"
    rerun = sum(counts.values()) - len(counts)
    in_flight = sum(running for _, _, running in snapshots)
    print(f"\nchaos: {len(executions)} executions, {rerun} re-run, {in_flight} in flight at kills")
    assert rerun <= in_flight
