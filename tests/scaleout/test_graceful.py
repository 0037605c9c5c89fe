"""SIGTERM: a worker hands its runs back at once, without waiting for the lease."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import anyio
import pytest

from aiobamboo import api
from conftest import PG_DSN, require_postgres

from .chaos_components import build, callback_node_id, root_id
from .test_chaos import Workers

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


async def test_sigterm_hands_runs_back_before_the_lease_ends(tmp_path: Path) -> None:
    await require_postgres()
    from aiobamboo_postgres import PostgresRuntime

    schema = "graceful_" + uuid.uuid4().hex[:10]
    workers = Workers(schema, tmp_path / "executions.log", tmp_path, lease=60.0)
    client = PostgresRuntime(PG_DSN, schema=schema, worker=False)
    try:
        async with client:
            first = workers.start()
            for index in range(10):
                assert (await api.run_pipeline(client, build(index))).result
            # Wait until the first worker holds every run at its callback node.
            versions: dict[int, str] = {}
            with anyio.fail_after(30):
                while len(versions) < 10:
                    for index in range(10):
                        node = callback_node_id(index)
                        state = (await api.get_children_states(client, node)).data or {}
                        if state.get(node, {}).get("state") == "RUNNING":
                            versions[index] = state[node]["version"]
                    await anyio.sleep(0.05)
            first.send_signal(signal.SIGTERM)
            with anyio.fail_after(15):
                while first.poll() is None:  # noqa: ASYNC110 - another process: no event to await
                    await anyio.sleep(0.05)
            assert first.returncode == 0
            workers.start()
            # Well inside the 60 s lease: the second worker took the runs over.
            with anyio.fail_after(20):
                for index, version in versions.items():
                    while True:
                        sent = await api.callback(client, callback_node_id(index), version, {})
                        if sent.result:
                            break
                        assert "is a worker running" not in sent.message
                        await anyio.sleep(0.05)
                for index in range(10):
                    waited = await api.wait_pipeline(client, root_id(index), timeout=20)
                    assert waited.data == "FINISHED", waited.message
            async with client.pool.acquire() as conn:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        workers.stop_all()
