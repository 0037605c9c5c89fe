"""Callbacks stored for parked runs by the SQLite store: many at once, one transaction."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from aiobamboo.exceptions import StorageError
from aiobamboo.runtime import CallbackRow, ProcessRow, RunRow, ScheduleRow, StateRow, WriteBatch
from aiobamboo_sqlite import SQLiteRuntime, _store


def _waiting_run(root: str) -> list[WriteBatch]:
    """A run whose node ``<root>a`` waits for one callback of version v1."""
    node = f"{root}a"
    created = WriteBatch(
        root_id=root,
        new_run=RunRow(root, json.dumps({"id": root}), "{}", "active", 1.0),
        new_nodes=(root, node),
    )
    waiting = WriteBatch(root_id=root)
    waiting.states = {
        node: StateRow(
            node, root, root, "a", "RUNNING", "v1", 1, 1, 0, False, False, 1.0, 1.0, None
        )
    }
    waiting.processes = {
        f"{root}p": ProcessRow(f"{root}p", root, None, node, None, (), "sleeping", None, (), ())
    }
    sched = ScheduleRow(f"{root}s", root, node, "v1", 1, f"{root}p", False, False, 0)
    waiting.schedules = {sched.id: sched}
    return [created, waiting]


def _callback(node: str, version: str = "v1", root: str = "") -> CallbackRow:
    return CallbackRow(uuid.uuid4().hex, root, node, version, '{"n": 1}', False, 1.5)


async def test_concurrent_callbacks_to_parked_runs_share_one_transaction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with SQLiteRuntime(tmp_path / "flows.db", worker=False) as rt:
        store = rt.store
        for root in ("r1", "r2", "r3", "r4"):
            for batch in _waiting_run(root):
                await store.commit(batch)
        # Parked and held by nobody, as a worker leaves a run waiting for a callback;
        # r4 stays held.
        claimed = await store.claim_runs(4, ["r1", "r2", "r3", "r4"])
        assert sorted(claimed) == ["r1", "r2", "r3", "r4"]
        assert sorted(await store.park_runs(["r1", "r2", "r3"])) == ["r1", "r2", "r3"]

        groups: list[int] = []
        deliver = _store._write_deliveries

        def counted(conn: Any, deliveries: list[Any], bulk_rows: float) -> Any:
            groups.append(len(deliveries))
            return deliver(conn, deliveries, bulk_rows)

        monkeypatch.setattr(_store, "_write_deliveries", counted)
        outcomes = await asyncio.gather(
            store.deliver_callback_to_node(_callback("r1a")),
            store.deliver_callback_to_node(_callback("r2a")),
            store.deliver_callback_to_node(_callback("r1a")),  # a second one for r1
            store.deliver_callback_to_node(_callback("nowhere")),
            store.deliver_callback_to_node(_callback("r3a", "v2")),
            store.deliver_callback_to_node(_callback("r4a")),  # held
            store.deliver_callback(_callback("r3a", root="r1")),  # not r1's node
        )
        assert outcomes == [
            ("r1", True),
            ("r2", True),
            ("r1", False),
            (None, False),
            ("r3", False),
            ("r4", False),
            False,
        ]
        assert groups == [7]
        # Stored once each, and the runs handed to the workers; r3 stays parked.
        assert sorted(await store.claim_runs(10)) == ["r1", "r2"]
        snaps = await store.load_runs(["r1", "r2", "r3", "r4"])
        assert [len(snaps[r].callbacks) for r in ("r1", "r2", "r3", "r4")] == [1, 1, 0, 0]

        # Delivered one after the other, each finds the one before stored.
        assert await store.deliver_callback(_callback("r3a", root="r3"))
        assert not await store.deliver_callback(_callback("r3a", root="r3"))
        assert groups == [7, 1, 1]


async def test_a_delivery_after_closing_is_a_storage_error(tmp_path: Path) -> None:
    rt = SQLiteRuntime(tmp_path / "flows.db", worker=False)
    async with rt:
        store = rt.store
    with pytest.raises(StorageError):
        await store.deliver_callback_to_node(_callback("r1a"))
