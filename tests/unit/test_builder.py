"""The builder emits the original bamboo-engine tree schema, exactly."""

from __future__ import annotations

import itertools
import re
import uuid
from typing import Any

import pytest

from aiobamboo import builder
from aiobamboo.builder import (
    ConditionalParallelGateway,
    ConvergeGateway,
    Data,
    DataInput,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    ExecutableEndEvent,
    InitializedRewritableNodeOutput,
    NodeOutput,
    ParallelGateway,
    Params,
    RewritableNodeOutput,
    ServiceActivity,
    SubProcess,
    Var,
    build_tree,
    unique_id,
)
from aiobamboo.builder._data import AttrDict
from aiobamboo.builder._elements import Element
from aiobamboo.exceptions import ConnectionValidateError, InvalidTreeError
from aiobamboo.validator import validate_and_process_pipeline

ID = re.compile(r"^[pef][0-9a-f]{32}$")


@pytest.fixture
def flow_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    """Number generated flow ids f1, f2, ... in creation order."""
    counter = itertools.count(1)
    monkeypatch.setattr(
        "aiobamboo.builder._tree.unique_id", lambda prefix: f"{prefix}{next(counter)}"
    )


def flow(fid: str, source: str, target: str) -> dict[str, Any]:
    return {"is_default": False, "source": source, "target": target, "id": fid}


def start(outgoing: str, sid: str = "s") -> dict[str, Any]:
    return {
        "incoming": "",
        "outgoing": outgoing,
        "type": "EmptyStartEvent",
        "id": sid,
        "name": None,
    }


def end(incoming: list[str], eid: str = "end", etype: str = "EmptyEndEvent") -> dict[str, Any]:
    return {"incoming": incoming, "outgoing": "", "type": etype, "id": eid, "name": None}


def activity(aid: str, incoming: list[str], outgoing: str, **extra: Any) -> dict[str, Any]:
    node = {
        "incoming": incoming,
        "outgoing": outgoing,
        "type": "ServiceActivity",
        "id": aid,
        "name": None,
        "error_ignorable": False,
        "timeout": None,
        "skippable": True,
        "retryable": True,
        "component": {"code": "echo", "inputs": {}},
        "optional": False,
    }
    node.update(extra)
    return node


EMPTY_DATA: dict[str, Any] = {"inputs": {}, "outputs": []}


def test_public_names() -> None:
    assert builder.__all__ == sorted(builder.__all__)
    assert set(builder.__all__) == {
        "EmptyStartEvent",
        "EmptyEndEvent",
        "ExecutableEndEvent",
        "ServiceActivity",
        "SubProcess",
        "ExclusiveGateway",
        "ParallelGateway",
        "ConditionalParallelGateway",
        "ConvergeGateway",
        "Element",
        "Var",
        "Data",
        "Params",
        "DataInput",
        "NodeOutput",
        "RewritableNodeOutput",
        "InitializedRewritableNodeOutput",
        "build_tree",
        "generate_pipeline_token",
        "unique_id",
    }
    for name in builder.__all__:
        assert getattr(builder, name).__name__ == name


# -- ids ---------------------------------------------------------------------------


def test_generated_ids_are_random_version_4_uuids() -> None:
    ids = [unique_id("e")[1:] for _ in range(500)]
    assert len(set(ids)) == len(ids)
    for hex_digits in ids:
        parsed = uuid.UUID(hex_digits)
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
        assert parsed.hex == hex_digits


def test_generated_ids_are_prefix_and_uuid_hex() -> None:
    assert ID.match(unique_id("e"))
    assert len(unique_id("f")) == 33
    with pytest.raises(ValueError, match="one character"):
        unique_id("ab")
    act = ServiceActivity()
    assert act.id.startswith("e")
    assert ID.match(act.id)
    s = EmptyStartEvent()
    s.extend(ServiceActivity()).extend(EmptyEndEvent())
    tree = build_tree(s)
    assert tree["id"].startswith("p")
    assert ID.match(tree["id"])
    assert len(tree["flows"]) == 2
    for fid, f in tree["flows"].items():
        assert fid.startswith("f")
        assert ID.match(fid)
        assert f["id"] == fid


