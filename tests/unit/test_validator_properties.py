"""Property tests: random valid structures validate; random corruptions are refused.

Valid structures are generated as nested block specs and built with the builder:
sequences of activities, subprocesses, parallel and conditional parallel blocks, and
exclusive blocks (optionally with branches to the end event, a loop back, or sharing
the enclosing block's converge gateway, as upstream issue 162 does). A corruption
must raise an `InvalidTreeError` subclass with a message; arbitrary garbage must
raise one or validate, never anything else, and nothing may hang.
"""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import attrs
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from aiobamboo.builder import (
    ConditionalParallelGateway,
    ConvergeGateway,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    ParallelGateway,
    ServiceActivity,
    SubProcess,
    build_tree,
)
from aiobamboo.builder._elements import Element
from aiobamboo.exceptions import CycleError, InvalidTreeError
from aiobamboo.validator import get_allowed_start_node_ids, validate_and_process_pipeline

from .test_validator import Tree, add_flow, node, redirect

SETTINGS = settings(
    max_examples=120,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# -- block specs -------------------------------------------------------------------------

Spec = tuple[Any, ...]


def _blocks(children: st.SearchStrategy[Spec]) -> st.SearchStrategy[Spec]:
    branches = st.lists(st.lists(children, max_size=3), min_size=1, max_size=3)
    return st.one_of(
        st.tuples(st.just("par"), st.sampled_from(["pg", "cpg"]), branches),
        st.tuples(
            st.just("exc"),
            branches,
            st.integers(0, 2),  # branches to the end event, outside parallel blocks
            st.booleans(),  # a branch looping back (only with cycle_tolerate)
            st.booleans(),  # share the enclosing block's converge gateway when last
        ),
        st.tuples(st.just("sub"), st.lists(children, min_size=1, max_size=3)),
    )


BLOCK = st.recursive(st.just(("act",)), _blocks, max_leaves=14)
PIPELINE = st.lists(BLOCK, min_size=1, max_size=4)
ANY = "any"


@attrs.define
class _Context:
    end: EmptyEndEvent
    in_parallel: bool = False


@attrs.define
class Generated:
    """A tree built from specs, and the converge gateway expected for each gateway."""

    loops: bool
    expected: dict[str, str] = attrs.Factory(dict)
    loops_made: int = 0

    def pipeline(self, blocks: list[Spec], pipeline_id: str | None = None) -> Tree:
        s, e = EmptyStartEvent(), EmptyEndEvent()
        self.sequence(blocks, s, _Context(e)).extend(e)
        return build_tree(s, id=pipeline_id)

    def sequence(self, blocks: list[Spec], prev: Element, ctx: _Context) -> Element:
        for block in blocks:
            prev = self.block(block, prev, ctx)
        return prev

    def branch(
        self,
        blocks: list[Spec],
        gateway: Element,
        closing: Element,
        ctx: _Context,
        may_share: bool = True,
    ) -> None:
        if may_share and blocks and blocks[-1][0] == "exc" and blocks[-1][4]:
            prev = self.sequence(blocks[:-1], gateway, ctx)
            self.exclusive(blocks[-1], prev, ctx, closing)
        else:
            self.sequence(blocks, gateway, ctx).extend(closing)

    def block(self, block: Spec, prev: Element, ctx: _Context) -> Element:
        kind = block[0]
        if kind == "act":
            return prev.extend(ServiceActivity("echo"))
        if kind == "sub":
            inner = EmptyStartEvent()
            inner_end = EmptyEndEvent()
            self.sequence(block[1], inner, _Context(inner_end)).extend(inner_end)
            return prev.extend(SubProcess(start=inner))
        if kind == "par":
            return self.parallel(block, prev, ctx)
        return self.exclusive(block, prev, ctx, None)

    def parallel(self, block: Spec, prev: Element, ctx: _Context) -> Element:
        _, flavour, branches = block
        gateway: Element
        if flavour == "pg":
            gateway = ParallelGateway()
        else:
            gateway = ConditionalParallelGateway(
                conditions=dict.fromkeys(range(len(branches)), "1")
            )
        prev.extend(gateway)
        converge = ConvergeGateway()
        inner = _Context(ctx.end, in_parallel=True)
        # A known limit of the validator: the only branch of a parallel block
        # does not end with an exclusive block that shares its converge. With
        # more converges after it, the parallel gateway could close at any of
        # them, and the matching may take one another gateway needs (the shape
        # of the upstream issue alone is accepted; see test_validator, and its
        # strict xfail of two such blocks nested).
        may_share = len(branches) > 1
        for branch in branches:
            self.branch(branch, gateway, converge, inner, may_share)
        self.expected[gateway.id] = converge.id if len(branches) > 1 else ANY
        return converge

    def exclusive(
        self, block: Spec, prev: Element, ctx: _Context, closing: Element | None
    ) -> Element:
        _, branches, ends, loop, _ = block
        ends = 0 if ctx.in_parallel else ends
        loop = loop and self.loops
        gateway = ExclusiveGateway(
            conditions=dict.fromkeys(range(len(branches) + ends + loop), "True")
        )
        back_to = None
        if loop:
            back_to = prev.extend(ServiceActivity("echo"))
            prev = back_to
        prev.extend(gateway)
        converge = closing or ConvergeGateway()
        for branch in branches:
            self.branch(branch, gateway, converge, ctx)
        for _ in range(ends):
            gateway.extend(ctx.end)
        if back_to is not None:
            gateway.extend(back_to)
            self.loops_made += 1
        self.expected[gateway.id] = converge.id if len(branches) > 1 else ANY
        return converge


def generated(blocks: list[Spec], loops: bool) -> tuple[Tree, Generated]:
    gen = Generated(loops)
    return gen.pipeline(blocks, "root"), gen


def all_gateways(tree: Tree) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    pending = [tree]
    while pending:
        current = pending.pop()
        found.update(current["gateways"])
        pending.extend(
            act["pipeline"] for act in current["activities"].values() if act["type"] == "SubProcess"
        )
    return found


# -- valid structures -----------------------------------------------------------------


@SETTINGS
@given(blocks=PIPELINE, loops=st.booleans())
def test_generated_structures_validate(blocks: list[Spec], loops: bool) -> None:
    tree, gen = generated(blocks, loops)
    validate_and_process_pipeline(tree, cycle_tolerate=loops)
    gateways = all_gateways(tree)
    for gateway_id, expected in gen.expected.items():
        gateway = gateways[gateway_id]
        converge = gateway.get("converge_gateway_id")
        if gateway["type"] != "ExclusiveGateway":
            assert converge is not None
        if expected != ANY:
            assert converge == expected, (gateway["type"], gateway_id)
        if converge is not None:
            assert gateways[converge]["type"] == "ConvergeGateway"
    parallel = [
        g["converge_gateway_id"] for g in gateways.values() if g["type"].endswith("ParallelGateway")
    ]
    assert len(parallel) == len(set(parallel)), "parallel gateways share a converge gateway"
    for act in tree["activities"].values():
        assert isinstance(act["incoming"], list)
    again = copy.deepcopy(tree)
    validate_and_process_pipeline(again, cycle_tolerate=loops)
    assert again == tree
    assert get_allowed_start_node_ids(tree)[0] == tree["start_event"]["id"]


@SETTINGS
@given(blocks=PIPELINE)
def test_loops_need_cycle_tolerate(blocks: list[Spec]) -> None:
    tree, gen = generated(blocks, loops=True)
    if gen.loops_made:
        with pytest.raises(CycleError):
            validate_and_process_pipeline(copy.deepcopy(tree))
    validate_and_process_pipeline(tree, cycle_tolerate=True)


# -- corruptions ------------------------------------------------------------------------

REQUIRED_NODE_KEYS = ("id", "type", "incoming", "outgoing")
REQUIRED_BY_TYPE = {
    "ServiceActivity": ("component",),
    "SubProcess": ("pipeline", "params"),
    "ExclusiveGateway": ("conditions",),
    "ConditionalParallelGateway": ("conditions",),
}
TOP_KEYS = ("id", "start_event", "end_event", "activities", "gateways", "flows", "data")
GARBAGE = st.one_of(st.none(), st.integers(), st.floats(allow_nan=False), st.booleans())


def _nodes(tree: Tree) -> list[dict[str, Any]]:
    return [
        tree["start_event"],
        tree["end_event"],
        *tree["activities"].values(),
        *tree["gateways"].values(),
    ]


def _splitting(tree: Tree, *types: str) -> list[str]:
    return sorted(gid for gid, g in tree["gateways"].items() if g["type"] in types)


def _outgoing(raw: dict[str, Any]) -> list[str]:
    value = raw["outgoing"]
    return value if isinstance(value, list) else [value] if value else []


def corrupt(tree: Tree, data: st.DataObject) -> bool:
    """Apply one random corruption; return whether it needs cycle_tolerate=False to fail."""
    kind = data.draw(
        st.sampled_from(
            [
                "dangling",
                "no_end",
                "drop_key",
                "garbage",
                "parallel_to_end",
                "cross_branches",
                "isolated",
                "duplicate",
                "cycle",
                "flow_list_missing",
            ]
        ),
        label="corruption",
    )
    flows = sorted(tree["flows"])
    nodes = _nodes(tree)
    if kind == "dangling":
        tree["flows"][data.draw(st.sampled_from(flows))]["target"] = "ghost-node"
    elif kind == "no_end":
        del tree["end_event"]
    elif kind == "drop_key":
        _drop_key(tree, data)
    elif kind == "garbage":
        _garbage(tree, data)
    elif kind == "parallel_to_end":
        gateways = _splitting(tree, "ParallelGateway", "ConditionalParallelGateway")
        assume(gateways)
        gid = data.draw(st.sampled_from(gateways))
        redirect(tree, _outgoing(tree["gateways"][gid])[0], tree["end_event"]["id"])
    elif kind == "cross_branches":
        _cross_branches(tree, data)
    elif kind == "isolated":
        tree["activities"]["orphan"] = {
            "id": "orphan",
            "type": "ServiceActivity",
            "incoming": [],
            "outgoing": "",
            "component": {"code": "echo", "inputs": {}},
        }
        add_flow(tree, "f-orphan", "orphan", tree["end_event"]["id"])
    elif kind == "duplicate":
        victim = data.draw(st.sampled_from(nodes))
        other = "activities" if victim["id"] in tree["gateways"] else "gateways"
        clone = copy.deepcopy(data.draw(st.sampled_from(nodes)))
        clone["id"] = victim["id"]
        tree[other][victim["id"]] = clone
    elif kind == "cycle":
        gateways = _splitting(tree, "ExclusiveGateway", "ParallelGateway")
        assume(gateways)
        gid = data.draw(st.sampled_from(gateways))
        first = tree["flows"][tree["start_event"]["outgoing"]]["target"]
        add_flow(tree, "f-cycle", gid, first)
        return True
    else:
        holder = data.draw(st.sampled_from(nodes))
        add_flow(tree, "f-new", holder["id"], tree["end_event"]["id"])
        node(tree, tree["end_event"]["id"])["incoming"].remove("f-new")
    return False


def _drop_key(tree: Tree, data: st.DataObject) -> None:
    where = data.draw(st.sampled_from(["top", "node", "flow", "data"]))
    if where == "top":
        del tree[data.draw(st.sampled_from(TOP_KEYS))]
    elif where == "node":
        raw = data.draw(st.sampled_from(_nodes(tree)))
        keys = REQUIRED_NODE_KEYS + REQUIRED_BY_TYPE.get(raw["type"], ())
        del raw[data.draw(st.sampled_from(keys))]
    elif where == "flow":
        flow = tree["flows"][data.draw(st.sampled_from(sorted(tree["flows"])))]
        del flow[data.draw(st.sampled_from(["id", "source", "target"]))]
    else:
        del tree["data"][data.draw(st.sampled_from(["inputs", "outputs"]))]


def _garbage(tree: Tree, data: st.DataObject) -> None:
    value = data.draw(GARBAGE)
    where = data.draw(st.sampled_from(["top", "node", "flow"]))
    if where == "top":
        tree[data.draw(st.sampled_from(TOP_KEYS))] = value
    elif where == "node":
        raw = data.draw(st.sampled_from(_nodes(tree)))
        key = data.draw(st.sampled_from(("id", "type", "incoming", "outgoing")))
        # None is how exported trees write no flows: harmless where a node has none.
        harmless = (raw is tree["start_event"] and key == "incoming") or (
            raw is tree["end_event"] and key == "outgoing"
        )
        assume(value is not None or not harmless)
        raw[key] = value
    else:
        flow = tree["flows"][data.draw(st.sampled_from(sorted(tree["flows"])))]
        flow[data.draw(st.sampled_from(["id", "source", "target"]))] = value


def _cross_branches(tree: Tree, data: st.DataObject) -> None:
    candidates = []
    for gid in _splitting(tree, "ParallelGateway", "ConditionalParallelGateway"):
        targets = [tree["flows"][f]["target"] for f in _outgoing(tree["gateways"][gid])]
        acts = [t for t in targets if t in tree["activities"]]
        if len(set(acts)) >= 2:
            candidates.append(acts)
    assume(candidates)
    first, second = data.draw(st.sampled_from(candidates))[:2]
    redirect(tree, tree["activities"][second]["outgoing"], first)


@SETTINGS
@given(blocks=PIPELINE, loops=st.booleans(), data=st.data())
def test_corruptions_are_refused(blocks: list[Spec], loops: bool, data: st.DataObject) -> None:
    tree, _ = generated(blocks, loops)
    needs_strict = corrupt(tree, data)
    with pytest.raises(InvalidTreeError) as info:
        validate_and_process_pipeline(tree, cycle_tolerate=loops and not needs_strict)
    assert info.value.message
    assert str(info.value)


# -- garbage anywhere ------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


def _containers(value: Any) -> list[Any]:
    found: list[Any] = []
    pending = [value]
    while pending:
        current = pending.pop()
        if isinstance(current, dict):
            found.append(current)
            pending.extend(current.values())
        elif isinstance(current, list):
            found.append(current)
            pending.extend(current)
    return found


@SETTINGS
@given(blocks=PIPELINE, loops=st.booleans(), data=st.data())
def test_garbage_anywhere_never_crashes(
    blocks: list[Spec], loops: bool, data: st.DataObject
) -> None:
    tree, _ = generated(blocks, loops)
    for _ in range(data.draw(st.integers(1, 3))):
        target = data.draw(st.sampled_from(_containers(tree)))
        if not target:
            continue
        keys = list(target) if isinstance(target, dict) else list(range(len(target)))
        key = data.draw(st.sampled_from(keys))
        if data.draw(st.booleans()):
            del target[key]
        else:
            target[key] = data.draw(JSON)
    try:
        validate_and_process_pipeline(tree, cycle_tolerate=loops)
    except InvalidTreeError as error:
        message = error.message
    else:
        message = "valid"
    assert message


@SETTINGS
@given(value=JSON)
def test_random_json_is_refused(value: Any) -> None:
    with pytest.raises(InvalidTreeError):
        validate_and_process_pipeline(value)
    with pytest.raises(InvalidTreeError):
        get_allowed_start_node_ids(value)
