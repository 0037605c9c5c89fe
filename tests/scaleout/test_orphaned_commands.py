"""A command its worker took and never answered is applied by the run's next holder."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiobamboo import api
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
from aiobamboo.engine import Settings
from conftest import PG_DSN, require_postgres
from contract import components  # noqa: F401 - registers the test components

Factory = Callable[..., Any]


@asynccontextmanager
async def _storage(kind: str, tmp_path: Path) -> AsyncIterator[Factory]:
    """A factory of runtimes that all open one database."""
    if kind == "sqlite-file":
        from aiobamboo_sqlite import SQLiteRuntime

        yield lambda **kwargs: SQLiteRuntime(tmp_path / "shared.db", **kwargs)
        return
    await require_postgres()
    import asyncpg

    from aiobamboo_postgres import PostgresRuntime

    schema = "orphan_" + uuid.uuid4().hex[:10]
    try:
        yield lambda **kwargs: PostgresRuntime(PG_DSN, schema=schema, **kwargs)
    finally:
        conn = await asyncpg.connect(PG_DSN)
        try:
            await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await conn.close()


async def _running_version(runtime: Any, root_id: str, node_id: str) -> str:
    with anyio.fail_after(10):
        while True:
            states = await api.get_pipeline_states(runtime, root_id)
            child = (states.data or {}).get(root_id, {}).get("children", {}).get(node_id)
            if child and child["state"] == "RUNNING":
                return str(child["version"])
            await anyio.sleep(0.01)


@pytest.mark.parametrize(
    "kind", ["sqlite-file", pytest.param("postgres", marks=pytest.mark.postgres)]
)
async def test_a_command_taken_by_a_worker_that_stopped_is_applied_by_the_next(
    kind: str, tmp_path: Path
) -> None:
    start = EmptyStartEvent()
    node = ServiceActivity(component_code="callback")
    start.extend(node).extend(EmptyEndEvent())
    tree = build_tree(start)
    async with _storage(kind, tmp_path) as runtime:
        settings = Settings(command_timeout=1.0)
        async with runtime(worker=False, settings=settings) as client:
            first = runtime(lease_seconds=60.0) if kind == "postgres" else runtime()
            taken = anyio.Event()
            answers: list[Any] = []

            async def stuck(*args: Any) -> None:
                # This worker takes the command and never answers it.
                taken.set()
                await anyio.sleep_forever()

            await first.__aenter__()
            try:
                assert (await api.run_pipeline(client, tree)).result
                version = await _running_version(client, tree["id"], node.id)
                first.scheduler.apply_operation = stuck
                async with anyio.create_task_group() as tg:

                    async def send() -> None:
                        answers.append(await api.callback(client, node.id, version, {"n": 1}))

                    tg.start_soon(send)
                    with anyio.fail_after(10):
                        await taken.wait()
                    # The worker stops (its runs go back) with the command unanswered;
                    # the next holder claims the run and applies the command.
                    await first.__aexit__(None, None, None)
                    first = None
                    async with runtime() as second:
                        with anyio.fail_after(20):
                            while True:
                                if answers:
                                    break
                                await anyio.sleep(0.02)
                        assert answers[0].result, answers[0].message
                        waited = await api.wait_pipeline(second, tree["id"], timeout=10)
                        assert waited.data == "FINISHED", waited.message
            finally:
                if first is not None:
                    await first.__aexit__(None, None, None)
