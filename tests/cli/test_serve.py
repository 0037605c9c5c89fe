"""``aiobamboo serve``: the HTTP API in a process of its own, as a worker or as a client."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

FLOWS = textwrap.dedent(
    """
    from aiobamboo.component import Component, Service


    class Approve(Service):
        __need_schedule__ = True

        async def execute(self, data, parent_data):
            data.outputs.waiting = True
            return True

        async def schedule(self, data, parent_data, callback_data=None):
            data.outputs.approved = callback_data
            return True


    class ApproveComponent(Component):
        code = "serve_approve"
        bound_service = Approve
    """
)
TOKEN = "serve-test-token"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Serve:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        (folder / "flows.py").write_text(FLOWS)
        self.env = {**os.environ, "AIOBAMBOO_DB": str(folder / "flows.db")}
        self.env.pop("PYTHONPATH", None)
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "aiobamboo.cli", *args],
            cwd=self.folder,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.procs.append(proc)
        return proc

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aiobamboo.cli", *args],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def stop(self, proc: subprocess.Popen[str]) -> str:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        return out


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Serve]:
    made = Serve(tmp_path)
    yield made
    for proc in made.procs:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def tree() -> tuple[dict[str, Any], str]:
    from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree

    start = EmptyStartEvent()
    node = ServiceActivity(component_code="serve_approve", name="approve")
    start.extend(node).extend(EmptyEndEvent())
    return build_tree(start), node.id


async def wait_up(base: str, proc: subprocess.Popen[str]) -> None:
    async with httpx.AsyncClient(base_url=base) as client:
        with anyio.fail_after(30):
            while True:
                assert proc.poll() is None, proc.communicate()[0]
                try:
                    if (await client.get("/api/openapi.json")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)


async def wait_waiting(client: httpx.AsyncClient, node_id: str) -> None:
    """Until the node runs and its execute stored its outputs: it waits for the callback."""
    with anyio.fail_after(20):
        while True:
            node = (await client.get(f"/api/nodes/{node_id}")).json()
            if node["state"] and node["state"]["state"] == "RUNNING" and node["outputs"]:
                return
            await anyio.sleep(0.02)


async def run_flow_over_http(base: str, *, token: str | None) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    flow, node_id = tree()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=20) as client:
        events: list[dict[str, Any]] = []

        async def follow(ready: anyio.Event) -> None:
            async with client.stream(
                "GET", "/api/events", params={"pipeline_id": flow["id"]}
            ) as stream:
                ready.set()
                async for line in stream.aiter_lines():
                    if line.startswith("data: "):
                        events.append(json.loads(line[6:]))
                        if events[-1]["kind"] == "pipeline_finished":
                            return

        async with anyio.create_task_group() as tg:
            ready = anyio.Event()
            tg.start_soon(follow, ready)
            await ready.wait()
            created = await client.post("/api/pipelines", json={"pipeline": flow})
            assert created.status_code == 201, created.text
            await wait_waiting(client, node_id)
            sent = await client.post(f"/api/nodes/{node_id}/callback", json={"data": "yes"})
            assert sent.status_code == 200, sent.text
            # The follower returns at pipeline_finished; the task group waits for it.
        node = (await client.get(f"/api/nodes/{node_id}")).json()
        assert node["outputs"]["approved"] == "yes"
        assert [e["state"] for e in events if e["node_id"] == node_id] == ["RUNNING", "FINISHED"]


async def test_serve_runs_pipelines_over_http(serve: Serve) -> None:
    port = free_port()
    proc = serve.start("serve", "--import", "flows", "--port", str(port), "--token", TOKEN)
    base = f"http://127.0.0.1:{port}"
    await wait_up(base, proc)
    async with httpx.AsyncClient(base_url=base) as client:
        flow, _ = tree()
        refused = await client.post("/api/pipelines", json={"pipeline": flow})
        assert refused.status_code == 401
    with anyio.fail_after(40):
        await run_flow_over_http(base, token=TOKEN)
    out = serve.stop(proc)
    assert "127.0.0.1" in out


async def test_serve_as_a_client_of_a_worker(serve: Serve) -> None:
    worker = serve.start("worker", "--import", "flows")
    port = free_port()
    proc = serve.start("serve", "--client", "--port", str(port))
    base = f"http://127.0.0.1:{port}"
    await wait_up(base, proc)
    with anyio.fail_after(40):
        await run_flow_over_http(base, token=None)
    serve.stop(proc)
    serve.stop(worker)


def test_serve_refuses_another_address_without_a_token(serve: Serve) -> None:
    done = serve.run("serve", "--host", "0.0.0.0", "--port", str(free_port()))
    assert done.returncode == 2, done.stderr
    assert "without a token" in done.stderr
