"""Every validation rule, accepted and rejected, plus the start-node helpers."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest

from aiobamboo import validator
from aiobamboo.builder import (
    ConditionalParallelGateway,
    ConvergeGateway,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    ExecutableEndEvent,
    ParallelGateway,
    ServiceActivity,
    SubProcess,
    build_tree,
)
from aiobamboo.exceptions import (
    ConnectionValidateError,
    ConvergeMatchError,
    CycleError,
    InvalidTreeError,
    IsolateNodeError,
    StartPositionInvalidError,
    StreamValidateError,
)
from aiobamboo.validator import (
    add_sink_type,
    get_allowed_start_node_ids,
    get_skipped_execute_node_ids,
    validate_and_process_pipeline,
    validate_pipeline_start_node,
)

# -- helpers ---------------------------------------------------------------------------

Tree = dict[str, Any]


def sa(node_id: str) -> ServiceActivity:
    return ServiceActivity("echo", id=node_id)


def eg(node_id: str, branches: int = 2) -> ExclusiveGateway:
    return ExclusiveGateway(conditions=dict.fromkeys(range(branches), "True"), id=node_id)


def pg(node_id: str) -> ParallelGateway:
    return ParallelGateway(id=node_id)


def cg(node_id: str) -> ConvergeGateway:
    return ConvergeGateway(id=node_id)


def start(node_id: str = "s") -> EmptyStartEvent:
    return EmptyStartEvent(id=node_id)


def end(node_id: str = "end") -> EmptyEndEvent:
    return EmptyEndEvent(id=node_id)


def chain_tree(length: int = 1, pipeline_id: str = "p") -> Tree:
    """``s -> a1 -> ... -> a<length> -> end``."""
    s = start()
    current: Any = s
    for i in range(1, length + 1):
        current = current.extend(sa(f"a{i}"))
    current.extend(end())
    return build_tree(s, id=pipeline_id)


def diamond_tree(kind: str = "pg") -> Tree:
    """``s -> g -> [a, b] -> c -> end`` with a parallel or exclusive gateway ``g``."""
    s, c = start(), cg("c")
    gateway = pg("g") if kind == "pg" else eg("g")
    s.extend(gateway).connect(sa("a"), sa("b")).to(gateway).converge(c).extend(end())
    return build_tree(s, id="p")


def node(tree: Tree, node_id: str) -> Any:
    """The node dict ``node_id`` of ``tree``, wherever it is kept."""
    for key in ("start_event", "end_event"):
        if tree[key]["id"] == node_id:
            return tree[key]
    for key in ("activities", "gateways"):
        if node_id in tree[key]:
            return tree[key][node_id]
    raise KeyError(node_id)


def flow_between(tree: Tree, source: str, target: str) -> str:
    return str(
        next(
            fid
            for fid, f in tree["flows"].items()
            if f["source"] == source and f["target"] == target
        )
    )


def _remove(holder: dict[str, Any], key: str, fid: str) -> None:
    value = holder[key]
    if isinstance(value, list):
        value.remove(fid)
    else:
        holder[key] = ""


def _add(holder: dict[str, Any], key: str, fid: str, as_list: bool) -> None:
    value = holder[key]
    if isinstance(value, list):
        value.append(fid)
    elif value == "" and not as_list:
        holder[key] = fid
    else:
        holder[key] = [value, fid] if value else [fid]


def redirect(tree: Tree, fid: str, target: str) -> None:
    """Point flow ``fid`` at ``target``, keeping incoming lists consistent."""
    old = tree["flows"][fid]["target"]
    _remove(node(tree, old), "incoming", fid)
    _add(node(tree, target), "incoming", fid, as_list=True)
    tree["flows"][fid]["target"] = target


def add_flow(tree: Tree, fid: str, source: str, target: str) -> None:
    """Add flow ``fid`` from ``source`` to ``target`` and list it on both nodes."""
    tree["flows"][fid] = {"is_default": False, "source": source, "target": target, "id": fid}
    src = node(tree, source)
    _add(src, "outgoing", fid, as_list=isinstance(src["outgoing"], list))
    _add(node(tree, target), "incoming", fid, as_list=True)
    if "conditions" in src:
        src["conditions"][fid] = {"evaluate": "True"}


def remove_flow(tree: Tree, fid: str) -> None:
    f = tree["flows"].pop(fid)
    src = node(tree, f["source"])
    _remove(src, "outgoing", fid)
    _remove(node(tree, f["target"]), "incoming", fid)
    src.get("conditions", {}).pop(fid, None)


def rejects(
    tree: Any, error: type[InvalidTreeError], *ids: str, cycle_tolerate: bool = False
) -> InvalidTreeError:
    """Validation raises exactly ``error``, naming ``ids`` in node_ids and message."""
    with pytest.raises(InvalidTreeError) as info:
        validate_and_process_pipeline(tree, cycle_tolerate=cycle_tolerate)
    assert type(info.value) is error, str(info.value)
    assert info.value.message
    for node_id in ids:
        assert node_id in info.value.node_ids, (node_id, info.value.node_ids)
        assert node_id in info.value.message
    return info.value


def accepts(tree: Tree, cycle_tolerate: bool = False) -> Tree:
    validate_and_process_pipeline(tree, cycle_tolerate=cycle_tolerate)
    return tree


def converges(tree: Tree) -> dict[str, str | None]:
    return {
        gid: g.get("converge_gateway_id")
        for gid, g in tree["gateways"].items()
        if g["type"] != "ConvergeGateway"
    }


def test_public_names() -> None:
    assert validator.__all__ == [
        "add_sink_type",
        "count_nodes",
        "get_allowed_start_node_ids",
        "get_skipped_execute_node_ids",
        "validate_and_process_pipeline",
        "validate_pipeline_start_node",
    ]


# -- structure -----------------------------------------------------------------------


@pytest.mark.parametrize("garbage", [None, [], "tree", 3, {"id": "p"}])
def test_tree_must_be_a_pipeline_dict(garbage: Any) -> None:
    rejects(garbage, InvalidTreeError)


@pytest.mark.parametrize(
    "key", ["start_event", "end_event", "activities", "gateways", "flows", "data"]
)
def test_top_level_keys_are_required(key: str) -> None:
    tree = chain_tree()
    del tree[key]
    error = rejects(tree, InvalidTreeError, "p")
    assert repr(key) in error.message
    tree = chain_tree()
    tree[key] = []
    rejects(tree, InvalidTreeError, "p")


def test_pipeline_id_must_be_a_string() -> None:
    tree = chain_tree()
    tree["id"] = 5
    error = rejects(tree, InvalidTreeError)
    assert "'id'" in error.message


def test_node_id_must_match_its_key() -> None:
    tree = chain_tree()
    tree["activities"]["a1"]["id"] = "other"
    rejects(tree, InvalidTreeError, "a1", "other")


@pytest.mark.parametrize(
    ("where", "bad_type"),
    [
        ("activities", "ExclusiveGateway"),
        ("activities", "Nonsense"),
        ("gateways", "ServiceActivity"),
    ],
)
def test_node_types_must_fit_their_group(where: str, bad_type: str) -> None:
    tree = diamond_tree()
    node_id = "a" if where == "activities" else "g"
    tree[where][node_id]["type"] = bad_type
    error = rejects(tree, InvalidTreeError, node_id)
    assert "'type'" in error.message


def test_start_and_end_types() -> None:
    tree = chain_tree()
    tree["start_event"]["type"] = "ServiceActivity"
    rejects(tree, InvalidTreeError, "s")
    tree = chain_tree()
    tree["end_event"]["type"] = "ExclusiveGateway"
    rejects(tree, InvalidTreeError, "end")
    tree = chain_tree()
    tree["end_event"]["type"] = "AnyHandlerCode"
    accepts(tree)


def test_add_sink_type_is_accepted_and_not_needed() -> None:
    add_sink_type("Notify")
    tree = chain_tree()
    tree["end_event"]["type"] = "NeverRegistered"
    accepts(tree)


@pytest.mark.parametrize("bad", [3, ["f", 3], [""], {"f": 1}])
def test_incoming_and_outgoing_must_be_flow_ids(bad: Any) -> None:
    tree = chain_tree()
    tree["activities"]["a1"]["outgoing"] = bad
    rejects(tree, InvalidTreeError, "a1")


def test_flow_listed_twice_by_a_node() -> None:
    tree = chain_tree()
    fid = flow_between(tree, "s", "a1")
    tree["activities"]["a1"]["incoming"] = [fid, fid]
    error = rejects(tree, InvalidTreeError, "a1")
    assert "twice" in error.message


def test_name_must_be_a_string_or_none() -> None:
    tree = chain_tree()
    tree["activities"]["a1"]["name"] = 1
    rejects(tree, InvalidTreeError, "a1")
    tree["activities"]["a1"]["name"] = "Step"
    accepts(tree)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("component", None),
        ("component", {"inputs": {}}),
        ("component", {"code": 1, "inputs": {}}),
        ("component", {"code": "echo"}),
        ("component", {"code": "echo", "inputs": [], "version": "1"}),
        ("component", {"code": "echo", "inputs": {}, "version": 1}),
        ("component", {"code": "echo", "inputs": {"x": 1}}),
        ("error_ignorable", "yes"),
        ("skippable", None),
        ("retryable", 1),
        ("optional", "no"),
        ("timeout", "10"),
        ("timeout", True),
        ("loop_config", []),
        ("loop_config", {"loop_times": "3"}),
        ("loop_config", {"enable": 1}),
        ("loop_config", {"outputs_key": 1}),
    ],
)
def test_service_activity_fields(key: str, value: Any) -> None:
    tree = chain_tree()
    tree["activities"]["a1"][key] = value
    rejects(tree, InvalidTreeError, "a1")


def test_service_activity_fields_accepted() -> None:
    tree = chain_tree()
    act = tree["activities"]["a1"]
    act["component"] = {"code": None, "inputs": {}, "version": "legacy"}
    act["timeout"] = 10
    act["loop_config"] = {"enable": True, "loop_times": 2, "outputs_key": "out", "fail_skip": False}
    accepts(tree)


@pytest.mark.parametrize(
    "var",
    [
        None,
        {"value": 1},
        {"type": "other", "value": 1},
        {"type": "plain"},
        {"type": "lazy", "value": 1},
        {"type": "plain", "value": 1, "need_render": "no"},
        {"type": "plain", "value": None, "source_act": "a1"},
        {"type": "plain", "value": None, "source_act": [{"source_act": "a1"}]},
        {"type": "plain", "value": None, "source_act": 3},
        {"type": "plain", "values": 1},
        {"type": ["plain"], "value": 1},
        {"type": "lazy", "value": 1, "custom_type": 2},
        {"type": "splice", "value": 1, "need_render": None},
    ],
)
def test_variables_are_checked(var: Any) -> None:
    tree = chain_tree()
    tree["activities"]["a1"]["component"]["inputs"]["x"] = var
    rejects(tree, InvalidTreeError, "a1")
    tree = chain_tree()
    tree["data"]["inputs"]["${x}"] = var
    error = rejects(tree, InvalidTreeError)
    assert "data inputs" in error.message


def test_variables_accepted() -> None:
    tree = chain_tree()
    tree["data"]["inputs"] = {
        "${a}": {"type": "plain", "value": 1, "is_param": True},
        "${b}": {"type": "splice", "value": "${a}", "need_render": False},
        "${c}": {"type": "lazy", "value": "v", "custom_type": "upper"},
        "${d}": {"type": "plain", "value": None, "source_act": "a1", "source_key": "k"},
        "${e}": {
            "type": "plain",
            "value": 0,
            "source_act": [{"source_act": "a1", "source_key": "k"}],
            "need_initialization": True,
        },
    }
    accepts(tree)


@pytest.mark.parametrize(
    ("key", "value"),
    [("inputs", []), ("outputs", "x"), ("outputs", [1]), ("pre_render_keys", "x")],
)
def test_data_block(key: str, value: Any) -> None:
    tree = chain_tree()
    tree["data"][key] = value
    rejects(tree, InvalidTreeError, "p")
    tree = chain_tree()
    del tree["data"]["outputs"]
    rejects(tree, InvalidTreeError, "p")


def test_data_outputs_may_be_a_dict_as_in_old_examples() -> None:
    tree = chain_tree()
    tree["data"] = {"inputs": {}, "outputs": {}, "pre_render_keys": ["${x}"]}
    accepts(tree)


def test_gateway_conditions() -> None:
    tree = diamond_tree("eg")
    fid = flow_between(tree, "g", "a")
    gateway = tree["gateways"]["g"]
    wrong_conditions: list[Any] = [
        None,
        {"f-unknown": {"evaluate": "1"}},
        {fid: "1"},
        {fid: {"evaluate": 1}},
    ]
    for bad in wrong_conditions:
        broken = copy.deepcopy(tree)
        broken["gateways"]["g"]["conditions"] = bad
        rejects(broken, InvalidTreeError, "g")
    wrong_defaults: list[Any] = [[], {"flow_id": "x"}]
    for bad in wrong_defaults:
        broken = copy.deepcopy(tree)
        broken["gateways"]["g"]["default_condition"] = bad
        rejects(broken, InvalidTreeError, "g")
    broken = copy.deepcopy(tree)
    broken["gateways"]["g"]["extra_info"] = "x"
    rejects(broken, InvalidTreeError, "g")
    gateway["default_condition"] = {"flow_id": fid}
    gateway["extra_info"] = {"strategy": 2}
    del gateway["conditions"][fid]  # a flow without a condition is never taken; that is allowed
    accepts(tree)


def test_flow_records() -> None:
    tree = chain_tree()
    fid = flow_between(tree, "s", "a1")
    for key, value in (("id", "other"), ("source", 1), ("target", None), ("is_default", "no")):
        broken = copy.deepcopy(tree)
        broken["flows"][fid][key] = value
        rejects(broken, InvalidTreeError, fid)
    broken = copy.deepcopy(tree)
    broken["flows"][fid] = "s->a1"
    rejects(broken, InvalidTreeError, fid)


# -- ids -----------------------------------------------------------------------------


def test_node_id_used_twice_in_one_pipeline() -> None:
    tree = diamond_tree()
    tree["gateways"]["a"] = copy.deepcopy(tree["gateways"]["g"])
    tree["gateways"]["a"]["id"] = "a"
    error = rejects(tree, InvalidTreeError, "a")
    assert "used twice" in error.message


def test_start_and_end_share_an_id() -> None:
    tree = chain_tree()
    tree["end_event"]["id"] = "s"
    rejects(tree, InvalidTreeError, "s")


def test_node_id_equal_to_a_flow_id() -> None:
    tree = chain_tree()
    fid = flow_between(tree, "a1", "end")
    tree["flows"]["a1"] = tree["flows"].pop(fid)
    tree["flows"]["a1"]["id"] = "a1"
    tree["activities"]["a1"]["outgoing"] = "a1"
    tree["end_event"]["incoming"] = ["a1"]
    rejects(tree, InvalidTreeError, "a1")


def test_pipeline_id_equal_to_a_node_id() -> None:
    rejects(chain_tree(pipeline_id="a1"), InvalidTreeError, "a1")


def subprocess_tree(inner_ids: tuple[str, str, str] = ("s2", "a2", "end2")) -> Tree:
    inner = start(inner_ids[0])
    inner.extend(sa(inner_ids[1])).extend(end(inner_ids[2]))
    s = start()
    s.extend(SubProcess(start=inner, id="sub")).extend(end())
    return build_tree(s, id="p")


def test_ids_are_unique_across_subprocesses() -> None:
    accepts(subprocess_tree())
    rejects(subprocess_tree(("s", "a2", "end2")), InvalidTreeError, "s")
    tree = subprocess_tree()
    inner = tree["activities"]["sub"]["pipeline"]
    outer_flow = flow_between(tree, "s", "sub")
    inner_flow = flow_between(inner, "s2", "a2")
    inner["flows"][outer_flow] = inner["flows"].pop(inner_flow)
    inner["flows"][outer_flow]["id"] = outer_flow
    inner["start_event"]["outgoing"] = outer_flow
    inner["activities"]["a2"]["incoming"] = [outer_flow]
    rejects(tree, InvalidTreeError, outer_flow)


def test_nested_pipeline_id_must_equal_the_subprocess_id() -> None:
    tree = subprocess_tree()
    tree["activities"]["sub"]["pipeline"]["id"] = "other"
    rejects(tree, InvalidTreeError, "sub", "other")


def test_subprocess_needs_a_pipeline_and_params() -> None:
    tree = subprocess_tree()
    del tree["activities"]["sub"]["pipeline"]
    rejects(tree, InvalidTreeError, "sub")
    tree = subprocess_tree()
    tree["activities"]["sub"]["params"] = [1]
    rejects(tree, InvalidTreeError, "sub")


def test_nested_pipelines_are_checked() -> None:
    tree = subprocess_tree()
    del tree["activities"]["sub"]["pipeline"]["activities"]["a2"]["component"]
    rejects(tree, InvalidTreeError, "a2")
    tree = subprocess_tree()
    inner = tree["activities"]["sub"]["pipeline"]
    inner["activities"]["a2"]["outgoing"] = [inner["activities"]["a2"]["outgoing"], "fx"]
    rejects(tree, ConnectionValidateError, "a2", "fx")


def test_nested_pipeline_is_validated_and_processed_first() -> None:
    tree = subprocess_tree()
    inner = tree["activities"]["sub"]["pipeline"]
    inner["activities"]["a2"]["incoming"] = inner["activities"]["a2"]["incoming"][0]
    accepts(tree)
    assert isinstance(inner["activities"]["a2"]["incoming"], list)


def test_a_pipeline_object_used_twice_is_rejected() -> None:
    tree = subprocess_tree()
    tree["activities"]["sub"]["pipeline"] = tree
    rejects(tree, InvalidTreeError)


# -- flows against incoming/outgoing ---------------------------------------------------


def test_dangling_flow() -> None:
    tree = chain_tree()
    fid = flow_between(tree, "a1", "end")
    tree["flows"][fid]["target"] = "ghost"
    rejects(tree, ConnectionValidateError, fid, "ghost")
    tree = chain_tree()
    fid = flow_between(tree, "a1", "end")
    tree["flows"][fid]["source"] = "ghost"
    rejects(tree, ConnectionValidateError, fid, "ghost")


def test_node_lists_a_missing_flow() -> None:
    tree = chain_tree()
    tree["end_event"]["incoming"].append("f-missing")
    rejects(tree, ConnectionValidateError, "end", "f-missing")


def test_node_lists_a_flow_of_another_node() -> None:
    tree = chain_tree(2)
    fid = flow_between(tree, "s", "a1")
    tree["activities"]["a2"]["incoming"].append(fid)
    rejects(tree, ConnectionValidateError, "a2", fid)


def test_flow_not_listed_by_its_nodes() -> None:
    tree = chain_tree()
    fid = flow_between(tree, "a1", "end")
    tree["end_event"]["incoming"] = []
    rejects(tree, ConnectionValidateError, "end", fid)


# -- connection rules ----------------------------------------------------------------


def test_incoming_is_normalised_to_lists() -> None:
    tree = diamond_tree()
    for nid in ("a", "g", "end"):  # single incoming flows written as plain ids
        node(tree, nid)["incoming"] = node(tree, nid)["incoming"][0]
    accepts(tree)
    for nid in ("a", "b", "g", "c", "end"):
        assert isinstance(node(tree, nid)["incoming"], list)
    assert tree["start_event"]["incoming"] == ""
    assert isinstance(tree["activities"]["a"]["outgoing"], str)
    before = copy.deepcopy(tree)
    accepts(tree)
    assert tree == before


def test_none_for_no_flows_is_read_as_an_empty_list() -> None:
    # The style of trees exported by bk-sops: None where a node has no flows.
    tree = chain_tree()
    tree["start_event"]["incoming"] = None
    tree["end_event"]["outgoing"] = None
    accepts(tree)
    assert tree["start_event"]["incoming"] == []
    assert tree["end_event"]["outgoing"] == []


def test_none_where_flows_are_needed_is_still_refused() -> None:
    tree = chain_tree()
    node(tree, "a1")["incoming"] = None
    rejects(tree, ConnectionValidateError, "a1")


def test_start_event_rules() -> None:
    tree = chain_tree()
    add_flow(tree, "f-extra", "s", "end")
    error = rejects(tree, ConnectionValidateError, "s")
    assert "2 outgoing flows, needs exactly 1" in error.message
    assert "may not connect to end event end" in error.message
    s, e = start(), end()
    s.extend(e)
    error = rejects(build_tree(s), ConnectionValidateError, "s")
    assert "may not connect to end event" in error.message


def test_start_event_may_not_be_entered() -> None:
    tree = diamond_tree("eg")
    add_flow(tree, "f-back", "g", "s")
    error = rejects(tree, ConnectionValidateError, "s", "g", cycle_tolerate=True)
    assert "may not connect to start event s" in error.message


def test_end_event_rules() -> None:
    tree = chain_tree()
    add_flow(tree, "f-out", "end", "a1")
    error = rejects(tree, ConnectionValidateError, "end", cycle_tolerate=True)
    assert "1 outgoing flow, needs none" in error.message


def test_every_failing_node_is_reported() -> None:
    tree = chain_tree(3)
    add_flow(tree, "f-x", "a1", "a3")
    add_flow(tree, "f-y", "a2", "end")
    error = rejects(tree, ConnectionValidateError, "a1", "a2")
    assert set(error.node_ids) == {"a1", "a2"}


def test_node_with_no_outgoing_flow_is_reported() -> None:
    # The original checked degrees only while looping over targets and missed these.
    tree = diamond_tree()
    remove_flow(tree, flow_between(tree, "b", "c"))
    rejects(tree, ConnectionValidateError, "b")
    tree = diamond_tree()
    for fid in list(tree["gateways"]["g"]["outgoing"]):
        remove_flow(tree, fid)
    rejects(tree, ConnectionValidateError, "g", "a", "b")


def test_converge_gateway_has_one_outgoing() -> None:
    tree = diamond_tree("eg")
    add_flow(tree, "f-x", "c", "end")
    rejects(tree, ConnectionValidateError, "c")


def test_gateway_degree_limit() -> None:
    s, gateway = start(), eg("g", 1000)
    terminal = end()
    s.extend(gateway).connect(*([terminal] * 1000))
    accepts(build_tree(s))
    s, gateway = start(), eg("g", 1001)
    s.extend(gateway).connect(*([terminal] * 1001))
    error = rejects(build_tree(s), ConnectionValidateError, "g", "end")
    assert "1001" in error.message


# -- cycles and reachability ------------------------------------------------------------


def loop_tree() -> Tree:
    """``s -> a1 -> a2 -> g -> [a1 (loop), end]``."""
    s, a1, g = start(), sa("a1"), eg("g")
    s.extend(a1).extend(sa("a2")).extend(g).connect(a1, end())
    return build_tree(s, id="p")


def test_cycles_need_cycle_tolerate() -> None:
    error = rejects(loop_tree(), CycleError, "a1", "a2", "g")
    assert "cycle_tolerate" in error.message
    tree = accepts(loop_tree(), cycle_tolerate=True)
    assert converges(tree) == {"g": None}


def test_self_loop_is_a_cycle() -> None:
    s, g = start(), eg("g")
    s.extend(g).connect(g, end())
    rejects(build_tree(s), CycleError, "g")
    accepts(build_tree(s), cycle_tolerate=True)


def test_loop_without_exit() -> None:
    s, g1, g2, a = start(), eg("g1"), eg("g2"), sa("a")
    s.extend(g1).connect(a, end())
    a.extend(g2).connect(a, a)
    error = rejects(build_tree(s), CycleError, "a", "g2", cycle_tolerate=True)
    assert "never reaches the end event" in error.message


def test_isolated_nodes() -> None:
    tree = chain_tree()
    tree["activities"]["x1"] = copy.deepcopy(tree["activities"]["a1"]) | {
        "id": "x1",
        "incoming": ["fx2"],
        "outgoing": "fx1",
    }
    tree["activities"]["x2"] = copy.deepcopy(tree["activities"]["a1"]) | {
        "id": "x2",
        "incoming": ["fx1"],
        "outgoing": "fx2",
    }
    tree["flows"]["fx1"] = {"id": "fx1", "source": "x1", "target": "x2", "is_default": False}
    tree["flows"]["fx2"] = {"id": "fx2", "source": "x2", "target": "x1", "is_default": False}
    error = rejects(tree, IsolateNodeError, "x1", "x2", cycle_tolerate=True)
    assert "not reachable from the start event" in error.message
    rejects(tree, CycleError, "x1", "x2")


def test_a_loop_free_tree_is_walked_in_the_order_of_each_nodes_outgoing_flows() -> None:
    """Kahn's order of a loop-free tree is the depth-first walk's topological order."""
    from aiobamboo.validator._process import analyse_tree

    s, g, c, a = start(), pg("g"), cg("c"), sa("a")
    s.extend(g).connect(sa("b1"), sa("b2"), sa("b3")).to(g).converge(c).extend(a)
    a.extend(end())
    (analysis,) = analyse_tree(build_tree(s, id="p"), cycle_tolerate=False, process=False)
    assert analysis.walk.order == ["s", "g", "b1", "b2", "b3", "c", "a", "end"]
    assert analysis.walk.back == frozenset()
    tree = loop_tree()
    (looping,) = analyse_tree(tree, cycle_tolerate=True, process=False)
    assert looping.walk.back == {flow_between(tree, "g", "a1")}


def test_connection_rules_keep_what_their_fast_check_relies_on() -> None:
    """The fast connection check knows the forbidden targets only through the degrees:
    nothing may enter the start event, which alone may not lead to the end event."""
    from aiobamboo.validator._connection import _RULES
    from aiobamboo.validator._model import Kind

    assert _RULES[Kind.START].max_in == 0
    assert _RULES[Kind.START].forbidden_targets == {Kind.START, Kind.END}
    for kind, rule in _RULES.items():
        if kind is not Kind.START:
            assert rule.forbidden_targets == {Kind.START}, kind


def test_node_without_incoming_flow() -> None:
    tree = chain_tree()
    tree["activities"]["x"] = copy.deepcopy(tree["activities"]["a1"]) | {
        "id": "x",
        "incoming": [],
        "outgoing": "fx",
    }
    add_flow(tree, "fx", "x", "end")
    tree["activities"]["x"]["outgoing"] = "fx"
    rejects(tree, ConnectionValidateError, "x")


# -- gateway matching ------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pg", "eg"])
def test_converge_gateway_id_is_written(kind: str) -> None:
    tree = accepts(diamond_tree(kind))
    assert tree["gateways"]["g"]["converge_gateway_id"] == "c"
    assert "converge_gateway_id" not in tree["gateways"]["c"]


def test_conditional_parallel_gateway_gets_its_converge() -> None:
    s, g, c = start(), ConditionalParallelGateway(conditions={0: "1", 1: "1"}, id="g"), cg("c")
    s.extend(g).connect(sa("a"), sa("b")).to(g).converge(c).extend(end())
    assert converges(accepts(build_tree(s))) == {"g": "c"}


def test_parallel_branch_reaching_the_end_event() -> None:
    tree = diamond_tree()
    redirect(tree, flow_between(tree, "b", "c"), "end")
    error = rejects(tree, ConvergeMatchError, "g")
    assert "reaches the end event" in error.message


def test_parallel_branches_meeting_different_converges() -> None:
    s, g, c1, c2, x = start(), pg("g"), cg("c1"), cg("c2"), sa("x")
    s.extend(g).connect(sa("a"), sa("b"))
    g.outgoing[0].extend(c1).extend(x).extend(c2).extend(end())
    g.outgoing[1].extend(c2)
    error = rejects(build_tree(s), ConvergeMatchError, "g")
    assert "c1" in error.message
    assert "c2" in error.message


def test_parallel_branch_looping_back() -> None:
    s, a0, g, c = start(), sa("a0"), pg("g"), cg("c")
    s.extend(a0).extend(g).connect(sa("a"), sa("b"), a0)
    g.outgoing[0].extend(c)
    g.outgoing[1].extend(c).extend(end())
    error = rejects(build_tree(s), ConvergeMatchError, "g", cycle_tolerate=True)
    assert "loops back to ServiceActivity a0" in error.message


def test_nested_parallel_gateways_need_their_own_converges() -> None:
    s, outer, inner, c = start(), pg("outer"), pg("inner"), cg("c")
    s.extend(outer).connect(inner, sa("w"))
    inner.connect(sa("a"), sa("b")).converge(c)
    outer.outgoing[1].extend(c)
    c.extend(end())
    error = rejects(build_tree(s), ConvergeMatchError, "outer")
    assert "which closes ParallelGateway inner" in error.message
    s, outer, inner, c1, c2 = start(), pg("outer"), pg("inner"), cg("c1"), cg("c2")
    s.extend(outer).connect(inner, sa("w"))
    inner.connect(sa("a"), sa("b")).converge(c1).extend(c2)
    outer.outgoing[1].extend(c2)
    c2.extend(end())
    assert converges(accepts(build_tree(s))) == {"outer": "c2", "inner": "c1"}


def test_sibling_parallel_gateways_may_not_share_a_converge() -> None:
    s, choice, p1, p2, c = start(), eg("choice"), pg("p1"), pg("p2"), cg("c")
    s.extend(choice).connect(p1, p2)
    p1.connect(sa("a"), sa("b")).converge(c)
    p2.connect(sa("x"), sa("y")).converge(c)
    c.extend(end())
    error = rejects(build_tree(s), ConvergeMatchError, "c")
    assert "needs its own converge gateway" in error.message


def test_converge_with_fewer_incoming_flows_than_branches() -> None:
    s, g, merge, c = start(), pg("g"), sa("merge"), cg("c")
    s.extend(g).connect(sa("a"), sa("b")).to(g).converge(merge).extend(c).extend(end())
    error = rejects(build_tree(s), ConvergeMatchError, "g", "c")
    assert "only 1 incoming" in error.message


def test_exclusive_branches_meeting_different_converges() -> None:
    s, g, c1, c2 = start(), eg("g", 3), cg("c1"), cg("c2")
    s.extend(g).connect(sa("a"), sa("b"), sa("x"))
    g.outgoing[0].extend(c1)
    g.outgoing[1].extend(c1).extend(c2)
    g.outgoing[2].extend(c2).extend(end())
    error = rejects(build_tree(s), ConvergeMatchError, "g")
    assert "must be the same" in error.message


def test_exclusive_gateway_without_converge() -> None:
    s, g = start(), eg("g")
    s.extend(g).connect(sa("a"), sa("b")).to(g).converge(end())
    tree = build_tree(s)
    tree["gateways"]["g"]["converge_gateway_id"] = "stale"
    assert converges(accepts(tree)) == {"g": None}


def test_exclusive_gateway_with_converge_and_end_branch() -> None:
    s, g, c = start(), eg("g", 3), cg("c")
    terminal = end()
    s.extend(g).connect(sa("a"), sa("b"), terminal)
    g.outgoing[0].extend(c)
    g.outgoing[1].extend(c).extend(terminal)
    assert converges(accepts(build_tree(s))) == {"g": "c"}


def test_exclusive_gateway_in_parallel_branch_may_not_end_the_pipeline() -> None:
    s, p, g, c = start(), pg("p"), eg("g"), cg("c")
    terminal = end()
    s.extend(p).connect(g, sa("w"))
    g.connect(sa("a"), terminal)
    g.outgoing[0].extend(c)
    p.outgoing[1].extend(c).extend(terminal)
    error = rejects(build_tree(s), ConvergeMatchError, "g")
    assert "inside branch 1" in error.message
    assert "ParallelGateway p" in error.message


def test_exclusive_gateway_sharing_the_parallel_converge() -> None:
    s, p, g, c = start(), pg("p"), eg("g"), cg("c")
    s.extend(p).connect(g, sa("w")).to(g).connect(sa("a"), sa("b")).converge(c)
    p.outgoing[1].extend(c).extend(end())
    assert converges(accepts(build_tree(s))) == {"p": "c", "g": "c"}


def test_parallel_gateway_sharing_an_exclusive_converge() -> None:
    s, choice, p, c = start(), eg("choice"), pg("p"), cg("c")
    s.extend(choice).connect(p, sa("y"))
    p.connect(sa("a"), sa("b")).converge(c)
    choice.outgoing[1].extend(c).extend(end())
    assert converges(accepts(build_tree(s))) == {"choice": "c", "p": "c"}


def test_parallel_branch_straight_to_its_converge() -> None:
    s, p, g, c = start(), pg("p"), eg("g"), cg("c")
    s.extend(p).connect(c, g)
    g.connect(g, c)
    c.extend(end())
    assert converges(accepts(build_tree(s), cycle_tolerate=True)) == {"p": "c", "g": "c"}


def test_issue_162_parallel_gateway_sharing_an_exclusive_gateways_converge() -> None:
    """Upstream issue 162: the original rejected this with "invalid gateway".

    A parallel gateway whose only branch is an exclusive gateway: the converge has as
    many incoming flows as the exclusive gateway has branches, so the original gave
    it to the exclusive gateway alone and sent the parallel gateway on to the end event.
    """
    s, p, g, c = start(), pg("p"), eg("g"), cg("c")
    s.extend(p).extend(g).connect(sa("a"), sa("b")).to(g).converge(c).extend(end())
    assert converges(accepts(build_tree(s))) == {"p": "c", "g": "c"}
    s, cp, g, c = (
        start(),
        ConditionalParallelGateway(conditions={0: "1"}, id="p"),
        eg("g", 3),
        cg("c"),
    )
    s.extend(cp).extend(g).connect(sa("a"), sa("b"), sa("x")).to(g).converge(c).extend(end())
    assert converges(accepts(build_tree(s))) == {"p": "c", "g": "c"}


def test_issue_162_shape_inside_a_parallel_branch() -> None:
    """The single-branch gateway must close at ``c``: ``d`` belongs to ``p0``."""
    s, p0, g, c, d = start(), pg("p0"), eg("g"), cg("c"), cg("d")
    k = ConditionalParallelGateway(conditions={0: "1"}, id="k")
    s.extend(p0).connect(k, sa("x"))
    k.extend(g).connect(sa("a"), sa("b")).to(g).converge(c).extend(sa("after")).extend(d)
    p0.outgoing[1].extend(d).extend(end())
    assert converges(accepts(build_tree(s))) == {"p0": "d", "k": "c", "g": "c"}


def test_single_branch_parallel_gateway_over_nested_single_branch_exclusive_gateways() -> None:
    """``outer`` never converges on its own (its branch passes ``c``, then ends); inside
    ``p`` it cannot end the pipeline, so ``p``'s branch steps over it and closes at ``c``."""
    s, p, outer, inner, c = start(), pg("p"), eg("outer", 1), eg("inner", 1), cg("c")
    s.extend(p).extend(outer).extend(inner).extend(c).extend(end())
    assert converges(accepts(build_tree(s))) == {"p": "c", "outer": None, "inner": "c"}
    s, p, outer, inner, c = start(), pg("p"), eg("outer", 1), eg("inner"), cg("c")
    s.extend(p).extend(outer).extend(inner).connect(sa("a"), sa("b")).to(inner).converge(c)
    c.extend(end())
    assert converges(accepts(build_tree(s))) == {"p": "c", "outer": None, "inner": "c"}


