"""The live page in headless Chromium: the graph, its states, live updates from the events."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from aiobamboo import api
from aiobamboo.builder import (
    EmptyEndEvent,
    EmptyStartEvent,
    ServiceActivity,
    SubProcess,
    build_tree,
)
from aiobamboo_sqlite import SQLiteRuntime

from .browser import Browser, chromium_path

# CI installs Chromium and sets AIOBAMBOO_REQUIRE_CHROMIUM: there a missing browser fails.
pytestmark = pytest.mark.skipif(
    chromium_path() is None and not os.environ.get("AIOBAMBOO_REQUIRE_CHROMIUM"),
    reason="needs Debian's chromium (apt-get install chromium)",
)


def page_tree() -> tuple[dict[str, Any], dict[str, str]]:
    inner_start = EmptyStartEvent(name="inner start")
    inner = ServiceActivity(component_code="echo", name="inner step")
    inner_start.extend(inner).extend(EmptyEndEvent(name="inner end"))
    start = EmptyStartEvent(name="start")
    sub = SubProcess(start=inner_start, name="prepare")
    approve = ServiceActivity(component_code="callback", name="approve")
    end = EmptyEndEvent(name="end")
    start.extend(sub).extend(approve).extend(end)
    tree = build_tree(start)
    tree["name"] = "page test"
    ids = {
        "start": start.id,
        "sub": sub.id,
        "inner": inner.id,
        "approve": approve.id,
        "end": end.id,
    }
    return tree, ids


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def served(framework: str, runtime: Any) -> AsyncIterator[str]:
    """The page and API over HTTP on loopback; the base URL of the pages."""
    if framework == "aiohttp":
        from aiohttp import web
        from aiohttp.test_utils import TestServer

        from aiobamboo.web import create_aiohttp_app

        outer = web.Application()
        outer.add_subapp("/bamboo", create_aiohttp_app(runtime))  # mounted under a prefix
        async with TestServer(outer, host="127.0.0.1") as server:
            yield str(server.make_url("/bamboo/"))
        return
    import uvicorn

    from aiobamboo.cli._serve import _server_class
    from aiobamboo.web import create_asgi_app

    port = free_port()
    server = _server_class()(
        uvicorn.Config(
            create_asgi_app(runtime),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
        )
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve)
        with anyio.fail_after(10):
            while True:
                if server.started:
                    break
                await anyio.sleep(0.02)
        yield f"http://127.0.0.1:{port}/"
        server.should_exit = True


STATES = (
    "Object.fromEntries([...document.querySelectorAll('[data-node-id]')]"
    ".map(e => [e.getAttribute('data-node-id'), e.getAttribute('data-state')]))"
)


@pytest.mark.parametrize("framework", ["starlette", "aiohttp"])
async def test_the_page_draws_a_running_pipeline_and_follows_it(
    framework: str, tmp_path: Path
) -> None:
    executable = chromium_path()
    assert executable is not None
    tree, ids = page_tree()
    async with (
        SQLiteRuntime(tmp_path / "flows.db") as runtime,
        served(framework, runtime) as base,
        Browser(executable, tmp_path / "profile") as browser,
    ):
        assert (await api.run_pipeline(runtime, tree)).result
        await browser.navigate(f"{base}pipelines/{tree['id']}")
        approve = ids["approve"]
        shown = await browser.wait_for(
            f"(() => {{ const s = {STATES}; return s['{approve}'] === 'RUNNING' && s; }})()"
        )
        assert {ids["start"], ids["sub"], approve, ids["end"]} <= set(shown)
        assert shown[ids["start"]] == "FINISHED"
        assert shown[ids["sub"]] == "FINISHED"
        assert shown[ids["end"]] == "NOT_STARTED"
        assert ids["inner"] not in shown  # the sub-process is closed
        assert await browser.evaluate("document.body.getAttribute('data-state')") == "RUNNING"
        # Layout: every node has its own place.
        places = await browser.evaluate(
            "[...document.querySelectorAll('g.node[transform]')]"
            ".map(e => e.getAttribute('transform'))"
        )
        assert len(places) == len(set(places)) >= 4

        # The sub-process opens in place, its nodes coloured by their states.
        await browser.evaluate(
            f"document.querySelector('[data-node-id=\"{ids['sub']}\"]')"
            ".dispatchEvent(new MouseEvent('click', {bubbles: true}))"
        )
        inner = await browser.wait_for(
            f"(() => {{ const s = {STATES}; return s['{ids['inner']}']; }})()"
        )
        assert inner == "FINISHED"

        # A callback from outside: the page follows it from the event stream, unreloaded.
        await browser.evaluate("window.notReloaded = true")
        async with httpx.AsyncClient(base_url=base) as client:
            answer = await client.post(f"api/nodes/{approve}/callback", json={"data": "ok"})
            assert answer.status_code == 200, answer.text
        await browser.wait_for(
            f"(() => {{ const s = {STATES}; return s['{approve}'] === 'FINISHED'"
            f" && s['{ids['end']}'] === 'FINISHED'"
            " && document.body.getAttribute('data-state') === 'FINISHED'; })()"
        )
        assert await browser.evaluate("window.notReloaded") is True
        shot = await browser.screenshot(tmp_path / f"pipeline-page-{framework}.png")
        assert shot.read_bytes().startswith(b"\x89PNG")
        keep = os.environ.get("AIOBAMBOO_SCREENSHOT_DIR")
        if keep:
            shutil.copy(shot, Path(keep) / shot.name)
        print(f"screenshot of the pipeline page: {shot}")

        # The list links to the pipeline and shows its state.
        await browser.navigate(base)
        state = await browser.wait_for(
            f"(() => {{ const row = document.querySelector('[data-pipeline-id=\"{tree['id']}\"]');"
            " return row && row.querySelector('[data-state]').getAttribute('data-state'); })()"
        )
        assert state == "FINISHED"
        href = await browser.evaluate(
            f"document.querySelector('[data-pipeline-id=\"{tree['id']}\"] a').href"
        )
        assert href == f"{base}pipelines/{tree['id']}"
