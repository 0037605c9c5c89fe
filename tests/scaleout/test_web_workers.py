"""``aiobamboo serve --workers 2`` on one SQLite file: one process drives, the other takes over."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from test_serve import FLOWS, free_port, tree

PIPELINES = 200


def lock_holders(lock: Path) -> set[int]:
    """The processes holding a flock on ``lock`` (from /proc/locks)."""
    inode = os.stat(lock).st_ino
    holders = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF" (a waiter has "->" after the number)
        if "FLOCK" in fields:
            at = fields.index("FLOCK")
            pid, device = fields[at + 3], fields[at + 4]
            if device.rsplit(":", 1)[-1] == str(inode):
                holders.add(int(pid))
    return holders


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    (tmp_path / "flows.py").write_text(FLOWS)
    env = {**os.environ, "AIOBAMBOO_DB": str(tmp_path / "flows.db"), "AIOBAMBOO_LOG": "WARNING"}
    env.pop("PYTHONPATH", None)
    port = free_port()
    log = open(tmp_path / "serve.log", "w")  # closed once the process has ended
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "aiobamboo.cli",
            "serve",
            "--import",
            "flows",
            "--workers",
            "2",
            "--port",
            str(port),
        ],
        cwd=tmp_path,
        env=env,
        # A file, not a pipe: nobody reads the output while the test runs, and a
        # full pipe would block the server's processes on their next log line.
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", proc, tmp_path / "flows.db.lock"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


async def request(client: httpx.AsyncClient, method: str, path: str, **kw: Any) -> httpx.Response:
    """One request; a connection the killed process dropped is sent again."""
    for _ in range(50):
        try:
            return await client.request(method, path, **kw)
        except httpx.TransportError:
            await anyio.sleep(0.05)
    raise AssertionError(f"{method} {path}: no process answered")


async def all_waiting(client: httpx.AsyncClient, nodes: list[str]) -> None:
    pending = set(nodes)
    with anyio.fail_after(60):
        while pending:
            for node_id in list(pending):
                node = (await request(client, "GET", f"/api/nodes/{node_id}")).json()
                if node["state"] and node["state"]["state"] == "RUNNING" and node["outputs"]:
                    pending.discard(node_id)
            await anyio.sleep(0.05)


async def test_two_web_processes_on_one_file_survive_killing_the_driver(
    served: tuple[str, subprocess.Popen[str], Path],
) -> None:
    base, proc, lock = served
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        with anyio.fail_after(30):
            while True:
                assert proc.poll() is None, (proc.args, "exited; see serve.log beside the db")
                try:
                    if (await client.get("/api/openapi.json")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)
        flows = [tree() for _ in range(PIPELINES)]

        async def start(flow: dict[str, Any]) -> None:
            answer = await request(client, "POST", "/api/pipelines", json={"pipeline": flow})
            assert answer.status_code == 201, answer.text

        async with anyio.create_task_group() as tg:
            for flow, _ in flows:
                tg.start_soon(start, flow)
        nodes = [node_id for _, node_id in flows]
        await all_waiting(client, nodes)

        # Half are called back, then the driving process dies.
        async def call_back(node_id: str) -> None:
            answer = await request(
                client, "POST", f"/api/nodes/{node_id}/callback", json={"data": node_id}
            )
            assert answer.status_code == 200, answer.text

        async with anyio.create_task_group() as tg:
            for node_id in nodes[: PIPELINES // 2]:
                tg.start_soon(call_back, node_id)
        (driver,) = lock_holders(lock)
        assert driver != proc.pid  # a web worker process, not the supervisor
        os.kill(driver, signal.SIGKILL)
        killed = time.monotonic()
        with anyio.fail_after(10):
            while True:
                holders = lock_holders(lock) - {driver}
                if holders:
                    break
                await anyio.sleep(0.02)
        took = time.monotonic() - killed
        assert took < 2.0, f"the takeover took {took:.2f} s"

        async with anyio.create_task_group() as tg:
            for node_id in nodes[PIPELINES // 2 :]:
                tg.start_soon(call_back, node_id)

        async def finished(flow: dict[str, Any], node_id: str) -> None:
            with anyio.fail_after(60):
                while True:
                    body = (await request(client, "GET", f"/api/pipelines/{flow['id']}")).json()
                    if body["state"] == "FINISHED":
                        break
                    await anyio.sleep(0.05)
            node = (await request(client, "GET", f"/api/nodes/{node_id}")).json()
            assert node["outputs"]["approved"] == node_id

        async with anyio.create_task_group() as tg:
            for flow, node_id in flows:
                tg.start_soon(finished, flow, node_id)
