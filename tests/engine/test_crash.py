"""Durability: SIGKILL a process mid-run, reopen the file, every pipeline finishes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import anyio
import pytest

from aiobamboo import api
from aiobamboo_sqlite import SQLiteRuntime

from .crash_components import library

ROOT = Path(__file__).resolve().parents[2]
COUNT = 20


def _log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_acks", [3, 12])
async def test_sigkill_mid_run_loses_nothing(
    tmp_path: Path, kill_after_acks: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "crash.db"
    log = tmp_path / "executions.log"
    env = {
        **os.environ,
        "AIOBAMBOO_CRASH_LOG": str(log),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runtimes")]),
    }
    child = subprocess.Popen(  # noqa: ASYNC220 - spawning returns at once; the test polls
        [sys.executable, "-m", "tests.engine.crash_child", str(db), str(COUNT)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while sum(line.startswith("acked") for line in _log(log)) < kill_after_acks:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the child made no progress"
            await anyio.sleep(0.01)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stderr:
            child.stderr.close()

    # What was durable at the moment of the kill.
    with sqlite3.connect(db) as conn:
        finished_at_kill = {
            row[0]
            for row in conn.execute(
                "SELECT node_id FROM states WHERE state = 'FINISHED' AND node_id LIKE 'e%'"
            )
        }
    before = _log(log)
    acked = {line.split()[1] for line in before if line.startswith("acked")}
    assert len(acked) >= kill_after_acks

    monkeypatch.setenv("AIOBAMBOO_CRASH_LOG", str(log))
    async with SQLiteRuntime(db, components=library) as runtime:
        with anyio.fail_after(30):
            for i in range(COUNT):
                root = f"pcrash{i:027d}"
                node_id = f"ewait{i:028d}"
                while True:
                    waited = await api.wait_pipeline(runtime, root, timeout=0.05)
                    if waited.data == "FINISHED":
                        break
                    if node_id in acked:
                        continue
                    states = await api.get_children_states(runtime, root)
                    child_state = states.data and states.data[root]["children"].get(node_id)
                    if child_state and child_state["state"] == "RUNNING":
                        await api.callback(runtime, node_id, child_state["version"], {"n": i})
                        acked.add(node_id)
        for node_id in {line.split()[1] for line in before if line.startswith("acked")}:
            outputs = await api.get_execution_data_outputs(runtime, node_id)
            assert outputs.data["got"] == {"n": int(node_id[5:])}, node_id

    executions = Counter(line.split()[1] for line in _log(log) if line.startswith("exec"))
    # Gateways and events log nothing; every activity logs each execution.
    rerun = [n for n in finished_at_kill if n in executions and executions[n] != 1]
    assert not rerun, f"FINISHED before the kill, executed again: {rerun}"
    # Every activity ran at least once; those running at the kill at most twice.
    assert all(count in (1, 2) for count in executions.values())
    assert len(executions) == COUNT * 7