@pytest.mark.xfail(
    strict=True,
    raises=ConvergeMatchError,
    reason="a known limit: each single-branch gateway here could close at either converge, "
    "and the matching gives ``inner`` the converge ``outer`` needs",
)
def test_nested_single_branch_parallel_gateways_each_sharing_an_exclusive_converge() -> None:
    s, outer, inner, x, y, ci, co = (
        start(),
        pg("outer"),
        pg("inner"),
        eg("x", 1),
        eg("y", 1),
        cg("ci"),
        cg("co"),
    )
    s.extend(outer).extend(inner).extend(x).extend(ci).extend(y).extend(co).extend(end())
    got = converges(accepts(build_tree(s)))
    assert got == {"outer": "co", "inner": "ci", "x": "ci", "y": "co"}


def test_an_exclusive_gateway_that_ends_the_pipeline_stays_refused_in_a_parallel_branch() -> None:
    s, p, outer, inner, c = start(), pg("p"), eg("outer"), eg("inner", 1), cg("c")
    terminal = end()
    s.extend(p).extend(outer).connect(inner, terminal)
    inner.extend(c).extend(terminal)
    with pytest.raises(ConvergeMatchError, match="whose branches never converge"):
        validate_and_process_pipeline(build_tree(s))


def test_single_branch_parallel_gateway_keeps_the_converge_it_meets() -> None:
    """``c1`` closes ``x1`` only; ``k`` shares ``c`` with ``e0``, as in the original
    (closing ``k`` at ``c1`` would run ``z`` even when its condition is false)."""
    s, e0, x1, c1, c = start(), eg("e0"), eg("x1"), cg("c1"), cg("c")
    k = ConditionalParallelGateway(conditions={0: "1"}, id="k")
    s.extend(e0).connect(k, sa("y"))
    k.extend(x1).connect(sa("a"), sa("b")).to(x1).converge(c1).extend(sa("z")).extend(c)
    e0.outgoing[1].extend(c).extend(end())
    assert converges(accepts(build_tree(s))) == {"e0": "c", "k": "c", "x1": "c1"}


