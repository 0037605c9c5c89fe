"""Listing pipelines and purging the ended ones, through ``aiobamboo.api`` only."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest

from aiobamboo import api, states
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, build_tree
from aiobamboo.exceptions import InvalidOperationError, NotFoundError

from .helpers import activity, drop_schema, run, start, wait_state, waiting_version

UTC = dt.UTC


def _echo_tree(name: str = "") -> tuple[dict[str, Any], str]:
    act = activity("echo", text="hi")
    s = EmptyStartEvent()
    s.extend(act).extend(EmptyEndEvent())
    tree = build_tree(s)
    if name:
        tree["name"] = name
    return tree, act.id


def _callback_tree() -> tuple[dict[str, Any], str]:
    act = activity("callback")
    s = EmptyStartEvent()
    s.extend(act).extend(EmptyEndEvent())
    return build_tree(s), act.id


async def _ids(runtime: Any, **kwargs: Any) -> list[str]:
    res = await api.list_pipelines(runtime, **kwargs)
    assert res.result, res.message
    return [p["id"] for p in res.data["pipelines"]]


async def test_list_pipelines_newest_first_with_filters_and_pages(runtime: Any) -> None:
    began = dt.datetime.now(UTC)
    done = [await run(runtime, _echo_tree(f"echo {i}")[0]) for i in range(3)]
    waiting_tree, waiting_node = _callback_tree()
    waiting = await start(runtime, waiting_tree)
    await waiting_version(runtime, waiting_node)

    assert await _ids(runtime, created_after=began) == [waiting, *done[::-1]]
    assert await _ids(runtime, created_after=began, state=states.FINISHED) == done[::-1]
    assert await _ids(runtime, created_after=began, state="RUNNING") == [waiting]
    assert await _ids(runtime, created_before=began) == []

    res = await api.list_pipelines(runtime, created_after=began, limit=3)
    assert res.result, res.message
    first = res.data
    assert [p["id"] for p in first["pipelines"]] == [waiting, done[2], done[1]]
    entry = first["pipelines"][1]
    assert entry["state"] == states.FINISHED
    assert entry["name"] == "echo 2"
    assert first["pipelines"][0]["name"] == ""
    assert entry["created_time"] >= began.replace(microsecond=0)
    assert entry["archived_time"] >= entry["started_time"]
    # A pipeline started between two pages does not shift the next page.
    newer = await run(runtime, _echo_tree()[0])
    rest = await api.list_pipelines(runtime, created_after=began, limit=3, cursor=first["cursor"])
    assert rest.result, rest.message
    assert [p["id"] for p in rest.data["pipelines"]] == [done[0]]
    assert rest.data["cursor"] is None
    assert (await _ids(runtime, created_after=began, limit=1)) == [newer]


async def test_list_pipelines_refuses_bad_arguments(runtime: Any) -> None:
    cases: list[dict[str, Any]] = [
        {"state": "DONE"},
        {"limit": 0},
        {"limit": 1001},
        {"limit": True},
        {"cursor": "nonsense"},
        {"cursor": 12},
        {"created_after": dt.datetime(2020, 1, 1)},  # naive: which zone?
        {"created_before": "yesterday"},
        {"created_before": float("nan")},
    ]
    for kwargs in cases:
        res = await api.list_pipelines(runtime, **kwargs)
        assert not res.result, kwargs
        assert isinstance(res.exc, InvalidOperationError), (kwargs, res.exc)
        assert next(iter(kwargs)) in res.message, (kwargs, res.message)


async def test_purge_deletes_ended_pipelines_and_nothing_else(runtime: Any) -> None:
    finished_tree, finished_node = _echo_tree()
    finished = await run(runtime, finished_tree)
    revoked_tree, revoked_node = _callback_tree()
    revoked = await start(runtime, revoked_tree)
    await waiting_version(runtime, revoked_node)
    assert (await api.revoke_pipeline(runtime, revoked)).result
    await wait_state(runtime, revoked, states.REVOKED)
    waiting_tree, waiting_node = _callback_tree()
    waiting = await start(runtime, waiting_tree)
    await waiting_version(runtime, waiting_node)
    cutoff = time.time() + 1  # after every end above

    res = await api.purge_pipelines(runtime, dt.datetime.fromtimestamp(cutoff, UTC))
    assert res.result, res.message
    assert res.data == 2
    listed = await _ids(runtime)
    assert finished not in listed
    assert revoked not in listed
    assert waiting in listed
    # Purged ids are unknown ids: every read refuses them as never stored.
    for node in (finished, finished_node, revoked, revoked_node):
        assert isinstance((await api.get_children_states(runtime, node)).exc, NotFoundError), node
    for read in (api.get_execution_data_outputs, api.get_node_histories):
        assert isinstance((await read(runtime, finished_node)).exc, NotFoundError), read
    # The waiting pipeline is whole and still takes its callback.
    version = await waiting_version(runtime, waiting_node)
    assert (await api.callback(runtime, waiting_node, version, {"x": 1})).result
    assert (await api.wait_pipeline(runtime, waiting, timeout=5)).data == states.FINISHED
    # Purging again finds nothing older than the cutoff that ended.
    assert (await api.purge_pipelines(runtime, cutoff - 3600)).data == 0


async def test_purge_works_in_batches(runtime: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "PURGE_BATCH", 2)
    roots = [await run(runtime, _echo_tree()[0]) for _ in range(5)]
    calls: list[int] = []
    store = runtime.store
    purge = store.purge_runs

    async def counted(before: float, limit: int) -> list[str]:
        gone = await purge(before, limit)
        calls.append(len(gone))
        return gone

    monkeypatch.setattr(store, "purge_runs", counted)
    res = await api.purge_pipelines(runtime, time.time() + 1)
    assert res.result, res.message
    assert res.data == 5
    assert calls == [2, 2, 1]
    listed = await _ids(runtime)
    assert not set(roots) & set(listed)


async def test_purge_refuses_bad_arguments(runtime: Any) -> None:
    for value in (None, "2020-01-01", dt.datetime(2020, 1, 1), float("inf")):
        res = await api.purge_pipelines(runtime, value)  # type: ignore[arg-type]
        assert not res.result, value
        assert isinstance(res.exc, InvalidOperationError), res.exc
        assert "finished_before" in res.message


async def test_purged_pipelines_are_gone_after_a_restart(runtime_factory: Any) -> None:
    first = await runtime_factory()
    try:
        async with first:
            root = await run(first, _echo_tree()[0])
            assert (await api.purge_pipelines(first, time.time() + 1)).data == 1
        second = await runtime_factory()
        async with second:
            assert root not in await _ids(second)
            assert isinstance((await api.get_pipeline_states(second, root)).exc, NotFoundError)
    finally:
        await drop_schema(first)
