"""Every example under examples/ runs as its docstring says."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def examples_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))


async def test_fastapi_example(
    examples_importable: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import httpx

    monkeypatch.setenv("ORDERS_DB", str(tmp_path / "orders.db"))
    monkeypatch.setenv("AIOBAMBOO_TOKEN", "example-token")
    sys.modules.pop("fastapi_app", None)
    module: Any = importlib.import_module("fastapi_app")
    transport = httpx.ASGITransport(app=module.app)
    # The lifespan as a server runs it: the runtime opens, and closes at the end.
    async with (
        module.app.router.lifespan_context(module.app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        placed = await client.post("/orders", json={"item": "tea", "quantity": 3})
        assert placed.status_code == 201, placed.text
        order = placed.json()
        approval = f"/bamboo/api/nodes/{order['approval_node_id']}"
        with anyio.fail_after(15):
            await until(client, approval, lambda node: node["outputs"].get("waiting_for"))
            unauthorized = await client.post(
                f"{approval}/callback", json={"data": {"approved": True}}
            )
            assert unauthorized.status_code == 401
            approved = await client.post(
                f"{approval}/callback",
                json={"data": {"approved": True}},
                headers={"Authorization": "Bearer example-token"},
            )
            assert approved.status_code == 200, approved.text
            await until(
                client, f"/orders/{order['pipeline_id']}", lambda s: s["state"] == "FINISHED"
            )
        tree = (await client.get(f"/bamboo/api/pipelines/{order['pipeline_id']}")).json()
        names = {child["name"]: child["state"] for child in tree["children"].values()}
        assert names == {
            "order placed": "FINISHED",
            "reserve": "FINISHED",
            "approval": "FINISHED",
            "ship": "FINISHED",
            "done": "FINISHED",
        }


async def until(client: Any, path: str, check: Any) -> Any:
    """GET ``path`` until ``check(body)`` holds (the caller bounds the time)."""
    while True:
        response = await client.get(path)
        body = response.json()  # a coroutine for aiohttp, the value for httpx
        if inspect.isawaitable(body):
            body = await body
        if check(body):
            return body
        await anyio.sleep(0.01)


async def test_aiohttp_example(examples_importable: None, tmp_path: Path) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    sys.modules.pop("aiohttp_app", None)
    module: Any = importlib.import_module("aiohttp_app")
    app = module.create_app(str(tmp_path / "orders.db"))
    async with TestClient(TestServer(app)) as client:  # runs cleanup_ctx: the runtime opens
        placed = await client.post("/orders", json={"item": "tea", "quantity": 3})
        assert placed.status == 201
        order = await placed.json()
        approval = f"/bamboo/api/nodes/{order['approval_node_id']}"
        with anyio.fail_after(15):
            await until(client, approval, lambda node: node["outputs"].get("waiting_for"))
            answer = await client.post(f"{approval}/callback", json={"data": {"approved": True}})
            assert answer.status == 200, await answer.text()
            status = await until(
                client, f"/orders/{order['pipeline_id']}", lambda s: s["state"] == "FINISHED"
            )
        assert status["archived_time"].endswith("+00:00")  # ISO 8601 from json_dumps


def test_signed_callback_example(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "signed_callback.py"), "--db", str(tmp_path / "p.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, (done.stdout, done.stderr)
    assert "answered 200" in done.stdout
    assert "FINISHED; payment {'status': 'paid'" in done.stdout