def test_single_branch_parallel_block_ends_before_a_gateway_that_can_end_the_pipeline() -> None:
    s, p, shared, c, outer, inner, ci, co = (
        start(),
        pg("p"),
        eg("shared", 1),
        cg("c"),
        eg("outer", 1),
        eg("inner"),
        cg("ci"),
        cg("co"),
    )
    terminal = end()
    s.extend(p).extend(shared).extend(c).extend(outer).extend(inner).connect(ci, terminal)
    ci.extend(co).extend(terminal)
    tree = accepts(build_tree(s))
    assert converges(tree) == {"p": "c", "shared": "c", "outer": "co", "inner": "ci"}


def test_exclusive_gateways_nested_in_one_branch_all_converging_at_one_gateway() -> None:
    s, p, outer, left, right, c = start(), pg("p"), eg("outer"), eg("left"), eg("right"), cg("c")
    s.extend(p).extend(outer).connect(left, right)
    left.connect(sa("a"), sa("b")).converge(c)
    right.connect(sa("x"), sa("y")).converge(c)
    c.extend(end())
    expected = {"p": "c", "outer": "c", "left": "c", "right": "c"}
    assert converges(accepts(build_tree(s))) == expected


def test_nested_shared_converge_inside_an_exclusive_branch() -> None:
    """The original also rejected this: ``k`` and ``k2`` share ``c``, and the outer
    exclusive gateway meets ``d``; it counted ``c`` as shared with ``outer`` too."""
    s, outer, k, k2, c, d = start(), eg("outer"), eg("k"), eg("k2"), cg("c"), cg("d")
    s.extend(outer).connect(k, sa("z"))
    k.connect(k2, sa("y"))
    k2.connect(sa("a"), sa("b")).converge(c)
    k.outgoing[1].extend(c).extend(d)
    outer.outgoing[1].extend(d).extend(end())
    assert converges(accepts(build_tree(s))) == {"outer": "d", "k": "c", "k2": "c"}