def test_explicit_ids_are_kept() -> None:
    s = EmptyStartEvent(id="my-start", name="begin")
    s.extend(EmptyEndEvent(id="my-end"))
    tree = build_tree(s, id="my-pipeline")
    assert tree["id"] == "my-pipeline"
    assert tree["start_event"]["id"] == "my-start"
    assert tree["start_event"]["name"] == "begin"
    assert tree["end_event"]["id"] == "my-end"


# -- element kinds -----------------------------------------------------------------


@pytest.mark.usefixtures("flow_ids")
def test_service_activity_chain() -> None:
    s = EmptyStartEvent(id="s")
    act = ServiceActivity(component_code="echo", id="a")
    s.extend(act).extend(EmptyEndEvent(id="end"))
    assert build_tree(s, id="p") == {
        "id": "p",
        "start_event": start("f1"),
        "end_event": end(["f2"]),
        "activities": {"a": activity("a", ["f1"], "f2")},
        "gateways": {},
        "flows": {"f1": flow("f1", "s", "a"), "f2": flow("f2", "a", "end")},
        "data": EMPTY_DATA,
    }


@pytest.mark.usefixtures("flow_ids")
def test_service_activity_options_and_inputs() -> None:
    s = EmptyStartEvent(id="s")
    act = ServiceActivity(
        "echo",
        True,
        30,
        False,
        False,
        id="a",
        name="Echo",
        component_version="1.2",
        optional=True,
        loop_config={"enable": True, "loop_times": 3},
    )
    act.component.inputs.text = Var(type=Var.SPLICE, value="${name}")
    act.component.inputs["raw"] = {"type": "plain", "value": 1, "need_render": False}
    s.extend(act).extend(EmptyEndEvent(id="end"))
    node = build_tree(s, id="p")["activities"]["a"]
    assert node == {
        "incoming": ["f1"],
        "outgoing": "f2",
        "type": "ServiceActivity",
        "id": "a",
        "name": "Echo",
        "error_ignorable": True,
        "timeout": 30,
        "skippable": False,
        "retryable": False,
        "component": {
            "code": "echo",
            "version": "1.2",
            "inputs": {
                "text": {"type": "splice", "value": "${name}"},
                "raw": {"type": "plain", "value": 1, "need_render": False},
            },
        },
        "optional": True,
        "loop_config": {"enable": True, "loop_times": 3},
    }


def test_service_activity_defaults_match_the_original() -> None:
    act = ServiceActivity()
    assert act.component.code is None
    assert act.component.inputs == {}
    assert act.component_dict() == {"code": None, "inputs": {}}
    assert (act.error_ignorable, act.timeout, act.skippable, act.retryable) == (
        False,
        None,
        True,
        True,
    )
    act.component.version = "2"
    assert act.component_dict() == {"code": None, "inputs": {}, "version": "2"}


@pytest.mark.usefixtures("flow_ids")
def test_parallel_and_converge_gateways() -> None:
    s, pg, cg = EmptyStartEvent(id="s"), ParallelGateway(id="pg"), ConvergeGateway(id="cg")
    a, b = ServiceActivity("echo", id="a"), ServiceActivity("echo", id="b")
    s.extend(pg).connect(a, b).to(pg).converge(cg).extend(EmptyEndEvent(id="end"))
    assert build_tree(s, id="p") == {
        "id": "p",
        "start_event": start("f1"),
        "end_event": end(["f6"]),
        "activities": {
            "a": activity("a", ["f2"], "f4"),
            "b": activity("b", ["f3"], "f5"),
        },
        "gateways": {
            "pg": {
                "id": "pg",
                "incoming": ["f1"],
                "outgoing": ["f2", "f3"],
                "type": "ParallelGateway",
                "name": None,
            },
            "cg": {
                "id": "cg",
                "incoming": ["f4", "f5"],
                "outgoing": "f6",
                "type": "ConvergeGateway",
                "name": None,
            },
        },
        "flows": {
            "f1": flow("f1", "s", "pg"),
            "f2": flow("f2", "pg", "a"),
            "f3": flow("f3", "pg", "b"),
            "f4": flow("f4", "a", "cg"),
            "f5": flow("f5", "b", "cg"),
            "f6": flow("f6", "cg", "end"),
        },
        "data": EMPTY_DATA,
    }


