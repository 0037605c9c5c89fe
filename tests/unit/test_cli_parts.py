"""The pure parts of the command line: dates, --data, the drawn tree, exit codes, gc."""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Iterator
from typing import Any

import pytest

from aiobamboo.cli._common import (
    EXIT_DATABASE,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    GC_ENV,
    WORKER_GC_THRESHOLD,
    CliError,
    exit_code_for,
    parse_when,
    tune_gc,
)
from aiobamboo.cli._draw import draw_tree, is_over
from aiobamboo.cli._run import apply_data
from aiobamboo.exceptions import (
    InvalidOperationError,
    NotFoundError,
    StorageError,
    WaitTimeoutError,
)

UTC = dt.UTC


def test_when_is_now_an_age_or_an_iso_date() -> None:
    now = dt.datetime.now(UTC)
    assert abs((parse_when("now", "x") - now).total_seconds()) < 5
    week = parse_when("7d", "x")
    assert abs((now - week).total_seconds() - 7 * 86400) < 5
    assert abs((now - parse_when("90m", "x")).total_seconds() - 5400) < 5
    assert parse_when("2024-05-01T12:00:00+00:00", "x") == dt.datetime(2024, 5, 1, 12, tzinfo=UTC)
    local = parse_when("2024-05-01", "x")
    assert local.tzinfo is not None  # local time, made explicit
    assert local.replace(tzinfo=None) == dt.datetime(2024, 5, 1)
    with pytest.raises(CliError, match="--when") as raised:
        parse_when("next tuesday", "--when")
    assert raised.value.code == EXIT_USAGE


def test_data_sets_pipeline_variables() -> None:
    tree: dict[str, Any] = {"data": {"inputs": {"${a}": {"type": "plain", "value": 1}}}}
    apply_data(tree, ["a=2", "b=hello", "${c}=[1, 2]", "d=", 'e={"k": true}'])
    inputs = tree["data"]["inputs"]
    assert inputs["${a}"] == {"type": "plain", "value": 2}
    assert inputs["${b}"]["value"] == "hello"
    assert inputs["${c}"]["value"] == [1, 2]
    assert inputs["${d}"]["value"] == ""
    assert inputs["${e}"]["value"] == {"k": True}
    empty: dict[str, Any] = {}
    apply_data(empty, ["x=1"])
    assert empty["data"]["inputs"]["${x}"]["value"] == 1
    for bad in ("novalue", "=3"):
        with pytest.raises(CliError, match="KEY=VALUE"):
            apply_data({}, [bad])


def _entry(node_id: str, name: str, kind: str, state: str, at: int, **children: Any) -> Any:
    start = dt.datetime(2024, 5, 1, 12, 0, at, tzinfo=UTC)
    return {
        "id": node_id,
        "name": name,
        "type": kind,
        "state": state,
        "loop": 1,
        "retry": 0,
        "created_time": start,
        "started_time": start,
        "archived_time": start + dt.timedelta(seconds=2) if state == "FINISHED" else None,
        "children": children,
    }


def test_the_tree_is_drawn_with_names_states_and_ids() -> None:
    sub = _entry(
        "sub1", "approval", "SubProcess", "RUNNING", 3,
        inner=_entry("inner", "", "ServiceActivity", "FAILED", 4),
    )  # fmt: skip
    root = _entry(
        "root", "release", "Pipeline", "RUNNING", 0,
        a=_entry("a", "prepare", "ServiceActivity", "FINISHED", 1),
        sub1=sub,
    )  # fmt: skip
    lines = draw_tree({"root": root}).splitlines()
    assert lines[0].split() == ["NODE", "TYPE", "STATE", "STARTED", "TOOK", "ID"]
    assert lines[1].startswith("release")
    assert lines[2].startswith("├─ prepare")
    assert "FINISHED" in lines[2]
    assert "2.0 s" in lines[2]
    assert lines[2].endswith(" a")
    assert lines[3].startswith("└─ approval")
    assert lines[4].startswith("   └─ ServiceActivity")  # no name: its type
    assert "FAILED" in lines[4]
    assert not is_over({"root": root})
    root["state"] = "REVOKED"
    assert is_over({"root": root})


def test_exit_codes_follow_the_kind_of_refusal() -> None:
    assert exit_code_for(NotFoundError("x")) == EXIT_NOT_FOUND
    assert exit_code_for(WaitTimeoutError("x")) == EXIT_TIMEOUT
    assert exit_code_for(StorageError("x")) == EXIT_DATABASE
    assert exit_code_for(InvalidOperationError("x")) == EXIT_REFUSED
    assert exit_code_for(None) == EXIT_REFUSED


@pytest.fixture
def gc_settings() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


@pytest.mark.usefixtures("gc_settings")
def test_worker_processes_collect_garbage_less_often(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GC_ENV, raising=False)
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_threshold() == (WORKER_GC_THRESHOLD, 10, 10)
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("gc_settings")
def test_the_garbage_collector_settings_can_be_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GC_ENV, "default")
    gc.set_threshold(700, 10, 10)
    tune_gc()
    assert gc.get_threshold() == (700, 10, 10)