def test_exclusive_gateway_above_a_parallel_block_ending_the_pipeline() -> None:
    s, choice, p, left, right, c = start(), eg("choice"), pg("p"), eg("left"), eg("right"), cg("c")
    terminal = end()
    s.extend(choice).connect(p, terminal)
    p.connect(left, right)
    left.connect(left, c)
    right.connect(right, c)
    c.extend(terminal)
    tree = accepts(build_tree(s), cycle_tolerate=True)
    assert converges(tree) == {"choice": None, "p": "c", "left": "c", "right": "c"}


def original_reference_flow() -> tuple[Tree, dict[str, str]]:
    """The original's largest gateway test graph, rebuilt: nested parallel blocks,
    exclusive gateways sharing converges and loops; with its expected matches."""
    s, terminal = start(), end()
    a = {i: sa(f"a{i}") for i in range(1, 21)}
    p1, p2 = pg("p1"), pg("p2")
    p3 = ConditionalParallelGateway(conditions={0: "1", 1: "1", 2: "1"}, id="p3")
    x = {i: eg(f"x{i}", 4) for i in range(1, 9)}
    c = {i: cg(f"c{i}") for i in range(1, 5)}
    s.extend(a[1]).extend(p1).connect(p2, a[5], a[6])
    p2.connect(a[2], a[3], a[4]).converge(c[1]).extend(a[7]).extend(x[1]).connect(p2, c[3])
    a[5].extend(x[7]).connect(c[3], a[8]).to(a[8]).extend(x[8]).connect(a[8], a[11])
    a[11].extend(c[3])
    a[6].extend(x[2]).connect(a[9], a[10]).converge(c[2]).extend(a[12]).extend(x[6])
    x[6].connect(a[6], c[3], c[2])
    x[2].connect(a[6])
    c[3].extend(a[13]).extend(x[3]).connect(terminal, a[14], p3, a[1])
    a[14].extend(x[4]).connect(a[13], c[4])
    p3.connect(a[15], a[16], a[17])
    a[15].extend(a[18]).extend(c[4])
    a[17].extend(x[5]).connect(a[19], a[20])
    a[19].extend(c[4])
    a[20].extend(c[4])
    a[16].extend(c[4]).extend(terminal)
    expected = {"p1": "c3", "p2": "c1", "p3": "c4", "x1": "c3", "x2": "c2", "x3": "c4"}
    expected |= {"x4": "c4", "x5": "c4", "x6": "c3", "x7": "c3", "x8": "c3"}
    return build_tree(s, id="p"), expected


