"""The engine's closed sets of names: each is an enum or Literal, and every table covers it."""

from __future__ import annotations

from typing import get_args

import pytest

from aiobamboo import api
from aiobamboo.engine import Settings
from aiobamboo.engine._coordination import OPERATIONS, OperationName, operation_name
from aiobamboo.engine._env import Strategy
from aiobamboo.engine._run import ProcStatus, ScheduleType
from aiobamboo.engine._scheduler import OPERATION_TABLE
from aiobamboo.engine._spec import NodeKind
from aiobamboo.engine.handlers import HANDLERS
from aiobamboo.exceptions import InvalidOperationError


def test_every_node_kind_has_a_handler() -> None:
    assert set(HANDLERS) == set(NodeKind)


def test_every_operation_is_dispatched_and_has_an_api_function() -> None:
    names = set(get_args(OperationName))
    assert set(OPERATION_TABLE) == names == OPERATIONS
    for name in names:
        assert callable(getattr(api, name))


def test_unknown_operation_names_are_refused() -> None:
    assert operation_name("skip_node") == "skip_node"
    for bad in ("__init__", "drop", "run_pipeline", ""):
        with pytest.raises(InvalidOperationError, match="unknown operation"):
            operation_name(bad)


def test_stored_values_are_unchanged() -> None:
    # Rows written before these were enums must still load.
    assert [p.value for p in ProcStatus] == ["running", "sleeping", "suspended", "joining", "dead"]
    assert [int(t) for t in ScheduleType] == [1, 2, 3]
    assert ProcStatus("sleeping") == "sleeping"
    assert ScheduleType(3) == 3


def test_settings_take_the_strategy_as_its_number() -> None:
    assert Settings(exclusive_gateway_strategy=2).exclusive_gateway_strategy is Strategy.FIRST
    with pytest.raises(ValueError):
        Settings(exclusive_gateway_strategy=7)
