"""The Python code blocks of the guides run, page by page, as the reader would run them.

Every page of ``docs/`` with a Python block is run; a block indented inside a
list item is an excerpt of the one before it and is not run on its own.

The blocks of one page run in order in one namespace, with top-level
``await`` allowed, in a fresh current directory. A page whose blocks operate
an existing pipeline gets it from a setup of its own (``SETUPS``), which
provides the names the page assumes (``runtime``, ``node_id``, ...).
"""

from __future__ import annotations

import ast
import gc
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from types import CodeType
from typing import Any

import anyio
import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.DOTALL | re.MULTILINE)

Setup = Callable[[], Any]


def blocks(page: str) -> list[str]:
    return BLOCK.findall((DOCS / page).read_text())


def _compile(source: str, page: str, index: int) -> CodeType:
    return compile(source, f"{page}#block{index + 1}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


async def _run_blocks(page: str, namespace: dict[str, Any]) -> None:
    for index, source in enumerate(blocks(page)):
        code = _compile(source, page, index)
        # anyio.run inside a block needs a thread without a running loop.
        if "anyio.run(" in source:
            await anyio.to_thread.run_sync(exec, code, namespace)
            continue
        result = eval(code, namespace)
        if isinstance(result, Awaitable):
            await result


@asynccontextmanager
async def _operating() -> AsyncIterator[dict[str, Any]]:
    """operating.md assumes an open runtime and a pipeline whose node waits for a callback."""
    from aiobamboo import api
    from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
    from aiobamboo.component import Component, ComponentLibrary, Service
    from aiobamboo.testing import MemoryRuntime

    class Approve(Service):
        __need_schedule__ = True

        async def execute(self, data: Any, parent_data: Any) -> bool:
            data.outputs.asked = True
            return True

        async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
            data.outputs.answer = callback_data
            return True

    class ApproveComponent(Component):
        code = "approve"
        bound_service = Approve
        auto_register = False

    library = ComponentLibrary()
    library.register(ApproveComponent)
    start = EmptyStartEvent()
    node = ServiceActivity(component_code="approve", name="approve")
    start.extend(node).extend(EmptyEndEvent())
    tree = build_tree(start)
    async with MemoryRuntime(components=library) as runtime:
        (await api.run_pipeline(runtime, tree)).unwrap()
        with anyio.fail_after(10):
            while True:  # until its execute() ran and it waits for the callback
                if (await api.get_execution_data_outputs(runtime, node.id)).data:
                    break
                await anyio.sleep(0.01)
        yield {"runtime": runtime, "pipeline_id": tree["id"], "node_id": node.id, "api": api}


@asynccontextmanager
async def _events() -> AsyncIterator[dict[str, Any]]:
    """events.md follows a pipeline to its end: one that finishes once the page subscribed."""
    from aiobamboo import api as real_api

    async with _operating() as names:
        runtime, node_id = names["runtime"], names["node_id"]
        subscribed = anyio.Event()

        class Api:
            """``aiobamboo.api``, telling the setup when the page has subscribed."""

            def __getattr__(self, name: str) -> Any:
                return getattr(real_api, name)

            @asynccontextmanager
            async def subscribe(self, *args: Any, **kwargs: Any) -> AsyncIterator[Any]:
                async with real_api.subscribe(*args, **kwargs) as events:
                    subscribed.set()
                    yield events

        async def answer() -> None:
            await subscribed.wait()
            (await real_api.callback(runtime, node_id, data={"ok": True})).unwrap()

        async with anyio.create_task_group() as tg:
            tg.start_soon(answer)
            yield {**names, "api": Api()}


@asynccontextmanager
async def _testing() -> AsyncIterator[dict[str, Any]]:
    """testing.md's blocks use the reader's component library."""
    from aiobamboo.component import ComponentLibrary

    yield {"library": ComponentLibrary()}


@asynccontextmanager
async def _web() -> AsyncIterator[dict[str, Any]]:
    """web.md's blocks are excerpts of the files in examples/ (which a test runs whole):
    they get the imports and the names those files define before them."""
    import os
    from contextlib import asynccontextmanager as acm

    from aiohttp import web
    from fastapi import FastAPI

    from aiobamboo.component import Service
    from aiobamboo.web import create_aiohttp_app, create_asgi_app
    from aiobamboo_sqlite import SQLiteRuntime

    secret = "AIOBAMBOO_CALLBACK_SECRET"
    had = os.environ.get(secret)
    os.environ[secret] = "a secret for the docs test"
    try:
        yield {
            "os": os,
            "asynccontextmanager": acm,
            "web": web,
            "FastAPI": FastAPI,
            "Service": Service,
            "SQLiteRuntime": SQLiteRuntime,
            "create_asgi_app": create_asgi_app,
            "create_aiohttp_app": create_aiohttp_app,
            "runtime": SQLiteRuntime("flows.db"),
            "token": "a long random string",
        }
    finally:
        if had is None:
            del os.environ[secret]
        else:
            os.environ[secret] = had


@asynccontextmanager
async def _observability() -> AsyncIterator[dict[str, Any]]:
    """observability.md explains operating.md's waiting pipeline, and builds runtimes
    (not opened); its metrics server is not started, so no port is taken."""
    from unittest import mock

    from aiobamboo_postgres import PostgresRuntime
    from aiobamboo_sqlite import SQLiteRuntime

    with mock.patch("aiobamboo.observe.metrics.serve_metrics"):
        async with _operating() as names:
            yield {
                **names,
                "SQLiteRuntime": SQLiteRuntime,
                "PostgresRuntime": PostgresRuntime,
                "dsn": "postgresql://postgres@127.0.0.1:5432/test",
            }


@asynccontextmanager
async def _rollback() -> AsyncIterator[dict[str, Any]]:
    """rollback.md's pipeline, create_host, configure, deploy, has failed at deploy; its
    create_host node runs a service like the page's CreateHost, on a fake cloud."""
    from aiobamboo import api
    from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
    from aiobamboo.component import Component, ComponentLibrary, Service
    from aiobamboo.testing import MemoryRuntime

    class Cloud:
        hosts = 0

        async def create_host(self) -> str:
            self.hosts += 1
            return f"host-{self.hosts}"

        async def delete_host(self, host_id: str) -> None:
            self.hosts -= 1

    cloud = Cloud()

    class CreateHost(Service):
        async def execute(self, data: Any, parent_data: Any) -> bool:
            data.outputs.host_id = await cloud.create_host()
            return True

        async def rollback(self, data: Any, parent_data: Any, retry_data: Any = None) -> bool:
            await cloud.delete_host(data.outputs.host_id)
            return True

    class Configure(Service):
        async def execute(self, data: Any, parent_data: Any) -> bool:
            return True

    class Deploy(Service):
        async def execute(self, data: Any, parent_data: Any) -> bool:
            return False

    library = ComponentLibrary()
    for code, service in (
        ("create_host", CreateHost),
        ("configure", Configure),
        ("deploy", Deploy),
    ):
        component = type(
            f"{code}_component", (Component,), {"code": code, "bound_service": service}
        )
        library.register(component)
    start = EmptyStartEvent()
    create_host = ServiceActivity(component_code="create_host")
    deploy = ServiceActivity(component_code="deploy")
    configure = ServiceActivity(component_code="configure")
    start.extend(create_host).extend(configure).extend(deploy).extend(EmptyEndEvent())
    tree = build_tree(start)
    async with MemoryRuntime(components=library) as runtime:
        (await api.run_pipeline(runtime, tree)).unwrap()
        with anyio.fail_after(10):
            while True:  # until deploy has failed
                found = (await api.get_children_states(runtime, deploy.id)).data or {}
                if found.get(deploy.id, {}).get("state") == "FAILED":
                    break
                await anyio.sleep(0.01)
        yield {
            "runtime": runtime,
            "root_id": tree["id"],
            "deploy": deploy,
            "create_host": create_host,
            "cloud": cloud,
        }
        assert cloud.hosts == 0, "the rollback did not delete the host create_host made"


SETUPS: dict[str, Callable[[], Any]] = {
    "rollback.md": _rollback,
    "observability.md": _observability,
    "operating.md": _operating,
    "web.md": _web,
    "events.md": _events,
    "testing.md": _testing,
}

#: The pages whose Python blocks this test runs: every page that has any.
#: Pages whose blocks a test of their own runs (in a fresh directory, as the page says).
OWN_TESTS = {"migrating-from-bamboo.md"}
PAGES = sorted(
    p.name for p in DOCS.glob("*.md") if p.name not in OWN_TESTS and BLOCK.search(p.read_text())
)


@pytest.mark.parametrize("page", PAGES)
async def test_the_code_of_the_page_runs(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert blocks(page), f"{page} has no Python block"
    monkeypatch.chdir(tmp_path)
    # The page's components register in a default library of its own, as in a
    # fresh process: codes the tests use elsewhere do not collide with the page's.
    from aiobamboo.component import ComponentLibrary

    monkeypatch.setattr(ComponentLibrary, "default", ComponentLibrary())
    # A page may tune the garbage collector (aiobamboo.tune_gc), as a process
    # of its own would: the settings go back for the tests that follow.
    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    try:
        setup = SETUPS.get(page)
        if setup is None:
            await _run_blocks(page, {"__name__": "__docs__"})
            return
        async with setup() as names:
            await _run_blocks(page, {"__name__": "__docs__", **names})
    finally:
        if gc.get_freeze_count() != frozen:
            gc.unfreeze()
        gc.set_threshold(*threshold)


def test_a_failing_block_fails_the_test(tmp_path: Path) -> None:
    (tmp_path / "bad.md").write_text("```python\nassert 1 == 2, 'the docs are wrong'\n```\n")
    source = BLOCK.findall((tmp_path / "bad.md").read_text())[0]
    with pytest.raises(AssertionError, match="the docs are wrong"):
        exec(_compile(source, "bad.md", 0), {})
