"""The processed tree read once into compact node and pipeline specs."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any

import attrs

from .. import template
from ..timing import NodeTiming, parse_timing


class NodeKind(enum.StrEnum):
    """What a node does, independent of the tree's ``type`` strings; one handler each."""

    START = "start"
    END = "end"
    ACTIVITY = "activity"
    SUBPROCESS = "subprocess"
    EXCLUSIVE = "exclusive"
    PARALLEL = "parallel"
    CONDITIONAL_PARALLEL = "conditional_parallel"
    CONVERGE = "converge"


START = NodeKind.START
END = NodeKind.END
ACTIVITY = NodeKind.ACTIVITY
SUBPROCESS = NodeKind.SUBPROCESS
EXCLUSIVE = NodeKind.EXCLUSIVE
PARALLEL = NodeKind.PARALLEL
CONDITIONAL_PARALLEL = NodeKind.CONDITIONAL_PARALLEL
CONVERGE = NodeKind.CONVERGE

_GATEWAY_KINDS = {
    "ExclusiveGateway": EXCLUSIVE,
    "ParallelGateway": PARALLEL,
    "ConditionalParallelGateway": CONDITIONAL_PARALLEL,
    "ConvergeGateway": CONVERGE,
}

PLAIN, SPLICE, COMPUTE = 1, 2, 3
_VAR_TYPES = {"plain": PLAIN, "splice": SPLICE, "lazy": COMPUTE}


@attrs.define(slots=True)
class InputSpec:
    need_render: bool
    value: Any


@attrs.define(slots=True)
class ContextVar:
    """A context value as declared (or written): ``type`` is PLAIN, SPLICE or COMPUTE."""

    type: int
    value: Any
    custom_type: str | None = None
    _refs: frozenset[str] | None = None

    @property
    def references(self) -> frozenset[str]:
        if self._refs is None:
            self._refs = (
                frozenset() if self.type == PLAIN else frozenset(template.references(self.value))
            )
        return self._refs


@attrs.define(slots=True)
class LoopConfig:
    enable: bool
    loop_times: int | None
    fail_skip: bool
    retryable: bool
    skippable: bool
    outputs_key: str


@attrs.define(slots=True, eq=False)
class NodeSpec:
    id: str
    type: str
    kind: NodeKind
    name: str
    pipeline_id: str
    targets: dict[str, str]
    can_skip: bool = True
    can_retry: bool = True
    error_ignorable: bool = False
    code: str = ""
    version: str | None = None
    inputs: dict[str, InputSpec] = attrs.Factory(dict)
    outputs: dict[str, str] = attrs.Factory(dict)
    #: A gateway's (flow_id, expr, target); other nodes share the empty tuple.
    conditions: Sequence[tuple[str, str, str]] = ()
    default_target: tuple[str, str] | None = None  # (flow_id, target)
    converge_gateway_id: str | None = None
    extra_info: dict[str, Any] = attrs.Factory(dict)
    subprocess: PipelineSpec | None = None
    loop: LoopConfig | None = None
    #: Timeout, retry policy and timer events of an activity.
    timing: NodeTiming | None = None

    @property
    def first_target(self) -> str:
        return next(iter(self.targets.values()))


@attrs.define(slots=True, eq=False)
class PipelineSpec:
    id: str
    start_id: str
    end_id: str
    context: dict[str, ContextVar]
    outputs: list[str]
    parent_id: str | None


@attrs.define(slots=True, eq=False)
class RunSpec:
    root_id: str
    nodes: dict[str, NodeSpec]
    pipelines: dict[str, PipelineSpec]
    #: The activities with a timing, by node id.
    timed: dict[str, NodeTiming] = attrs.Factory(dict)

    @property
    def root(self) -> PipelineSpec:
        return self.pipelines[self.root_id]


def context_key(name: str) -> str:
    return name if name.startswith("${") and name.endswith("}") else "${" + name + "}"


def bare_name(key: str) -> str:
    return key[2:-1] if key.startswith("${") and key.endswith("}") else key