@pytest.mark.usefixtures("flow_ids")
@pytest.mark.parametrize(
    ("gateway_class", "type_name"),
    [
        (ExclusiveGateway, "ExclusiveGateway"),
        (ConditionalParallelGateway, "ConditionalParallelGateway"),
    ],
)
def test_condition_gateways(gateway_class: type[ExclusiveGateway], type_name: str) -> None:
    s, cg = EmptyStartEvent(id="s"), ConvergeGateway(id="cg")
    gw = gateway_class(
        conditions={0: "${x} > 1", 1: "${x} <= 1"},
        default_condition_outgoing=1,
        id="gw",
        extra_info={"strategy": 1},
    )
    s.extend(gw).connect(ServiceActivity("echo", id="a"), ServiceActivity("echo", id="b"))
    gw.converge(cg).extend(EmptyEndEvent(id="end"))
    assert build_tree(s, id="p")["gateways"]["gw"] == {
        "id": "gw",
        "incoming": ["f1"],
        "outgoing": ["f2", "f3"],
        "type": type_name,
        "name": None,
        "conditions": {"f2": {"evaluate": "${x} > 1"}, "f3": {"evaluate": "${x} <= 1"}},
        "default_condition": {"flow_id": "f3"},
        "extra_info": {"strategy": 1},
    }


def test_condition_gateway_without_default_and_extra_info() -> None:
    s = EmptyStartEvent()
    eg = ExclusiveGateway(conditions={0: "True"})
    s.extend(eg).extend(EmptyEndEvent())
    node = next(iter(build_tree(s)["gateways"].values()))
    assert node["default_condition"] == {}
    assert "extra_info" not in node
    assert "converge_gateway_id" not in node


def test_condition_gateway_helpers() -> None:
    eg = ExclusiveGateway(id="eg", conditions={0: "a"})
    eg.add_condition(1, "b")
    assert eg.conditions == {0: "a", 1: "b"}
    assert eg.link_conditions_with(["x", "y"]) == {"x": {"evaluate": "a"}, "y": {"evaluate": "b"}}
    assert eg.link_default_condition_with(["x", "y"]) == {}


def test_missing_condition_is_a_clear_error() -> None:
    s = EmptyStartEvent()
    eg = ExclusiveGateway(id="eg", conditions={0: "True"})
    s.extend(eg).connect(EmptyEndEvent(id="e"), EmptyEndEvent(id="e"))
    with pytest.raises(InvalidTreeError, match="no condition for outgoing edge index 1") as info:
        build_tree(s)
    assert info.value.node_ids == ("eg",)


def test_default_condition_out_of_range_is_a_clear_error() -> None:
    s = EmptyStartEvent()
    eg = ExclusiveGateway(id="eg", conditions={0: "True"}, default_condition_outgoing=3)
    s.extend(eg).extend(EmptyEndEvent())
    with pytest.raises(InvalidTreeError, match="default_condition_outgoing=3") as info:
        build_tree(s)
    assert info.value.node_ids == ("eg",)


@pytest.mark.usefixtures("flow_ids")
def test_executable_end_event_single_incoming() -> None:
    # A flow id, not a list, as the original builds it.
    s = EmptyStartEvent(id="s")
    s.extend(ServiceActivity("echo", id="a")).extend(ExecutableEndEvent(type="Notify", id="end"))
    tree = build_tree(s, id="p")
    assert tree["end_event"] == {
        "incoming": "f2",
        "outgoing": "",
        "type": "Notify",
        "id": "end",
        "name": None,
    }
    validate_and_process_pipeline(tree)


