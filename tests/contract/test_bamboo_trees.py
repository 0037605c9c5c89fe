"""Trees and templates written for bamboo-engine run here as they do there."""

from __future__ import annotations

from typing import Any

from aiobamboo import states
from aiobamboo.builder import (
    Data,
    EmptyStartEvent,
    ExclusiveGateway,
    ExecutableEndEvent,
    NodeOutput,
    RewritableNodeOutput,
    Var,
    build_tree,
)

from . import components
from .helpers import activity, outputs, run, splice, state_of, uid


async def test_a_tree_built_with_the_originals_keyword_arguments_runs(runtime: Any) -> None:
    """NodeOutput / RewritableNodeOutput by keyword with a value, and an
    ExecutableEndEvent whose incoming is one flow id, as the original builds them."""
    first = activity("echo", text="one")
    second = activity("echo", text=splice("${out}/${last}"))
    end = ExecutableEndEvent("RecordEnd", id=uid("end"))
    start = EmptyStartEvent()
    start.extend(first).extend(second).extend(end)
    data = Data(
        inputs={
            "${out}": NodeOutput(
                type=Var.PLAIN, source_act=first.id, source_key="text", value="dropped"
            ),
            "${last}": RewritableNodeOutput(
                source_act=[{"source_act": first.id, "source_key": "echo"}],
                type=Var.PLAIN,
                value="dropped",
            ),
        }
    )
    tree = build_tree(start, data=data)
    assert isinstance(tree["end_event"]["incoming"], str)
    root_id = await run(runtime, tree)
    assert (await outputs(runtime, second.id))["echo"] == "one/one"
    assert await state_of(runtime, end.id) == states.FINISHED
    assert [c for c in components.END_CALLS if c[1] == root_id] == [(False, root_id, root_id)]


async def test_an_executable_end_event_entered_by_several_flows_runs(runtime: Any) -> None:
    gw = ExclusiveGateway(conditions={0: "1 == 1", 1: "1 == 0"}, id=uid("eg"))
    left, right = activity("echo", text="l"), activity("echo", text="r")
    end = ExecutableEndEvent("RecordEnd", id=uid("end"))
    start = EmptyStartEvent()
    start.extend(gw).connect(left, right)
    gw.converge(end)
    tree = build_tree(start)
    assert isinstance(tree["end_event"]["incoming"], list)
    await run(runtime, tree)
    assert await state_of(runtime, left.id) == states.FINISHED
    assert await state_of(runtime, right.id) is None
    assert await state_of(runtime, end.id) == states.FINISHED
