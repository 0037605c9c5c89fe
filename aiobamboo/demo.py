"""``aiobamboo demo``: a pipeline with every kind of step, on an embedded SQLite file.

start -> prepare -> parallel(fetch_a, fetch_b) -> converge -> sub-process
[start -> approve (waits for a callback) -> end] -> exclusive(${approved}) ->
publish | reject -> converge -> end
"""

from __future__ import annotations

from typing import Any

import anyio

from . import api, states
from .builder import (
    ConvergeGateway,
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    NodeOutput,
    ParallelGateway,
    Params,
    ServiceActivity,
    SubProcess,
    Var,
    build_tree,
)
from .component import Component, ComponentLibrary, Service
from .host import open_url

library = ComponentLibrary()


class Step(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        await anyio.sleep(0.2)
        data.outputs.message = data.get_one_of_inputs("message", "")
        return True


class Approval(Service):
    __need_schedule__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.approved = bool((callback_data or {}).get("approved"))
        return True


class StepComponent(Component):
    code = "demo_step"
    name = "Demo step"
    bound_service = Step
    auto_register = False


class ApprovalComponent(Component):
    code = "demo_approval"
    name = "Demo approval"
    bound_service = Approval
    auto_register = False


for _component in (StepComponent, ApprovalComponent):
    library.register(_component)
    # Also where the command line looks: `aiobamboo run aiobamboo.demo:build_demo`.
    ComponentLibrary.default.register(_component)


def _step(name: str, message: str) -> ServiceActivity:
    act = ServiceActivity(component_code="demo_step", name=name)
    act.component.inputs.message = Var(type=Var.SPLICE, value=message)
    return act


def build_demo() -> dict[str, Any]:
    sub_start = EmptyStartEvent(name="sub start")
    approve = ServiceActivity(component_code="demo_approval", name="approve")
    sub_start.extend(approve).extend(EmptyEndEvent(name="sub end"))
    sub_data = Data(
        inputs={
            "${release}": Var(type=Var.PLAIN, value=""),
            "${approved}": NodeOutput(type=Var.PLAIN, source_act=approve.id, source_key="approved"),
        },
        outputs=["${approved}"],
    )
    sub = SubProcess(
        start=sub_start,
        data=sub_data,
        params=Params({"${release}": Var(type=Var.SPLICE, value="${release}")}),
        name="approval",
    )

    start = EmptyStartEvent(name="start")
    fork = ParallelGateway(name="fork")
    join = ConvergeGateway(name="join")
    choose = ExclusiveGateway(
        conditions={0: "${approved} == True", 1: "${approved} == False"}, name="approved?"
    )
    merge = ConvergeGateway(name="merge")
    (
        start.extend(_step("prepare", "preparing ${release}"))
        .extend(fork)
        .connect(_step("fetch_a", "fetch a"), _step("fetch_b", "fetch b"))
        .to(fork)
        .converge(join)
        .extend(sub)
        .extend(choose)
        .connect(_step("publish", "publish ${release}"), _step("reject", "reject ${release}"))
        .to(choose)
        .converge(merge)
        .extend(EmptyEndEvent(name="end"))
    )
    data = Data(
        inputs={
            "${release}": Var(type=Var.PLAIN, value="v1.0"),
            "${approved}": NodeOutput(type=Var.PLAIN, source_act=sub.id, source_key="${approved}"),
        }
    )
    tree = build_tree(start, data=data)
    tree["name"] = "demo release"
    return tree


def _render(tree: dict[str, Any], names: dict[str, str]) -> str:
    (root,) = tree.values()
    children = sorted(root["children"].values(), key=lambda n: n["created_time"])
    lines = [f"  {names.get(n['id'], n['id'][:9]):<12} {n['state']}" for n in children]
    return "\n".join([f"pipeline {root['id'][:9]}  {root['state']}", *lines])


def _names(tree: dict[str, Any]) -> dict[str, str]:
    names: dict[str, str] = {}
    for key in ("start_event", "end_event"):
        names[tree[key]["id"]] = tree[key].get("name") or key
    for node in [*tree["activities"].values(), *tree["gateways"].values()]:
        names[node["id"]] = node.get("name") or node["type"]
        if node["type"] == "SubProcess":
            names.update(_names(node["pipeline"]))
    return names


async def run_demo(db: str, *, kept: bool = True) -> None:
    tree = build_demo()
    names = _names(tree)
    approve_id = next(
        n["id"]
        for s in tree["activities"].values()
        if s["type"] == "SubProcess"
        for n in s["pipeline"]["activities"].values()
    )
    where = db if kept else f"{db} (a temporary file; --db FILE keeps one)"
    print(f"aiobamboo demo: SQLite file {where}\n")
    async with open_url(db, components=library) as runtime:
        result = await api.run_pipeline(runtime, tree)
        assert result.result, result.message
        last = ""
        callback_sent = False
        with anyio.fail_after(30):
            while True:
                states_result = await api.get_pipeline_states(runtime, tree["id"])
                shown = _render(states_result.data or {}, names)
                if shown != last:
                    print(shown + "\n")
                    last = shown
                root = (states_result.data or {}).get(tree["id"], {})
                if root.get("state") == states.FINISHED:
                    break
                approve = root.get("children", {}).get(approve_id)
                if approve and approve["state"] == states.RUNNING and not callback_sent:
                    print("-> the approval waits for a callback; sending {'approved': True}\n")
                    sent = await api.callback(
                        runtime, approve_id, approve["version"], {"approved": True}
                    )
                    callback_sent = sent.result
                await anyio.sleep(0.05)
        outputs = await api.get_execution_data_outputs(runtime, approve_id)
        print(f"approval outputs: {outputs.data}")
        print("pipeline FINISHED")
