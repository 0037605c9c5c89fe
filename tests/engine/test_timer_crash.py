"""Durability of node timeouts: SIGKILL a worker while deadlines fire; each fires once.

Each pipeline waits at a callback node that times out (forced fail, then skip)
and then runs a logging node. The worker is killed while the deadlines come due;
the reopened file fires those left, and no deadline acts twice: every waiting
node was skipped once, every pipeline finished.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiobamboo import api
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
from aiobamboo_sqlite import SQLiteRuntime

from .crash_components import library

ROOT = Path(__file__).resolve().parents[2]
COUNT = 12
#: Seconds each waiting node may run: the deadlines come due while the child lives.
TIMEOUT = 1


def timed_tree(index: int) -> dict[str, Any]:
    """start -> callback node (times out, skipped) -> logging node -> end."""
    start = EmptyStartEvent()
    wait = ServiceActivity(
        component_code="crash_wait",
        id=f"ewait{index:028d}",
        timeout=TIMEOUT,
        timeout_action="forced_fail_and_skip",
    )
    after = ServiceActivity(component_code="crash_slow", id=f"eaftr{index:028d}")
    start.extend(wait).extend(after).extend(EmptyEndEvent())
    return build_tree(start, id=f"ptime{index:027d}")


def _log(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.slow
async def test_sigkill_while_deadlines_fire_loses_none_and_repeats_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = tmp_path / "timers.db"
    log = tmp_path / "executions.log"
    env = {
        **os.environ,
        "AIOBAMBOO_CRASH_LOG": str(log),
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "runtimes")]),
    }
    child = subprocess.Popen(  # noqa: ASYNC220 - spawning returns at once; the test polls
        [sys.executable, "-m", "tests.engine.timer_crash_child", str(db), str(COUNT)],
        cwd=ROOT,
        env=env,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        # Killed once some deadlines fired (their next node ran), not all.
        while sum(line.startswith("exec eaftr") for line in _log(log)) < 2:
            assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
            assert time.monotonic() < deadline, "the child made no progress"
            await anyio.sleep(0.005)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
        if child.stderr:
            child.stderr.close()

    monkeypatch.setenv("AIOBAMBOO_CRASH_LOG", str(log))
    async with SQLiteRuntime(db, components=library) as runtime:
        with anyio.fail_after(30):
            for i in range(COUNT):
                root = f"ptime{i:027d}"
                waited = await api.wait_pipeline(runtime, root, timeout=20)
                assert waited.data == "FINISHED", waited.message
                wait_id = f"ewait{i:028d}"
                outputs = (await api.get_execution_data_outputs(runtime, wait_id)).data
                assert outputs["_forced_failed"] is True
                assert "timeout" in outputs["ex_data"]
                # Forced to fail and skipped once: one history row, of the failed attempt.
                rows = (await api.get_node_histories(runtime, wait_id)).data
                assert len(rows) == 1, rows
    executions = Counter(line.split()[1] for line in _log(log) if line.startswith("exec"))
    # Each waiting node executed once; each next node once, or twice if the kill caught it.
    assert all(executions[f"ewait{i:028d}"] == 1 for i in range(COUNT)), executions
    assert all(executions[f"eaftr{i:028d}"] in (1, 2) for i in range(COUNT)), executions
