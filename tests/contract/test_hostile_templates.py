"""Hostile templates fail their own node only, through ``aiobamboo.api`` (every runtime).

A small tree must not render into a huge value, an expensive template must not
stall the event loop (other pipelines keep running), and a value substituted
into a gateway condition must not change which branch is taken.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from aiobamboo import states
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
from aiobamboo.template import MODULE_NAMES

from .helpers import activity, finish, flat_states, outputs, plain, run, splice, start, uid

#: Every case runs on every runtime with the defaults, and with every template
#: module allowed and the original's condition rules.
SETTINGS = {
    "defaults": None,
    "modules": Settings(template_modules=MODULE_NAMES, condition_rules="bamboo"),
}


@pytest.fixture(params=list(SETTINGS))
async def runtime(request: pytest.FixtureRequest, runtime_factory: Any) -> AsyncIterator[Any]:
    settings = SETTINGS[request.param]
    rt = await runtime_factory(**({} if settings is None else {"settings": settings}))
    async with rt:
        yield rt


def _line(*nodes: Any, data: Data | None = None) -> dict[str, Any]:
    start_event = EmptyStartEvent()
    node: Any = start_event
    for item in nodes:
        node = node.extend(item)
    node.extend(EmptyEndEvent())
    return build_tree(start_event, data=data)


async def _other_pipeline_runs(runtime: Any) -> None:
    """A second pipeline on the same runtime runs to its end meanwhile."""
    act = activity("echo", uid("other"), text=splice("${x} ok"))
    tree = _line(act, data=Data(inputs={"${x}": plain("still")}))
    await run(runtime, tree)
    assert (await outputs(runtime, act.id))["echo"] == "still ok"


def _deep_chain() -> tuple[dict[str, Any], Any]:
    # Each variable is the previous one ten times: 10**11 characters if rendered.
    variables: dict[str, Any] = {"${v0}": plain("x" * 100)}
    for level in range(1, 10):
        variables[f"${{v{level}}}"] = splice(f"${{v{level - 1}}}" * 10)
    node = activity("echo", uid("amp"), text=splice("${v9}"))
    return _line(node, data=Data(inputs=variables)), node


def _wide_references() -> tuple[dict[str, Any], Any]:
    # One value of 900 KB, then referenced whole from many inputs and items.
    variables = {
        "${v0}": plain("x" * 900),
        "${v1}": splice("${v0}" * 30),
        "${big}": splice("${v1}" * 33),
    }
    node = activity("echo", uid("amp"), text=splice(["${big}"] * 100), more=splice("${big}"))
    return _line(node, data=Data(inputs=variables)), node


@pytest.mark.parametrize("shape", [_deep_chain, _wide_references], ids=["deep", "wide"])
async def test_an_amplifying_tree_fails_its_node_and_other_pipelines_run(
    runtime: Any, shape: Any
) -> None:
    tree, node = shape()
    assert len(json.dumps(tree)) < 4_000  # a small tree
    root_id = await start(runtime, tree)
    await _other_pipeline_runs(runtime)
    await finish(runtime, root_id, states.FAILED)

    found = await flat_states(runtime, root_id)
    assert found[node.id]["state"] == states.FAILED
    out = await outputs(runtime, node.id)
    ex_data = out["ex_data"]
    assert "inputs hydrate failed" in ex_data
    assert "characters" in ex_data
    assert "${v" in ex_data or "${big}" in ex_data  # names the variable or fragment
    assert len(json.dumps(out)) < 5_000  # nothing big was stored


#: About 10-20 ms of sandbox steps per fragment; ``%d`` makes each one distinct.
_HEAVY = "${len([1 for x in range(9999)]) + %d}"


async def test_a_cpu_heavy_template_fails_its_node_without_blocking_the_loop(
    runtime: Any,
) -> None:
    node = activity("echo", uid("heavy"), text=splice("".join(_HEAVY % i for i in range(300))))
    gaps: list[float] = []
    done = anyio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not done.is_set():
            await anyio.sleep(0.01)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        root_id = await start(runtime, _line(node))
        await _other_pipeline_runs(runtime)
        await finish(runtime, root_id, states.FAILED)
        done.set()
    elapsed = time.monotonic() - started

    ex_data = (await outputs(runtime, node.id))["ex_data"]
    assert "took longer than 1.0 s in total" in ex_data
    assert "${len([1 for x in range(9999)]) + " in ex_data  # names the fragment
    # One budget for the node, not 0.3 s for each of 300 fragments (90 s); the
    # bounds leave room for a loaded machine and still tell the two apart.
    assert elapsed < 10.0
    # Rendered on the loop, the node would hold it for the whole second.
    assert max(gaps) < 0.75, max(gaps)


async def test_a_cheap_template_still_renders(runtime: Any) -> None:
    node = activity("echo", uid("cheap"), text=splice("".join(_HEAVY % i for i in range(3))))
    await run(runtime, _line(node))
    assert (await outputs(runtime, node.id))["echo"] == "99991000010001"


def _exclusive(conditions: dict[int, str], default: int | None = None) -> tuple[Any, ...]:
    s, eg, cg = EmptyStartEvent(), ExclusiveGateway(id=uid("eg")), ConvergeGateway(id=uid("cg"))
    eg.conditions = dict(conditions)
    eg.default_condition_outgoing = default
    a0, a1 = activity("echo", uid("a0")), activity("echo", uid("a1"))
    s.extend(eg).connect(a0, a1).to(eg).converge(cg).extend(EmptyEndEvent())
    return s, eg, a0, a1


async def test_a_value_spliced_into_a_condition_does_not_change_the_branch(runtime: Any) -> None:
    s, _eg, admin, guest = _exclusive({0: '"${role}" == "admin"', 1: '"${role}" != "admin"'})
    role = 'guest" == "guest" and "admin'
    root_id = await run(runtime, build_tree(s, data=Data(inputs={"${role}": plain(role)})))

    found = await flat_states(runtime, root_id)
    assert admin.id not in found
    assert found[guest.id]["state"] == states.FINISHED


async def test_a_value_cannot_make_every_condition_true(runtime: Any) -> None:
    s = EmptyStartEvent()
    cpg = ConditionalParallelGateway(
        id=uid("cpg"),
        conditions={0: '"${v}" == "a"', 1: '"${v}" == "b"', 2: '"${v}" != "a"'},
    )
    branches = [activity("echo", uid(f"b{i}")) for i in range(3)]
    s.extend(cpg).connect(*branches).to(cpg).converge(ConvergeGateway()).extend(EmptyEndEvent())
    value = 'x" == "x" or "y'
    root_id = await run(runtime, build_tree(s, data=Data(inputs={"${v}": Var(Var.PLAIN, value)})))

    found = await flat_states(runtime, root_id)
    assert branches[0].id not in found
    assert branches[1].id not in found
    assert found[branches[2].id]["state"] == states.FINISHED


async def test_an_unquoted_value_with_operators_fails_the_gateway(runtime: Any) -> None:
    s, eg, admin, guest = _exclusive({0: '${role} == "admin"', 1: '${role} != "admin"'})
    role = 'guest" == "guest" and "admin'
    root_id = await start(runtime, build_tree(s, data=Data(inputs={"${role}": plain(role)})))
    await finish(runtime, root_id, states.FAILED)

    found = await flat_states(runtime, root_id)
    assert found[eg.id]["state"] == states.FAILED
    assert admin.id not in found
    assert guest.id not in found
    assert "not one value" in (await outputs(runtime, eg.id))["ex_data"]


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("${json.dumps(big * 10)}", "json.dumps() output"),
        ("${json.dumps([big] * 100)}", "sandbox limit"),
        ("${math.floor.__self__}", "refused"),
        ("${json.loads.__globals__}", "refused"),
        ("${math.isqrt(2**9999 * 2**9999)}", "sandbox limit"),
    ],
)
async def test_a_hostile_template_through_modules_fails_its_node_only(
    runtime: Any, template: str, reason: str
) -> None:
    modules_on = runtime.settings is not None and bool(runtime.settings.template_modules)
    node = activity("echo", uid("mod"), text=splice(template))
    tree = _line(node, data=Data(inputs={"${big}": plain("a" * 100_000)}))
    root_id = await start(runtime, tree)
    await _other_pipeline_runs(runtime)
    statically_refused = "__" in template
    if modules_on or statically_refused:
        await finish(runtime, root_id, states.FAILED)
        ex_data = (await outputs(runtime, node.id))["ex_data"]
        assert reason in ex_data
        assert template in ex_data
    else:
        # Without the modules the names are unknown: the fragment stays literal.
        await finish(runtime, root_id)
        assert (await outputs(runtime, node.id))["echo"] == template