def parse_tree(tree: dict[str, Any], subprocess_context: dict[str, Any] | None = None) -> RunSpec:
    """Read a validated, processed tree into a :class:`RunSpec`."""
    spec = RunSpec(root_id=tree["id"], nodes={}, pipelines={})
    _parse_pipeline(spec, tree, None, subprocess_context or {})
    return spec


def _var_value(var: Any) -> tuple[int, Any, str | None]:
    if not isinstance(var, dict):
        return PLAIN, var, None
    return _VAR_TYPES.get(var.get("type", "plain"), PLAIN), var.get("value"), var.get("custom_type")


def _parse_pipeline(
    spec: RunSpec, tree: dict[str, Any], parent_id: str | None, sub_ctx: dict[str, Any]
) -> PipelineSpec:
    pid = tree["id"]
    flows = tree.get("flows", {})
    data = tree.get("data") or {}
    context: dict[str, ContextVar] = {}
    # source node id -> {source_key: ctx_key}; filled by NodeOutput-style vars.
    output_maps: dict[str, dict[str, str]] = {}
    for key, var in (data.get("inputs") or {}).items():
        key = context_key(key)
        source = var.get("source_act") if isinstance(var, dict) else None
        if source:
            sources = (
                source
                if isinstance(source, list)
                else [{"source_act": source, "source_key": var.get("source_key")}]
            )
            for item in sources:
                output_maps.setdefault(item["source_act"], {})[item["source_key"]] = key
            if var.get("need_initialization"):
                context[key] = ContextVar(PLAIN, var.get("value"))
            continue
        vtype, value, custom = _var_value(var)
        context[key] = ContextVar(vtype, value, custom)
    if parent_id is not None:
        for key, value in sub_ctx.items():
            context[context_key(key)] = ContextVar(PLAIN, value)
    pipeline = PipelineSpec(
        id=pid,
        start_id=tree["start_event"]["id"],
        end_id=tree["end_event"]["id"],
        context=context,
        outputs=[context_key(k) for k in data.get("outputs") or []],
        parent_id=parent_id,
    )
    spec.pipelines[pid] = pipeline

    def targets_of(node: dict[str, Any]) -> dict[str, str]:
        outgoing = node.get("outgoing") or []
        if isinstance(outgoing, str):
            # Most nodes have one outgoing flow, which a built tree writes as a string.
            return {outgoing: flows[outgoing]["target"]}
        return {fid: flows[fid]["target"] for fid in outgoing}

    start = tree["start_event"]
    start_spec = NodeSpec(
        id=start["id"],
        type=start.get("type", "EmptyStartEvent"),
        kind=START,
        name=start.get("name") or "",
        pipeline_id=pid,
        targets=targets_of(start),
    )
    pre_render = data.get("pre_render_keys") or []
    if pre_render:
        start_spec.inputs["pre_render_keys"] = InputSpec(
            False, [context_key(k) for k in pre_render]
        )
    spec.nodes[start_spec.id] = start_spec

    end = tree["end_event"]
    spec.nodes[end["id"]] = NodeSpec(
        id=end["id"],
        type=end.get("type", "EmptyEndEvent"),
        kind=END,
        name=end.get("name") or "",
        pipeline_id=pid,
        targets={},
        can_skip=False,
        code=end.get("type", "EmptyEndEvent"),
    )

    for node in (tree.get("activities") or {}).values():
        if node["type"] == "SubProcess":
            sub = _parse_subprocess(spec, node, pid, targets_of(node), sub_ctx)
            spec.nodes[sub.id] = sub
        else:
            act = _parse_activity(node, pid, targets_of(node), context)
            spec.nodes[act.id] = act
            if act.timing is not None:
                spec.timed[act.id] = act.timing

    for node in (tree.get("gateways") or {}).values():
        gw = NodeSpec(
            id=node["id"],
            type=node["type"],
            kind=_GATEWAY_KINDS.get(node["type"], CONVERGE),
            name=node.get("name") or "",
            pipeline_id=pid,
            targets=targets_of(node),
            can_skip=node["type"] == "ExclusiveGateway",
            converge_gateway_id=node.get("converge_gateway_id"),
            extra_info=node.get("extra_info") or {},
        )
        gw.conditions = [
            (fid, cond.get("evaluate", ""), flows[fid]["target"])
            for fid, cond in (node.get("conditions") or {}).items()
        ]
        default = node.get("default_condition") or {}
        if default.get("flow_id"):
            gw.default_target = (default["flow_id"], flows[default["flow_id"]]["target"])
        spec.nodes[gw.id] = gw

    for source, mapping in output_maps.items():
        if source in spec.nodes:
            spec.nodes[source].outputs.update(mapping)
    return pipeline