def test_original_reference_flow() -> None:
    tree, expected = original_reference_flow()
    rejects(copy.deepcopy(tree), CycleError)
    assert converges(accepts(tree, cycle_tolerate=True)) == expected


def test_every_failing_gateway_is_reported() -> None:
    s, choice = start(), eg("choice")
    p1, p2, c1, c2 = pg("p1"), pg("p2"), cg("c1"), cg("c2")
    terminal = end()
    s.extend(choice).connect(p1, p2)
    p1.connect(sa("a"), sa("b"))
    p1.outgoing[0].extend(c1).extend(terminal)
    p1.outgoing[1].extend(terminal)
    p2.connect(sa("x"), sa("y"))
    p2.outgoing[0].extend(c2).extend(terminal)
    p2.outgoing[1].extend(terminal)
    error = rejects(build_tree(s), ConvergeMatchError, "p1", "p2")
    assert "choice" not in error.node_ids


# -- streams -------------------------------------------------------------------------


def test_flow_crossing_parallel_branches() -> None:
    s, p, g, c = start(), pg("p"), eg("g"), cg("c")
    a2, a3, a4 = sa("a2"), sa("a3"), sa("a4")
    s.extend(p).connect(a2, a3, g).to(g).connect(a3, a4)
    for act in (a2, a3, a4):
        act.extend(c)
    c.extend(end())
    error = rejects(build_tree(s), StreamValidateError, "a3")
    assert "branch 2" in error.message
    assert "branch 3" in error.message


