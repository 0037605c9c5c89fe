"""Trees and templates written for bamboo-engine run here as they do there."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from aiobamboo import states
from aiobamboo.builder import (
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    ExecutableEndEvent,
    NodeOutput,
    RewritableNodeOutput,
    Var,
    build_tree,
)
from aiobamboo.component import AttrDict, LazyVariable

from . import components
from .helpers import activity, finish, outputs, run, splice, start, state_of, uid, wait_state


class TableMapping(Mapping[str, Any]):
    """A read-only mapping, as a lazy variable ported from bk-sops may return."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class TableVariable(LazyVariable):
    """Splits ``"a,b;c,d"`` into columns: ``{"column": [...], "header": ...}``."""

    code = "bamboo_table"

    def get_value(self) -> Any:
        rows = [row.split(",") for row in str(self.value).split(";")]
        columns = {"column": [row[0] for row in rows], "header": AttrDict(first=rows[0][0])}
        return TableMapping(columns) if "mapping" in self.name else columns


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


def _lazy(code: str, value: Any) -> Var:
    return Var(Var.LAZY, value, custom_type=code)


async def test_templates_read_mapping_keys_with_attribute_syntax(runtime: Any) -> None:
    """``${_system.task_id}``, ``${table.column[0]}`` on a lazy variable's mapping."""
    node = activity(
        "echo",
        text=splice("${_system.task_id}/${table.column[1]}/${table.header.first}"),
        whole=splice("${mapping_table}"),
        column=splice("${mapping_table.column}"),
        missing=splice("${_system.nothing}"),
    )
    start = EmptyStartEvent()
    start.extend(node).extend(EmptyEndEvent())
    data = Data(
        inputs={
            "${_system}": Var(Var.PLAIN, {"task_id": 42, "operator": "admin"}),
            "${table}": _lazy("bamboo_table", "a,b;c,d"),
            "${mapping_table}": _lazy("bamboo_table", "x,y;z,w"),
        }
    )
    await run(runtime, build_tree(start, data=data))
    out = await outputs(runtime, node.id)
    assert out["echo"] == "42/c/a"
    # A lazy variable's Mapping is stored as the dict it holds.
    assert out["whole"] == {"column": ["x", "z"], "header": {"first": "x"}}
    # Only a whole ${name} keeps its type; an expression renders to text, as in the original.
    assert out["column"] == "['x', 'z']"
    # A key the mapping lacks stays literal, as any fragment that fails.
    assert out["missing"] == "${_system.nothing}"


async def test_attribute_syntax_never_reaches_python_attributes(runtime: Any) -> None:
    node = activity("echo", text=splice("${_system.__class__}"))
    start = EmptyStartEvent()
    start.extend(node).extend(EmptyEndEvent())
    data = Data(inputs={"${_system}": Var(Var.PLAIN, {"task_id": 42})})
    root_id = await start_and_fail(runtime, build_tree(start, data=data), node.id)
    assert root_id
    assert "refused" in (await outputs(runtime, node.id))["ex_data"]


async def start_and_fail(runtime: Any, tree: dict[str, Any], node_id: str) -> str:
    root_id = await start(runtime, tree)
    await wait_state(runtime, node_id, states.FAILED)
    await finish(runtime, root_id, states.FAILED)
    return root_id