@pytest.mark.usefixtures("flow_ids")
def test_executable_end_event_reached_by_several_edges() -> None:
    # The original raised KeyError here.
    s, notify = EmptyStartEvent(id="s"), ExecutableEndEvent("Notify", id="end")
    eg = ExclusiveGateway(conditions={0: "True", 1: "False"}, id="eg")
    s.extend(eg).connect(ServiceActivity("echo", id="a"), ServiceActivity("echo", id="b"))
    eg.converge(notify)
    tree = build_tree(s, id="p")
    assert tree["end_event"] == end(["f4", "f5"], etype="Notify")
    validate_and_process_pipeline(tree)
    assert tree["end_event"]["incoming"] == ["f4", "f5"]


@pytest.mark.usefixtures("flow_ids")
def test_subprocess_nesting() -> None:
    inner_start = EmptyStartEvent(id="s2")
    inner_start.extend(ServiceActivity("echo", id="a2")).extend(EmptyEndEvent(id="end2"))
    sub = SubProcess(
        start=inner_start,
        data=Data(inputs={"${k}": Var(type=Var.PLAIN, value=1)}, outputs=["${k}"]),
        params=Params({"${k}": Var(type=Var.SPLICE, value="${outer}")}),
        id="sub",
        name="Sub",
    )
    s = EmptyStartEvent(id="s")
    s.extend(sub).extend(EmptyEndEvent(id="end"))
    assert build_tree(s, id="p") == {
        "id": "p",
        "start_event": start("f1"),
        "end_event": end(["f2"]),
        "activities": {
            "sub": {
                "id": "sub",
                "incoming": ["f1"],
                "name": "Sub",
                "outgoing": "f2",
                "type": "SubProcess",
                "params": {"${k}": {"type": "splice", "value": "${outer}"}},
                "pipeline": {
                    "id": "sub",
                    "start_event": start("f3", "s2"),
                    "end_event": end(["f4"], "end2"),
                    "activities": {"a2": activity("a2", ["f3"], "f4")},
                    "gateways": {},
                    "flows": {"f3": flow("f3", "s2", "a2"), "f4": flow("f4", "a2", "end2")},
                    "data": {
                        "inputs": {"${k}": {"type": "plain", "value": 1}},
                        "outputs": ["${k}"],
                        "pre_render_keys": [],
                    },
                },
            }
        },
        "gateways": {},
        "flows": {"f1": flow("f1", "s", "sub"), "f2": flow("f2", "sub", "end")},
        "data": EMPTY_DATA,
    }


def test_subprocess_defaults_and_plain_dict_params() -> None:
    sub = SubProcess()
    assert (sub.start, sub.data, sub.params, sub.global_outputs) == (None, None, {}, {})
    inner = EmptyStartEvent()
    inner.extend(EmptyEndEvent())
    sub = SubProcess(start=inner, params={"${k}": {"type": "plain", "value": 2}}, id="sub")
    s = EmptyStartEvent()
    s.extend(sub).extend(EmptyEndEvent())
    node = build_tree(s)["activities"]["sub"]
    assert node["params"] == {"${k}": {"type": "plain", "value": 2}}
    assert node["pipeline"]["id"] == "sub"
    assert node["pipeline"]["data"] == EMPTY_DATA


def test_subprocess_without_start_element_is_a_clear_error() -> None:
    s = EmptyStartEvent()
    s.extend(SubProcess(id="sub")).extend(EmptyEndEvent())
    with pytest.raises(InvalidTreeError, match="start must be") as info:
        build_tree(s)
    assert info.value.node_ids == ("sub",)


# -- variables and data ------------------------------------------------------------