def test_flow_jumping_into_a_parallel_branch() -> None:
    s, g, p, c = start(), eg("g"), pg("p"), cg("c")
    a2, a3 = sa("a2"), sa("a3")
    s.extend(g).connect(a3, a2).to(a2).extend(p).connect(a3, sa("a4")).converge(c).extend(end())
    error = rejects(build_tree(s), StreamValidateError, "a3")
    assert "the main stream" in error.message


def test_loops_stay_inside_their_parallel_branch() -> None:
    s, a0, p, g, c = start(), sa("a0"), pg("p"), eg("g"), cg("c")
    inside = sa("inside")
    s.extend(a0).extend(p).connect(inside, sa("w"))
    inside.extend(g).connect(sa("a"), inside)
    g.outgoing[0].extend(c)
    p.outgoing[1].extend(c).extend(end())
    assert converges(accepts(build_tree(s), cycle_tolerate=True)) == {"p": "c", "g": "c"}
    tree = build_tree(s)
    redirect(tree, flow_between(tree, "g", "inside"), "a0")
    error = rejects(tree, StreamValidateError, "a0", "g", cycle_tolerate=True)
    assert "a loop may not leave or enter a parallel branch" in error.message


# -- robustness -------------------------------------------------------------------------


def test_long_chain_validates_quickly() -> None:
    tree = chain_tree(3000)
    began = time.perf_counter()
    accepts(tree)
    assert time.perf_counter() - began < 3


