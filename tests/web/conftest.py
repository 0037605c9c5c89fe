"""Fixtures of the HTTP API tests: a runtime of every kind, client runtimes included,
served by each framework adapter through its test client."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from conftest import RUNTIME_KINDS, _drop_schema, open_runtime
from contract import components, components_flow

from . import components_web

assert components  # registers the test components
assert components_flow
assert components_web

#: Every runtime kind, plus client runtimes (worker=False) whose worker runs beside them.
WEB_RUNTIME_KINDS = [
    *RUNTIME_KINDS,
    "sqlite-client",
    pytest.param("postgres-client", marks=pytest.mark.postgres),
]
FRAMEWORKS = ["starlette", "aiohttp"]


@asynccontextmanager
async def served_runtime(kind: str, tmp_path: Path) -> AsyncIterator[Any]:
    """An open runtime of ``kind``; for a client kind, the client, with a worker open too."""
    async with AsyncExitStack() as stack:
        if kind == "sqlite-client":
            from aiobamboo_sqlite import SQLiteRuntime

            await stack.enter_async_context(SQLiteRuntime(tmp_path / "shared.db"))
            yield await stack.enter_async_context(
                SQLiteRuntime(tmp_path / "shared.db", worker=False)
            )
            return
        if kind == "postgres-client":
            from aiobamboo_postgres import PostgresRuntime

            worker = await open_runtime("postgres", tmp_path)
            stack.push_async_callback(_drop_schema, worker)
            await stack.enter_async_context(worker)
            yield await stack.enter_async_context(
                PostgresRuntime(worker.dsn, schema=worker.schema, worker=False)
            )
            return
        runtime = await open_runtime(kind, tmp_path)
        stack.push_async_callback(_drop_schema, runtime)
        yield await stack.enter_async_context(runtime)


class Http:
    """One interface over httpx's ASGI transport and aiohttp's test client."""

    def __init__(self, framework: str, client: Any) -> None:
        self.framework = framework
        self.client = client

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
    ) -> tuple[int, Any]:
        body = (
            content
            if content is not None
            else (b"" if json_body is None else json.dumps(json_body).encode())
        )
        headers = {"Content-Type": "application/json", **(headers or {})}
        if self.framework == "starlette":
            response = await self.client.request(
                method, path, content=body, headers=headers, params=params
            )
            status, text = response.status_code, response.text
        else:
            async with self.client.request(
                method, path, data=body, headers=headers, params=params
            ) as response:
                status, text = response.status, await response.text()
        return status, (json.loads(text) if text else None)

    async def raw(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, str, str]:
        """Status, content type and body text of a GET whose body ends."""
        if self.framework == "starlette":
            response = await self.client.get(path, headers=headers)
            return response.status_code, response.headers["content-type"], response.text
        async with self.client.get(path, headers=headers) as response:
            return response.status, response.headers["Content-Type"], await response.text()

    async def get(self, path: str, **params: str) -> Any:
        status, body = await self.request("GET", path, params=params or None)
        assert status == 200, (status, body)
        return body

    async def post(self, path: str, body: Any = None, expected: int = 200, **kw: Any) -> Any:
        status, answer = await self.request("POST", path, json_body=body, **kw)
        assert status == expected, (status, answer)
        return answer


@asynccontextmanager
async def http_client(framework: str, runtime: Any, **options: Any) -> AsyncIterator[Http]:
    if framework == "starlette":
        import httpx

        from aiobamboo.web import create_asgi_app

        transport = httpx.ASGITransport(app=create_asgi_app(runtime, **options))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Http(framework, client)
    else:
        from aiohttp.test_utils import TestClient, TestServer

        from aiobamboo.web import create_aiohttp_app

        async with TestClient(TestServer(create_aiohttp_app(runtime, **options))) as client:
            yield Http(framework, client)


@pytest.fixture(params=WEB_RUNTIME_KINDS)
def web_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=FRAMEWORKS)
def framework(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def web_runtime(web_kind: str, tmp_path: Path) -> AsyncIterator[Any]:
    async with served_runtime(web_kind, tmp_path) as runtime:
        yield runtime


@pytest.fixture
async def http(framework: str, web_runtime: Any) -> AsyncIterator[Http]:
    async with http_client(framework, web_runtime) as client:
        yield client


async def poll(check: Any, within: float = 10.0, what: str = "condition") -> Any:
    """Call ``check()`` until it returns something truthy; fail after ``within`` seconds."""
    with anyio.fail_after(within):
        while True:
            value = await check()
            if value:
                return value
            await anyio.sleep(0.01)
    raise AssertionError(what)