@pytest.mark.parametrize(
    ("var", "expected"),
    [
        (Var(type=Var.PLAIN, value=1), {"type": "plain", "value": 1}),
        (Var(Var.SPLICE, "a ${b}"), {"type": "splice", "value": "a ${b}"}),
        (
            Var(type=Var.LAZY, value="v", custom_type="upper"),
            {"type": "lazy", "value": "v", "custom_type": "upper"},
        ),
        (
            DataInput(type=Var.PLAIN, value=[1]),
            {"type": "plain", "value": [1], "is_param": True},
        ),
        (
            DataInput(type=Var.LAZY, value="x", custom_type="c"),
            {"type": "lazy", "value": "x", "custom_type": "c", "is_param": True},
        ),
        (
            NodeOutput(source_act="a", source_key="out"),
            {"type": "plain", "value": None, "source_act": "a", "source_key": "out"},
        ),
        (
            NodeOutput("a", "out", type=Var.SPLICE),
            {"type": "splice", "value": None, "source_act": "a", "source_key": "out"},
        ),
        (
            RewritableNodeOutput(
                source_act=[
                    {"source_act": "a", "source_key": "x"},
                    {"source_act": "b", "source_key": "y"},
                ],
                type=Var.PLAIN,
            ),
            {
                "type": "plain",
                "value": None,
                "source_act": [
                    {"source_act": "a", "source_key": "x"},
                    {"source_act": "b", "source_key": "y"},
                ],
            },
        ),
        (
            InitializedRewritableNodeOutput(
                source_act=[{"source_act": "a", "source_key": "x"}], type=Var.PLAIN, value=0
            ),
            {
                "type": "plain",
                "value": 0,
                "source_act": [{"source_act": "a", "source_key": "x"}],
                "need_initialization": True,
            },
        ),
    ],
)
def test_var_kinds(var: Var, expected: dict[str, Any]) -> None:
    assert var.to_dict() == expected
    assert isinstance(var, Var)
    s = EmptyStartEvent()
    act = ServiceActivity("echo", id="a")
    act.component.inputs.key = var
    s.extend(act).extend(EmptyEndEvent())
    tree = build_tree(s, data=Data(inputs={"${key}": var}))
    assert tree["activities"]["a"]["component"]["inputs"] == {"key": expected}
    assert tree["data"]["inputs"] == {"${key}": expected}


def test_var_constants() -> None:
    assert (Var.PLAIN, Var.SPLICE, Var.LAZY) == ("plain", "splice", "lazy")


def test_data_and_params_blocks() -> None:
    data = Data(
        inputs={"${a}": Var(type=Var.PLAIN, value=1), "${raw}": {"type": "plain", "value": 2}},
        outputs=["${a}"],
        pre_render_keys=["${a}"],
    )
    data.inputs.extra = Var(type=Var.SPLICE, value="${a}")
    assert data.to_dict() == {
        "inputs": {
            "${a}": {"type": "plain", "value": 1},
            "${raw}": {"type": "plain", "value": 2},
            "extra": {"type": "splice", "value": "${a}"},
        },
        "outputs": ["${a}"],
        "pre_render_keys": ["${a}"],
    }
    assert Data().to_dict() == {"inputs": {}, "outputs": [], "pre_render_keys": []}
    params = Params({"${p}": Var(type=Var.PLAIN, value="v")})
    params.params.q = Var(type=Var.LAZY, value="w", custom_type="c")
    assert params.to_dict() == {
        "${p}": {"type": "plain", "value": "v"},
        "q": {"type": "lazy", "value": "w", "custom_type": "c"},
    }


def test_tree_data_argument() -> None:
    def tree_with(data: Any) -> dict[str, Any]:
        s = EmptyStartEvent()
        s.extend(EmptyEndEvent())
        return build_tree(s, data=data)

    assert tree_with(None)["data"] == EMPTY_DATA
    assert tree_with({})["data"] == EMPTY_DATA
    raw = {"inputs": {"${x}": {"type": "plain", "value": 1}}, "outputs": ["${x}"]}
    assert tree_with(raw)["data"] == raw
    assert tree_with(Data(outputs=["${x}"]))["data"] == {
        "inputs": {},
        "outputs": ["${x}"],
        "pre_render_keys": [],
    }