def test_deep_nesting_needs_no_recursion() -> None:
    depth = 1200
    s = start()
    current: Any = s
    gateways, converge_ids = [], []
    for level in range(depth):
        gateway = eg(f"g{level}")
        current = current.extend(gateway)
        gateway.outgoing.append(sa(f"side{level}"))
        gateways.append(gateway)
        converge_ids.append(f"c{level}")
    current = current.extend(sa("core"))
    for level in reversed(range(depth)):
        c = cg(converge_ids[level])
        current.extend(c)
        gateways[level].outgoing[0].extend(c)
        current = c
    current.extend(end())
    tree = build_tree(s)
    began = time.perf_counter()
    accepts(tree)
    assert time.perf_counter() - began < 5
    assert converges(tree)["g0"] == "c0"
    assert converges(tree)[f"g{depth - 1}"] == f"c{depth - 1}"


def test_deep_subprocess_nesting_needs_no_recursion() -> None:
    tree: Tree = chain_tree(pipeline_id="leaf")
    for level in range(1500):
        inner = tree
        outer = chain_tree(pipeline_id=f"p{level}")
        for key in ("start_event", "end_event"):
            outer[key]["id"] = f"{outer[key]['id']}-{level}"
        outer_act = outer["activities"].pop("a1")
        sub_id = inner["id"]
        outer_act.update(id=sub_id, type="SubProcess", params={}, pipeline=inner)
        del outer_act["component"]
        outer["activities"][sub_id] = outer_act
        for fid in list(outer["flows"]):
            new = f"{fid}-{level}"
            f = outer["flows"].pop(fid)
            f["id"] = new
            for end_key in ("source", "target"):
                f[end_key] = {"a1": sub_id, "s": f"s-{level}", "end": f"end-{level}"}[f[end_key]]
            outer["flows"][new] = f
        outer["start_event"]["outgoing"] += f"-{level}"
        outer_act["incoming"] = [outer["start_event"]["outgoing"]]
        outer_act["outgoing"] += f"-{level}"
        outer["end_event"]["incoming"] = [outer_act["outgoing"]]
        tree = outer
    accepts(tree)


