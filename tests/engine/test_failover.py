"""FailoverRuntime: one process drives a SQLite file, the others are clients, one takes over."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from aiobamboo import api
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
from aiobamboo.exceptions import StorageError
from aiobamboo.failover import FailoverRuntime
from aiobamboo_sqlite import SQLiteRuntime
from contract import components  # noqa: F401 - registers the test components


def failover(db: Path) -> FailoverRuntime:
    return FailoverRuntime(lambda worker: SQLiteRuntime(db, worker=worker), retry_interval=0.1)


def callback_tree() -> tuple[dict[str, Any], str]:
    start = EmptyStartEvent()
    node = ServiceActivity(component_code="callback")
    start.extend(node).extend(EmptyEndEvent())
    return build_tree(start), node.id


async def waiting(runtime: Any, node_id: str) -> None:
    with anyio.fail_after(10):
        while True:
            outputs = await api.get_execution_data_outputs(runtime, node_id)
            if outputs.result and outputs.data.get("waiting"):
                return
            await anyio.sleep(0.01)


async def test_the_first_drives_the_second_is_its_client_and_takes_over(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    second = failover(db)
    async with failover(db) as first:
        assert first.worker
        assert first.promoted.is_set()
        await second.__aenter__()
        try:
            assert not second.worker
            assert not second.promoted.is_set()
            # The client starts and calls back; the driver runs them.
            tree, node_id = callback_tree()
            assert (await api.run_pipeline(second, tree)).result
            await waiting(second, node_id)
            assert (await api.callback(second, node_id, data={"via": "client"})).result
            assert (await api.wait_pipeline(second, tree["id"], timeout=10)).data == "FINISHED"
            # One more waits for its callback while the driver goes away.
            held, held_node = callback_tree()
            assert (await api.run_pipeline(second, held)).result
            await waiting(second, held_node)
        except BaseException:
            await second.__aexit__(None, None, None)
            raise
    # The driver closed (as a dead one's lock goes with it): the client takes over.
    try:
        with anyio.fail_after(2):
            await second.promoted.wait()
        assert second.worker
        assert (await api.callback(second, held_node, data={"after": "takeover"})).result
        assert (await api.wait_pipeline(second, held["id"], timeout=10)).data == "FINISHED"
        outputs = await api.get_execution_data_outputs(second, held_node)
        assert outputs.data["callback_data"] == {"after": "takeover"}
        tree, node_id = callback_tree()
        assert (await api.run_pipeline(second, tree)).result
        await waiting(second, node_id)
        assert (await api.callback(second, node_id, data=1)).result
        assert (await api.wait_pipeline(second, tree["id"], timeout=10)).data == "FINISHED"
    finally:
        await second.__aexit__(None, None, None)
    # Closed, it holds nothing: a plain worker opens the file.
    async with SQLiteRuntime(db) as again:
        assert again.worker


async def test_a_failure_other_than_the_lock_is_raised(tmp_path: Path) -> None:
    (tmp_path / "not-a-db").write_bytes(b"this is not a database" * 100)
    runtime = failover(tmp_path / "not-a-db")
    with pytest.raises(StorageError, match="not a valid"):
        await runtime.__aenter__()
    assert runtime.scheduler is None