def test_attr_dict() -> None:
    values = AttrDict()
    values.a = 1
    assert values == {"a": 1}
    assert values.a == 1
    del values.a
    assert values == {}
    with pytest.raises(AttributeError):
        _ = values.missing
    with pytest.raises(AttributeError):
        del values.missing


# -- fluent API ----------------------------------------------------------------------


def test_extend_connect_to_tail_converge() -> None:
    e1, e2, e3 = ServiceActivity(id="1"), ServiceActivity(id="2"), ServiceActivity(id="3")
    assert e1.extend(e2).extend(e3) is e3
    assert e1.outgoing == [e2]
    assert e2.outgoing == [e3]
    g = ParallelGateway(id="g")
    a, b, c = ServiceActivity(id="a"), ServiceActivity(id="b"), ServiceActivity(id="c")
    assert g.connect(a, b, c) is g
    assert g.outgoing == [a, b, c]
    assert g.to(a) is a
    a.extend(ServiceActivity(id="a2"))
    cg = ConvergeGateway(id="cg")
    assert g.converge(cg) is cg
    assert [x.id for x in a.outgoing[0].outgoing] == ["cg"]
    assert b.outgoing == [cg]
    assert c.outgoing == [cg]
    assert g.tail() is cg
    assert cg.tail() is cg


def test_tail_of_a_loop_is_a_clear_error() -> None:
    a, b = ServiceActivity(id="a"), ServiceActivity(id="b")
    a.extend(b).extend(a)
    with pytest.raises(InvalidTreeError, match="loops back"):
        a.tail()


def test_elements_compare_by_id() -> None:
    assert ServiceActivity(id="x") == ServiceActivity(id="x", name="other")
    assert ServiceActivity(id="x") != ServiceActivity(id="y")
    assert len({ServiceActivity(id="x"), ServiceActivity(id="x")}) == 1
    assert repr(ServiceActivity(id="x", name="n")) == "<ServiceActivity n:x>"
    assert ExecutableEndEvent("Notify").type() == "Notify"


@pytest.mark.usefixtures("flow_ids")
def test_breadth_first_order_and_revisits() -> None:
    s, eg = EmptyStartEvent(id="s"), ExclusiveGateway(conditions={0: "a", 1: "b"}, id="eg")
    a, b, cg = (
        ServiceActivity("echo", id="a"),
        ServiceActivity("echo", id="b"),
        ConvergeGateway(id="cg"),
    )
    s.extend(eg).connect(a, b).to(a).extend(cg)
    b.extend(cg).extend(EmptyEndEvent(id="end"))
    tree = build_tree(s, id="p")
    assert list(tree["flows"]) == ["f1", "f2", "f3", "f4", "f5", "f6"]
    assert list(tree["activities"]) == ["a", "b"]
    assert tree["gateways"]["cg"]["incoming"] == ["f4", "f5"]


# -- shapes the original crashed on ---------------------------------------------------


@pytest.mark.usefixtures("flow_ids")
def test_start_with_two_outgoing_edges_is_rejected_by_the_validator() -> None:
    s, e = EmptyStartEvent(id="s"), EmptyEndEvent(id="end")
    s.connect(ServiceActivity("echo", id="a"), ServiceActivity("echo", id="b"))
    s.outgoing[0].extend(e)
    s.outgoing[1].extend(e)
    tree = build_tree(s, id="p")
    assert tree["start_event"]["outgoing"] == ["f1", "f2"]
    with pytest.raises(ConnectionValidateError, match="start event s has 2 outgoing") as info:
        validate_and_process_pipeline(tree)
    assert info.value.node_ids == ("s",)


