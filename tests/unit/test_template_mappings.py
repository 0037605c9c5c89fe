"""Attribute-style reading of mapping keys in templates, and warnings for literal fragments."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from aiobamboo.component import AttrDict
from aiobamboo.exceptions import ExpressionLimitError, UnsafeExpressionError
from aiobamboo.template import Sandbox, SandboxLimits, render


class ReadOnly(Mapping[str, Any]):
    def __init__(self, **data: Any) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class Thing:
    """Not a mapping: its attributes stay out of reach."""

    task_id = 7


NAMESPACE: dict[str, Any] = {
    "_system": {"task_id": 42, "operator": "admin"},
    "table": {"column": ["a", "b"], "nested": {"deep": {"x": 1}}},
    "attr": AttrDict(name="n"),
    "ro": ReadOnly(key="v", inner={"k": 3}),
    "shadow": {"get": "the key", "items": [1, 2]},
    "thing": Thing(),
}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${_system.task_id}", "42"),
        ("${table.column[0]}", "a"),
        ("${table.nested.deep.x + 1}", "2"),
        ("${attr.name}", "n"),
        ("${ro.key}-${ro.inner.k}", "v-3"),
        ("${_system.operator.upper()}", "ADMIN"),
        # A key shadows a dict method when read; calls still reach the method.
        ("${shadow.get}", "the key"),
        ("${shadow.get('items')[1]}", "2"),
        ("${len(table.column)}", "2"),
        ("task ${_system.task_id} by ${_system.operator}", "task 42 by admin"),
    ],
)
def test_mapping_keys_read_as_attributes(template: str, expected: str) -> None:
    assert render(template, NAMESPACE) == expected


@pytest.mark.parametrize(
    "template",
    [
        "${_system.__class__}",
        "${_system._private}",
        "${_system.format}",
        "${ro.__getitem__}",
        "${thing.task_id}",
    ],
)
def test_python_attributes_stay_out_of_reach(template: str) -> None:
    with pytest.raises(UnsafeExpressionError):
        render(template, NAMESPACE)


def test_a_method_is_still_not_a_value() -> None:
    with pytest.raises(UnsafeExpressionError, match="only be called"):
        render("${_system.items}", NAMESPACE)


def test_limits_still_apply() -> None:
    with pytest.raises(ExpressionLimitError):
        render("${_system.operator * 10**8}", NAMESPACE)
    box = Sandbox(SandboxLimits(max_steps=50))
    with pytest.raises(ExpressionLimitError):
        render("${[table.column[0] for i in range(1000)]}", NAMESPACE, sandbox=box)


def test_a_missing_key_stays_literal_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aiobamboo.template"):
        assert render("id ${_system.nothing}", NAMESPACE) == "id ${_system.nothing}"
        assert render("${ro.nothing}", NAMESPACE) == "${ro.nothing}"
    messages = [r.getMessage() for r in caplog.records if r.name == "aiobamboo.template"]
    assert len(messages) == 2
    assert "${_system.nothing}" in messages[0]
    assert "${ro.nothing}" in messages[1]
    assert all(r.levelno == logging.WARNING for r in caplog.records)


@pytest.mark.parametrize(
    "template",
    ["${missing}", "${1/0}", "${LOG_FILE:-x}", "${_system['task_id'] + 'x'}"],
)
def test_every_fragment_left_literal_is_logged(
    template: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="aiobamboo.template"):
        assert render(f"a {template} b", NAMESPACE) == f"a {template} b"
    (record,) = [r for r in caplog.records if r.name == "aiobamboo.template"]
    assert template in record.getMessage()


def test_the_warning_does_not_carry_huge_values(caplog: pytest.LogCaptureFixture) -> None:
    key = "k" * 100_000
    namespace = {"d": {}, "key": key}
    with caplog.at_level(logging.WARNING, logger="aiobamboo.template"):
        assert render("${d[key]}!", namespace) == "${d[key]}!"
    (record,) = [r for r in caplog.records if r.name == "aiobamboo.template"]
    message = record.getMessage()
    assert "${d[key]}" in message
    assert len(message) < 1_000
