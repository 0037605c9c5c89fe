"""Pipelines started and called back over HTTP, next to the same flow in-process.

Over HTTP: ``aiobamboo serve`` on a SQLite file (a process of its own) and
an aiohttp client with 100 connections; each of ``--count`` pipelines is one
activity that waits for a callback: POST /api/pipelines, poll GET
/api/nodes/{id} until it waits, POST /api/nodes/{id}/callback. In-process:
the same calls through ``aiobamboo.api`` on a SQLiteRuntime, 100 at a time.
Prints pipelines per second from the first start to the last FINISHED.

    python -m benchmarks.web_http --count 1000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

FLOWS = textwrap.dedent(
    """
    from aiobamboo.component import Component, Service


    class Wait(Service):
        __need_schedule__ = True

        async def execute(self, data, parent_data):
            data.outputs.waiting = True
            return True

        async def schedule(self, data, parent_data, callback_data=None):
            data.outputs.got = callback_data
            return True


    class WaitComponent(Component):
        code = "bench_http_wait"
        bound_service = Wait
    """
)
CONNECTIONS = 100


def tree() -> tuple[dict[str, Any], str]:
    from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree

    start = EmptyStartEvent()
    node = ServiceActivity(component_code="bench_http_wait")
    start.extend(node).extend(EmptyEndEvent())
    return build_tree(start), node.id


def start_server(folder: Path, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AIOBAMBOO_DB": str(folder / "http.db"), "AIOBAMBOO_LOG": "WARNING"}
    command = ["serve", "--import", "bench_flows", "--port", str(port)]
    return subprocess.Popen([sys.executable, "-m", "aiobamboo.cli", *command], cwd=folder, env=env)


async def over_http(folder: Path, count: int) -> float:
    import aiohttp

    (folder / "bench_flows.py").write_text(FLOWS)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = start_server(folder, port)
    base = f"http://127.0.0.1:{port}"
    try:
        connector = aiohttp.TCPConnector(limit=CONNECTIONS)
        async with aiohttp.ClientSession(base, connector=connector) as session:
            for _ in range(600):
                try:
                    async with session.get("/api/openapi.json") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.05)
            flows = [tree() for _ in range(count)]
            gate = asyncio.Semaphore(CONNECTIONS)

            async def one(flow: dict[str, Any], node_id: str) -> None:
                async with gate:
                    async with session.post("/api/pipelines", json={"pipeline": flow}) as r:
                        assert r.status == 201, await r.text()
                    while True:
                        async with session.get(f"/api/nodes/{node_id}") as r:
                            node = await r.json()
                        state = node["state"] and node["state"]["state"]
                        if node["outputs"].get("waiting") and state == "RUNNING":
                            break
                        await asyncio.sleep(0.01)
                    async with session.post(
                        f"/api/nodes/{node_id}/callback", json={"data": 1}
                    ) as r:
                        assert r.status == 200, await r.text()

            started = time.perf_counter()
            await asyncio.gather(*(one(flow, node_id) for flow, node_id in flows))
            while True:
                async with session.get(
                    "/api/pipelines", params={"state": "FINISHED", "limit": "1000"}
                ) as r:
                    page = await r.json()
                done = len(page["pipelines"]) + (1000 if page["cursor"] else 0)
                if done >= min(count, 1000):
                    break
                await asyncio.sleep(0.01)
            return time.perf_counter() - started
    finally:
        server.terminate()
        server.wait()


async def in_process(folder: Path, count: int) -> float:
    sys.path.insert(0, str(folder))
    (folder / "bench_flows.py").write_text(FLOWS)
    import bench_flows  # noqa: F401 - registers the component

    from aiobamboo import api
    from aiobamboo_sqlite import SQLiteRuntime

    async with SQLiteRuntime(folder / "inproc.db") as runtime:
        flows = [tree() for _ in range(count)]
        gate = asyncio.Semaphore(CONNECTIONS)

        async def one(flow: dict[str, Any], node_id: str) -> None:
            async with gate:
                (await api.run_pipeline(runtime, flow)).unwrap()
                while True:
                    outputs = await api.get_execution_data_outputs(runtime, node_id)
                    if outputs.data and outputs.data.get("waiting"):
                        break
                    await asyncio.sleep(0.01)
                (await api.callback(runtime, node_id, data=1)).unwrap()

        started = time.perf_counter()
        await asyncio.gather(*(one(flow, node_id) for flow, node_id in flows))
        for flow, _ in flows:
            assert (await api.wait_pipeline(runtime, flow["id"], timeout=60)).data == "FINISHED"
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        http = asyncio.run(over_http(Path(folder), args.count))
        local = asyncio.run(in_process(Path(folder), args.count))
    print(f"| flow | {args.count} pipelines, s | pipelines/s |")
    print("|---|---|---|")
    flow = f"HTTP (aiobamboo serve, SQLite, {CONNECTIONS} connections)"
    print(f"| {flow} | {http:.2f} | {args.count / http:.0f} |")
    print(f"| in-process (aiobamboo.api, SQLite) | {local:.2f} | {args.count / local:.0f} |")


if __name__ == "__main__":
    main()
