"""State-change and failure log lines, and the logging set-up of ``aiobamboo worker``."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import pytest

from aiobamboo import states
from aiobamboo.observe.logs import JSONFormatter, configure_logging

from .helpers import activity, run
from .ops_helpers import linear

STATES_LOGGER = "aiobamboo.engine.states"


def _records(caplog: pytest.LogCaptureFixture, root_id: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.name == STATES_LOGGER and getattr(r, "pipeline_id", None) == root_id
    ]


async def test_a_line_per_state_change_at_debug(
    runtime: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=STATES_LOGGER)
    echo = activity("echo", text="hi")
    tree = linear(echo)
    root_id = await run(runtime, tree)
    changes = [(r.node_id, r.state) for r in _records(caplog, root_id)]  # type: ignore[attr-defined]
    assert (root_id, states.RUNNING) in changes
    assert changes.index((echo.id, states.RUNNING)) < changes.index((echo.id, states.FINISHED))
    assert changes[-1] == (root_id, states.FINISHED)
    for record in _records(caplog, root_id):
        assert record.levelno == logging.DEBUG
        assert record.version
        assert record.loop == 1


async def test_a_failure_is_one_warning_with_its_ex_data(
    runtime: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=STATES_LOGGER)
    bad = activity("fail", **{"raise": True})
    root_id = await run(runtime, linear(bad), states.FAILED)
    records = _records(caplog, root_id)
    assert [(r.levelno, r.node_id, r.state) for r in records] == [  # type: ignore[attr-defined]
        (logging.WARNING, bad.id, states.FAILED)
    ]
    assert "RuntimeError: boom from component" in records[0].getMessage()
    assert "Traceback" in records[0].ex_data  # type: ignore[attr-defined]


async def test_nothing_is_formatted_with_debug_off(
    runtime: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger=STATES_LOGGER)
    made: list[Any] = []
    original = logging.Logger.makeRecord

    def spy(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = original(self, *args, **kwargs)
        if self.name == STATES_LOGGER:
            made.append(record)
        return record

    monkeypatch.setattr(logging.Logger, "makeRecord", spy)
    await run(runtime, linear(activity("echo", text="quiet")))
    assert made == []


def test_json_lines_carry_the_extra_fields() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JSONFormatter())
    log = logging.getLogger("aiobamboo.test.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("node %s failed", "n1", extra={"pipeline_id": "p1", "node_id": "n1"})
        try:
            raise ValueError("bad")
        except ValueError:
            log.exception("with a traceback", extra={"odd": object()})
    finally:
        log.removeHandler(handler)
        log.propagate = True
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["message"] == "node n1 failed"
    assert first["level"] == "WARNING"
    assert first["logger"] == "aiobamboo.test.json"
    assert (first["pipeline_id"], first["node_id"]) == ("p1", "n1")
    assert "T" in first["time"]
    assert "ValueError: bad" in second["exc_info"]
    assert second["odd"].startswith("<object")


def test_configure_logging_replaces_the_root_handlers() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        stream = io.StringIO()
        configure_logging("debug", "json", stream=stream)
        assert root.level == logging.DEBUG
        assert len(root.handlers) == 1
        logging.getLogger("aiobamboo.test.conf").debug("hello", extra={"node_id": "x"})
        assert json.loads(stream.getvalue())["node_id"] == "x"
        configure_logging("WARNING", "text", stream=stream)
        assert root.level == logging.WARNING
        with pytest.raises(ValueError, match="log format"):
            configure_logging("INFO", "xml")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="log level"):
            configure_logging("LOUD")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