def test_activity_with_two_outgoing_edges_is_rejected_by_the_validator() -> None:
    s, a, e = EmptyStartEvent(id="s"), ServiceActivity("echo", id="a"), EmptyEndEvent(id="end")
    s.extend(a).connect(ServiceActivity("echo", id="b"), e)
    a.outgoing[0].extend(e)
    tree = build_tree(s)
    assert isinstance(tree["activities"]["a"]["outgoing"], list)
    with pytest.raises(ConnectionValidateError, match="ServiceActivity a has 2 outgoing"):
        validate_and_process_pipeline(tree)


def test_edge_into_the_start_event_is_rejected_by_the_validator() -> None:
    s, a = EmptyStartEvent(id="s"), ServiceActivity("echo", id="a")
    eg = ExclusiveGateway(conditions={0: "a", 1: "b"}, id="eg")
    s.extend(a).extend(eg).connect(s, EmptyEndEvent(id="end"))
    tree = build_tree(s)
    assert tree["start_event"]["incoming"] != ""
    with pytest.raises(ConnectionValidateError) as info:
        validate_and_process_pipeline(tree, cycle_tolerate=True)
    assert set(info.value.node_ids) == {"s", "eg"}


def test_two_end_events_are_a_clear_error() -> None:
    s = EmptyStartEvent()
    eg = ExclusiveGateway(conditions={0: "a", 1: "b"})
    s.extend(eg).connect(EmptyEndEvent(id="e1"), EmptyEndEvent(id="e2"))
    with pytest.raises(InvalidTreeError, match="one end event") as info:
        build_tree(s)
    assert info.value.node_ids == ("e1", "e2")


def test_missing_end_event_is_rejected_by_the_validator() -> None:
    s = EmptyStartEvent()
    s.extend(ServiceActivity("echo"))
    tree = build_tree(s)
    assert tree["end_event"] is None
    with pytest.raises(InvalidTreeError, match="'end_event'"):
        validate_and_process_pipeline(tree)


def test_non_element_outgoing_is_a_clear_error() -> None:
    s = EmptyStartEvent(id="s", outgoing=[1])  # type: ignore[list-item]
    with pytest.raises(InvalidTreeError, match="not an element"):
        build_tree(s)
    with pytest.raises(InvalidTreeError, match="start element"):
        build_tree("s")  # type: ignore[arg-type]


def test_unknown_element_class_is_a_clear_error() -> None:
    class Custom(Element):
        def type(self) -> str:
            return "Custom"

    s = EmptyStartEvent()
    s.extend(Custom(id="odd"))
    with pytest.raises(InvalidTreeError, match="no element of class Custom") as info:
        build_tree(s)
    assert info.value.node_ids == ("odd",)
    with pytest.raises(NotImplementedError):
        Element().type()


def test_every_built_kind_validates() -> None:
    inner = EmptyStartEvent()
    inner.extend(ServiceActivity("echo")).extend(EmptyEndEvent())
    s, pg, cpg = (
        EmptyStartEvent(),
        ParallelGateway(),
        ConditionalParallelGateway(conditions={0: "1", 1: "1"}),
    )
    eg = ExclusiveGateway(conditions={0: "1", 1: "0"}, default_condition_outgoing=0)
    c1, c2, c3 = ConvergeGateway(), ConvergeGateway(), ConvergeGateway()
    s.extend(pg).connect(SubProcess(start=inner), ServiceActivity("echo")).to(pg).converge(c1)
    c1.extend(cpg).connect(ServiceActivity("echo"), ServiceActivity("echo")).to(cpg).converge(c2)
    c2.extend(eg).connect(ServiceActivity("echo"), ServiceActivity("echo")).to(eg).converge(c3)
    c3.extend(ExecutableEndEvent("Notify"))
    tree = build_tree(s)
    validate_and_process_pipeline(tree)
    assert tree["gateways"][pg.id]["converge_gateway_id"] == c1.id
    assert tree["gateways"][cpg.id]["converge_gateway_id"] == c2.id
    assert tree["gateways"][eg.id]["converge_gateway_id"] == c3.id
