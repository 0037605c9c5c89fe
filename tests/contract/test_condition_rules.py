"""Gateway conditions evaluated by the original's rules, per run or by default.

Each tree has two branches whose conditions the two rule sets decide
differently: the standard rules take ``precedence`` (``and`` before ``or``)
and do not truncate; the original's boolrule runs left to right and truncates
the float ``1.7`` to ``1``.
"""

from __future__ import annotations

from typing import Any

import pytest

from aiobamboo import api, states
from aiobamboo.builder import (
    ConditionalParallelGateway,
    ConvergeGateway,
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    Var,
    build_tree,
)
from aiobamboo.engine import Settings

from .helpers import (
    activity,
    deliver,
    drop_schema,
    finish,
    run,
    start,
    state_of,
    uid,
    waiting_version,
)

#: True by the standard rules, False by the original's (left to right).
PRECEDENCE = "1 > 2 and 1 == 1 or 2 == 2"
#: False by the standard rules, True by the original's (1.7 truncated to 1).
TRUNCATION = "${x} == 1"


def _tree(gateway_class: type = ExclusiveGateway, before: Any = None) -> tuple[Any, Any, Any]:
    gw = gateway_class(conditions={0: PRECEDENCE, 1: TRUNCATION}, id=uid("gw"))
    standard, bamboo = activity("echo", text="standard"), activity("echo", text="bamboo")
    start_event, end = EmptyStartEvent(), EmptyEndEvent()
    head = start_event if before is None else start_event.extend(before)
    head.extend(gw).connect(standard, bamboo)
    if gateway_class is ExclusiveGateway:
        gw.converge(end)
    else:
        gw.converge(ConvergeGateway(id=uid("cv"))).extend(end)
    data = Data(inputs={"${x}": Var(Var.PLAIN, 1.7)})
    return build_tree(start_event, data=data), standard, bamboo


async def _taken(runtime: Any, standard: Any, bamboo: Any) -> str:
    taken = [
        name
        for name, node in (("standard", standard), ("bamboo", bamboo))
        if await state_of(runtime, node.id) == states.FINISHED
    ]
    return "+".join(taken)


@pytest.mark.parametrize(
    ("option", "expected"),
    [
        ({}, "standard"),
        ({"condition_rules": "standard"}, "standard"),
        ({"condition_rules": "bamboo"}, "bamboo"),
    ],
)
async def test_the_run_option_chooses_the_rules(
    runtime: Any, option: dict[str, Any], expected: str
) -> None:
    tree, standard, bamboo = _tree()
    await run(runtime, tree, **option)
    assert await _taken(runtime, standard, bamboo) == expected


async def test_conditional_parallel_gateways_follow_the_rules_too(runtime: Any) -> None:
    tree, standard, bamboo = _tree(ConditionalParallelGateway)
    await run(runtime, tree, condition_rules="bamboo")
    assert await _taken(runtime, standard, bamboo) == "bamboo"


@pytest.mark.parametrize(
    ("option", "expected"),
    [({}, "bamboo"), ({"condition_rules": "standard"}, "standard")],
)
async def test_settings_give_the_default(
    runtime_factory: Any, option: dict[str, Any], expected: str
) -> None:
    rt = await runtime_factory(settings=Settings(condition_rules="bamboo"))
    try:
        async with rt:
            tree, standard, bamboo = _tree()
            await run(rt, tree, **option)
            assert await _taken(rt, standard, bamboo) == expected
    finally:
        await drop_schema(rt)


async def test_the_rules_are_kept_with_the_run(runtime_factory: Any) -> None:
    """A run started with the original's rules keeps them in a runtime whose default differs."""
    if runtime_factory.kind == "sqlite-memory":
        pytest.skip("an in-memory database does not outlive its runtime")
    waiter = activity("callback", uid("cb"))
    tree, standard, bamboo = _tree(before=waiter)
    first = await runtime_factory()
    try:
        async with first:
            root_id = await start(first, tree, condition_rules="bamboo")
            version = await waiting_version(first, waiter.id)
        second = await runtime_factory()
        async with second:
            res = await deliver(second, waiter.id, version, {"go": True})
            assert res.result, res.message
            await finish(second, root_id)
            assert await _taken(second, standard, bamboo) == "bamboo"
    finally:
        await drop_schema(first)


@pytest.mark.parametrize("value", ["BAMBOO", "", 1, True])
async def test_an_unknown_rule_set_is_refused(runtime: Any, value: Any) -> None:
    tree, _, _ = _tree()
    res = await api.run_pipeline(runtime, tree, condition_rules=value)
    assert res.result is False
    assert "condition_rules" in res.message


def test_settings_refuse_an_unknown_rule_set() -> None:
    with pytest.raises(ValueError, match="condition_rules"):
        Settings(condition_rules="pyparsing")
