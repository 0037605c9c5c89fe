"""``aiobamboo worker --metrics-port``: scrape ``/metrics`` of a worker process after a run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aiobamboo import api
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, Var, build_tree
from aiobamboo_sqlite import SQLiteRuntime

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[tuple[Path, int, Path]]:
    db, port, log = tmp_path / "flows.db", _free_port(), tmp_path / "worker.log"
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "aiobamboo.cli", "worker", "--db", str(db),
                "--import", "tests.contract.components", "--metrics-port", str(port),
                "--metrics-addr", "127.0.0.1", "--log-format", "json",
            ],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": path}, stdout=out, stderr=out,
        )  # fmt: skip
        try:
            yield db, port, log
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _logged(log: Path) -> bytes:
    return log.read_bytes() if log.exists() else b""


async def _running(log: Path) -> None:
    """Wait until the worker says it runs pipelines (its runtime is open)."""
    with anyio.fail_after(20):
        # Another process writes the log: there is no event to await.
        while b"running pipelines" not in _logged(log):  # noqa: ASYNC110
            await anyio.sleep(0.05)


def _tree(*codes_and_inputs: tuple[str, dict[str, object]]) -> dict[str, object]:
    start = EmptyStartEvent()
    current = start
    for code, inputs in codes_and_inputs:
        node = ServiceActivity(component_code=code)
        for key, value in inputs.items():
            node.component.inputs[key] = Var(Var.PLAIN, value)
        current = current.extend(node)
    current.extend(EmptyEndEvent())
    return build_tree(start)


async def test_scrape_a_workers_metrics_after_a_run(worker: tuple[Path, int, Path]) -> None:
    db, port, log = worker
    await _running(log)
    async with SQLiteRuntime(db, worker=False) as client:
        good = [_tree(("echo", {"text": "a"}), ("sync_echo", {"text": "b"})) for _ in range(3)]
        bad = _tree(("fail", {"raise": True}))
        for tree in [*good, bad]:
            assert (await api.run_pipeline(client, tree)).result
        for tree in good:
            waited = await api.wait_pipeline(client, str(tree["id"]), timeout=20)
            assert waited.data == "FINISHED", waited.message
        waited = await api.wait_pipeline(client, str(bad["id"]), timeout=20)
        assert waited.data == "FAILED", waited.message
    samples = await anyio.to_thread.run_sync(_scrape, port)

    def get(name: str, **labels: str) -> float:
        return samples.get((name, tuple(sorted(labels.items()))), 0.0)

    assert get("aiobamboo_node_executions_total", code="echo", outcome="success") == 3
    assert get("aiobamboo_node_executions_total", code="sync_echo", outcome="success") == 3
    assert get("aiobamboo_node_executions_total", code="fail", outcome="raised") == 1
    assert get("aiobamboo_node_execute_seconds_count", code="echo") == 3
    assert get("aiobamboo_pipelines_finished_total") == 3
    assert get("aiobamboo_pipelines_failed_total") == 1
    assert get("aiobamboo_nodes_failed_total", type="ServiceActivity", code="fail") == 1
    # The client started the runs; the worker claimed and loaded them.
    assert get("aiobamboo_pipelines_started_total") == 0
    assert get("aiobamboo_runs_loaded_total") == 4
    assert get("aiobamboo_commit_group_size_count") > 0
    assert get("aiobamboo_commit_seconds_count") > 0
    # Only the failed run is still in memory (it would park after half a second).
    assert get("aiobamboo_runs_in_memory") <= 1
    for family in (
        "aiobamboo_pipelines_revoked_total",
        "aiobamboo_runs_parked_total",
        "aiobamboo_timers_fired_total",
    ):
        assert (family, ()) in samples, family
    assert b'"logger": "aiobamboo.worker"' in _logged(log)
