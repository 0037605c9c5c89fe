"""Builder constructors accept the arguments bamboo-engine's builder accepts, in its order.

The positional orders below are read from the original's ``builder/flow``
classes: a subclass's own arguments first, then ``*args`` handed on to
``Element(id, name, outgoing)``.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

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
)
from aiobamboo.validator import validate_and_process_pipeline

ELEMENT = ["id", "name", "outgoing"]

#: class -> its own leading parameters in the original, before Element's.
ORIGINAL_POSITIONAL: dict[type, list[str]] = {
    EmptyStartEvent: ELEMENT,
    EmptyEndEvent: ELEMENT,
    ParallelGateway: ELEMENT,
    ConvergeGateway: ELEMENT,
    ExclusiveGateway: ["conditions", "default_condition_outgoing"],
    ConditionalParallelGateway: ["conditions", "default_condition_outgoing"],
    ServiceActivity: ["component_code", "error_ignorable", "timeout", "skippable", "retryable"],
    SubProcess: ["start", "data", "params", "global_outputs"],
    ExecutableEndEvent: ["type"],
    Var: ["type", "value", "custom_type"],
    DataInput: ["type", "value", "custom_type"],
    NodeOutput: ["source_act", "source_key"],
    RewritableNodeOutput: ["source_act"],
    InitializedRewritableNodeOutput: ["source_act", "type", "value", "custom_type"],
    Data: ["inputs", "outputs", "pre_render_keys"],
    Params: ["params"],
}


@pytest.mark.parametrize("cls", list(ORIGINAL_POSITIONAL), ids=lambda c: c.__name__)
def test_leading_positional_parameters_are_the_originals(cls: type) -> None:
    params = [
        p.name
        for p in inspect.signature(cls).parameters.values()
        if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    expected = ORIGINAL_POSITIONAL[cls]
    assert params[: len(expected)] == expected


def test_elements_take_id_name_outgoing_after_their_own_arguments() -> None:
    end = EmptyEndEvent("end", "The end")
    assert (end.id, end.name) == ("end", "The end")
    act = ServiceActivity("echo", True, 10, False, False, "a", "Act", [end])
    assert (act.component.code, act.error_ignorable, act.timeout) == ("echo", True, 10)
    assert (act.skippable, act.retryable, act.id, act.name, act.outgoing) == (
        False,
        False,
        "a",
        "Act",
        [end],
    )
    gw = ExclusiveGateway({0: "True"}, 0, "eg", "Gate")
    assert (gw.conditions, gw.default_condition_outgoing, gw.id, gw.name) == (
        {0: "True"},
        0,
        "eg",
        "Gate",
    )
    start = EmptyStartEvent("s2")
    sub = SubProcess(start, None, {"${x}": Var(Var.PLAIN, 1)}, {"k": "v"}, "sub")
    assert (sub.start, sub.params, sub.global_outputs, sub.id) == (
        start,
        {"${x}": Var(Var.PLAIN, 1)},
        {"k": "v"},
        "sub",
    )
    assert ExecutableEndEvent("Notify", id="e", name="n").type() == "Notify"


def test_keyword_arguments_as_in_the_original() -> None:
    act = ServiceActivity(component_code="echo", id="a", name="A", error_ignorable=True)
    assert (act.id, act.name, act.error_ignorable) == ("a", "A", True)
    gw = ConditionalParallelGateway(id="cg", conditions={0: "1 == 1"}, default_condition_outgoing=0)
    assert gw.conditions == {0: "1 == 1"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: EmptyStartEvent("s", "n", [], "extra"), "positional"),
        (lambda: ServiceActivity("echo", False, None, True, True, "a", "n", [], "x"), "at most"),
        (lambda: ServiceActivity("echo", unknown=1), "unexpected keyword"),
        (lambda: ServiceActivity("echo", False, None, True, True, "a", id="b"), "multiple"),
        (lambda: ExecutableEndEvent("Notify", "end"), "positional"),
    ],
)
def test_wrong_arguments_are_type_errors(call: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        call()


def test_node_output_takes_type_and_value_by_keyword() -> None:
    # The original accepts a value and drops it: the output fills the variable.
    out = NodeOutput(type=Var.SPLICE, source_act="a", source_key="k", value="ignored")
    assert out.to_dict() == {
        "type": "splice",
        "value": None,
        "source_act": "a",
        "source_key": "k",
    }
    assert NodeOutput("a", "k").to_dict()["type"] == "plain"


def test_rewritable_node_output_takes_value_by_keyword() -> None:
    acts = [{"source_act": "a", "source_key": "k"}]
    out = RewritableNodeOutput(source_act=acts, type=Var.PLAIN, value="ignored")
    assert out.to_dict() == {"type": "plain", "value": None, "source_act": acts}
    assert RewritableNodeOutput(acts, Var.SPLICE).to_dict()["type"] == "splice"


def test_executable_end_event_incoming_is_a_flow_id_or_a_list() -> None:
    start = EmptyStartEvent()
    end = ExecutableEndEvent("Notify")
    start.extend(ServiceActivity("echo")).extend(end)
    tree = build_tree(start)
    incoming = tree["end_event"]["incoming"]
    assert isinstance(incoming, str)
    assert tree["flows"][incoming]["target"] == end.id
    validate_and_process_pipeline(tree)
    # An EmptyEndEvent's is a list, as in the original.
    start = EmptyStartEvent()
    start.extend(ServiceActivity("echo")).extend(EmptyEndEvent())
    assert isinstance(build_tree(start)["end_event"]["incoming"], list)
