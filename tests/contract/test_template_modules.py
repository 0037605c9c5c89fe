"""Template modules allowed by ``Settings.template_modules``, on every runtime."""

from __future__ import annotations

from typing import Any

from aiobamboo import states
from aiobamboo.builder import (
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    Var,
    build_tree,
)
from aiobamboo.engine import Settings
from aiobamboo.template import MODULE_NAMES

from .helpers import activity, outputs, run, splice, state_of, uid

TEXT = "${math.ceil(x)}|${json.dumps(d)}|${datetime.date(2024, 1, 31).isoformat()}"


def _tree() -> tuple[dict[str, Any], Any, Any, Any]:
    node = activity("echo", text=splice(TEXT), parsed=splice("${json.loads(s)}"))
    gw = ExclusiveGateway(
        conditions={0: "${math.floor(x)} == 2", 1: "${math.floor(x)} != 2"}, id=uid("gw")
    )
    yes, no = activity("echo", text="yes"), activity("echo", text="no")
    start, end = EmptyStartEvent(), EmptyEndEvent()
    start.extend(node).extend(gw).connect(yes, no)
    gw.converge(end)
    data = Data(
        inputs={
            "${x}": Var(Var.PLAIN, 2.4),
            "${d}": Var(Var.PLAIN, {"k": [1, 2]}),
            "${s}": Var(Var.PLAIN, '{"n": 1}'),
        }
    )
    return build_tree(start, data=data), node, yes, no


async def test_allowed_modules_work_in_inputs_and_conditions(runtime_factory: Any) -> None:
    rt = await runtime_factory(settings=Settings(template_modules=MODULE_NAMES))
    async with rt:
        tree, node, yes, no = _tree()
        await run(rt, tree)
        out = await outputs(rt, node.id)
        assert out["echo"] == '3|{"k": [1, 2]}|2024-01-31'
        # An expression renders to text, as in the original.
        assert out["parsed"] == "{'n': 1}"
        assert await state_of(rt, yes.id) == states.FINISHED
        assert await state_of(rt, no.id) is None


async def test_modules_are_off_by_default(runtime: Any) -> None:
    tree, node, _yes, _no = _tree()
    root_id = await run(runtime, tree, states.FAILED)
    assert root_id
    assert (await outputs(runtime, node.id))["echo"] == TEXT