def _hoisted_inputs(
    raw: dict[str, Any], node_id: str, context: dict[str, ContextVar]
) -> dict[str, InputSpec]:
    """Inputs, with each lazy one hoisted into a COMPUTE value of the pipeline.

    The hoisted key is ``${<key>_<node id>}``; the input becomes a reference to it.
    A splice input is rendered unless it says ``need_render: False``; plain ones
    (and unknown types) are taken as they are.
    """
    inputs: dict[str, InputSpec] = {}
    spec = InputSpec  # a local: this loop runs once per input of every activity
    for key, var in raw.items():
        if not isinstance(var, dict):
            inputs[key] = spec(False, var)
            continue
        get = var.get
        vtype = get("type", "plain")
        if vtype == "splice":
            inputs[key] = spec(get("need_render") is not False, get("value"))
        elif vtype == "lazy":
            hoisted = context_key(f"{bare_name(key)}_{node_id}")
            context[hoisted] = ContextVar(COMPUTE, get("value"), get("custom_type"))
            inputs[key] = spec(True, hoisted)
        else:
            inputs[key] = spec(False, get("value"))
    return inputs


def _parse_activity(
    node: dict[str, Any], pid: str, targets: dict[str, str], context: dict[str, ContextVar]
) -> NodeSpec:
    component = node.get("component") or {}
    raw_inputs = component.get("inputs")
    inputs = _hoisted_inputs(raw_inputs, node["id"], context) if raw_inputs else {}
    loop = None
    raw_loop = node.get("loop_config")
    if isinstance(raw_loop, dict) and raw_loop.get("enable"):
        loop = LoopConfig(
            enable=True,
            loop_times=raw_loop.get("loop_times"),
            fail_skip=bool(raw_loop.get("fail_skip", False)),
            # Off unless the tree turns them on, as in the original.
            retryable=bool(raw_loop.get("retryable", False)),
            skippable=bool(raw_loop.get("skippable", False)),
            outputs_key=raw_loop.get("outputs_key") or "outputs",
        )
    return NodeSpec(
        id=node["id"],
        type="ServiceActivity",
        kind=ACTIVITY,
        name=node.get("name") or "",
        pipeline_id=pid,
        targets=targets,
        can_skip=bool(node.get("skippable", True)),
        can_retry=bool(node.get("retryable", True)),
        error_ignorable=bool(node.get("error_ignorable", False)),
        code=component.get("code", ""),
        version=component.get("version"),
        inputs=inputs,
        loop=loop,
        # parse_timing reads only these keys: when none is set there is no timing.
        timing=parse_timing(node)
        if node.get("timeout_config") is not None
        or node.get("timeout") is not None
        or node.get("retry_policy") is not None
        or node.get("events") is not None
        else None,
    )


def _parse_subprocess(
    spec: RunSpec,
    node: dict[str, Any],
    pid: str,
    targets: dict[str, str],
    sub_ctx: dict[str, Any],
) -> NodeSpec:
    params = {context_key(k): v for k, v in (node.get("params") or {}).items()}
    parent_context = spec.pipelines[pid].context if pid in spec.pipelines else {}
    sub = NodeSpec(
        id=node["id"],
        type="SubProcess",
        kind=SUBPROCESS,
        name=node.get("name") or "",
        pipeline_id=pid,
        targets=targets,
        can_skip=False,
        inputs=_hoisted_inputs(params, node["id"], parent_context),
    )
    sub.subprocess = _parse_pipeline(spec, node["pipeline"], pid, sub_ctx)
    return sub