# -- start-node helpers --------------------------------------------------------------


def test_allowed_start_nodes_skip_parallel_branches() -> None:
    s, a1, p, c = start(), sa("a1"), pg("p"), cg("c")
    s.extend(a1).extend(p).connect(sa("a2"), sa("a3")).to(p).converge(c).extend(sa("a4"))
    s.tail().extend(end())
    tree = build_tree(s)
    assert get_allowed_start_node_ids(tree) == ["s", "a1", "p", "a4"]
    assert get_skipped_execute_node_ids(tree, "p") == ["s", "a1"]
    assert get_skipped_execute_node_ids(tree, "a4") == ["s", "a1", "p", "a2", "a3", "c"]
    assert get_skipped_execute_node_ids(tree, "s") == []


def test_allowed_start_nodes_walk_exclusive_branches() -> None:
    s, a1, g = start(), sa("a1"), eg("g")
    s.extend(a1).extend(g).connect(sa("a2"), sa("a3")).to(g).converge(end())
    tree = build_tree(s)
    assert get_allowed_start_node_ids(tree) == ["s", "a1", "g", "a2", "a3"]
    assert get_skipped_execute_node_ids(tree, "g") == ["s", "a1"]
    assert get_skipped_execute_node_ids(tree, "a2") == ["s", "a1", "g"]
    assert get_skipped_execute_node_ids(tree, "a3") == ["s", "a1", "g"]


def test_skipped_nodes_deep_inside_an_exclusive_branch() -> None:
    # The original lost every node between the gateway and a start node deeper
    # than the branch's first node.
    s, g, c = start(), eg("g"), cg("c")
    s.extend(g).connect(sa("x1"), sa("y1"))
    g.outgoing[0].extend(sa("x2")).extend(c)
    g.outgoing[1].extend(c).extend(sa("after")).extend(end())
    tree = build_tree(s)
    assert get_skipped_execute_node_ids(tree, "x2") == ["s", "g", "x1"]
    assert set(get_skipped_execute_node_ids(tree, "after")) == {"s", "g", "x1", "x2", "y1", "c"}


def test_allowed_start_nodes_conditional_parallel_and_subprocess() -> None:
    inner = start("s2")
    inner.extend(sa("inner")).extend(end("end2"))
    s, cpg, c = start(), ConditionalParallelGateway(conditions={0: "1", 1: "1"}, id="cpg"), cg("c")
    s.extend(SubProcess(start=inner, id="sub")).extend(cpg).connect(sa("b1"), sa("b2"))
    cpg.converge(c).extend(sa("after")).extend(end())
    tree = build_tree(s)
    assert get_allowed_start_node_ids(tree) == ["s", "cpg", "after"]
    validate_pipeline_start_node(tree, "after")
    for bad in ("sub", "b1", "c", "end", "inner", "ghost"):
        with pytest.raises(StartPositionInvalidError, match="not allowed as a starting node"):
            validate_pipeline_start_node(tree, bad)
    with pytest.raises(StartPositionInvalidError):
        get_skipped_execute_node_ids(tree, "b1")
    assert get_skipped_execute_node_ids(tree, "b1", validate=False) == ["s", "sub", "cpg"]
    with pytest.raises(StartPositionInvalidError):
        get_skipped_execute_node_ids(tree, "ghost", validate=False)


def test_start_helpers_on_unvalidated_and_looping_trees() -> None:
    tree = diamond_tree()
    untouched = copy.deepcopy(tree)
    # The original raised KeyError here: its "already processed?" check was inverted.
    assert get_allowed_start_node_ids(tree) == ["s", "g"]
    assert tree == untouched
    looping = loop_tree()
    assert get_allowed_start_node_ids(looping) == ["s", "a1", "a2", "g"]
    assert get_skipped_execute_node_ids(looping, "g") == ["s", "a1", "a2"]
    validate_pipeline_start_node(looping, "s")
    accepts(tree)
    assert get_allowed_start_node_ids(tree) == ["s", "g"]


def test_start_helpers_reject_invalid_trees() -> None:
    tree = diamond_tree()
    redirect(tree, flow_between(tree, "b", "c"), "end")
    with pytest.raises(ConvergeMatchError):
        get_allowed_start_node_ids(tree)
    with pytest.raises(InvalidTreeError):
        validate_pipeline_start_node({"start_event": 1}, "x")


def test_validation_checks_the_start_node_on_its_own_analysis() -> None:
    """``start_node_id`` refuses what validate_pipeline_start_node refuses, after
    the tree's own errors, and processes the tree all the same."""
    for node_id in ("s", "g"):
        tree = diamond_tree()
        validate_and_process_pipeline(tree, start_node_id=node_id)
        assert node(tree, "g")["converge_gateway_id"] == "c"
    tree = diamond_tree()
    with pytest.raises(StartPositionInvalidError) as info:
        validate_and_process_pipeline(tree, start_node_id="a")
    assert str(info.value) == "this node_id is not allowed as a starting node: a"
    with pytest.raises(StartPositionInvalidError):
        validate_pipeline_start_node(diamond_tree(), "a")
    broken = diamond_tree()
    redirect(broken, flow_between(broken, "b", "c"), "end")
    with pytest.raises(ConvergeMatchError):
        validate_and_process_pipeline(broken, start_node_id="nowhere")


def test_executable_end_event_and_multiple_incoming() -> None:
    s, g = start(), ExclusiveGateway(conditions={0: "1", 1: "1"}, id="g")
    s.extend(g).connect(ServiceActivity(id="a"), ServiceActivity(id="b")).to(g)
    g.converge(ExecutableEndEvent("MyHandler", id="end"))
    tree = accepts(build_tree(s))
    assert tree["end_event"]["type"] == "MyHandler"
    start_event = EmptyStartEvent(id="s")
    start_event.extend(ParallelGateway(id="p")).extend(ExecutableEndEvent("X", id="end"))
    rejects(build_tree(start_event), ConvergeMatchError, "p")
