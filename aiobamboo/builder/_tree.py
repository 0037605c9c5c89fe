"""``build_tree``: elements -> the original's pipeline tree."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from aiobamboo.exceptions import InvalidTreeError

from ._data import Data, Params
from ._elements import (
    ConditionGateway,
    ConvergeGateway,
    Element,
    EmptyEndEvent,
    EmptyStartEvent,
    ExecutableEndEvent,
    ParallelGateway,
    ServiceActivity,
    SubProcess,
)
from ._ids import unique_id

__all__ = ["build_tree"]

# Kinds whose ``incoming`` is always a list, as in the original. An
# ExecutableEndEvent's is a flow id, as there, or a list where several enter
# (the original kept only the last of them).
_MULTI_INCOMING = (
    ServiceActivity,
    SubProcess,
    ConvergeGateway,
    ParallelGateway,
    ConditionGateway,
    EmptyEndEvent,
)


def build_tree(
    start_elem: Element,
    id: str | None = None,
    data: Data | Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the pipeline tree reachable from ``start_elem``, breadth-first.

    ``id`` defaults to ``"p"`` + a uuid4 hex string. ``data`` is a `Data` or a ready
    tree dict; without one the tree gets ``{"inputs": {}, "outputs": []}``.
    A SubProcess's nested tree is built the same way, with the SubProcess id.

    Shapes the validator rejects (an edge into the start event, a start event or
    activity with several outgoing edges, ...) are still built, with a list where the
    original expects a single flow id, so that validation can say what is wrong.
    Two different start or end events raise `InvalidTreeError` here: a tree holds one.
    """
    if not isinstance(start_elem, Element):
        raise InvalidTreeError(f"build_tree needs a start element, got {start_elem!r}")
    tree = _TreeBuilder().build(start_elem)
    user_data = data.to_dict() if isinstance(data, Data) else data
    tree["id"] = id or unique_id("p")
    tree["data"] = user_data or {"inputs": {}, "outputs": []}
    return tree


def _single(flows: list[str]) -> str | list[str]:
    """A single-outgoing node's ``outgoing``: the flow id, ``""``, or (invalid) a list."""
    if len(flows) == 1:
        return flows[0]
    return list(flows) if flows else ""


class _TreeBuilder:
    def __init__(self) -> None:
        self.start: dict[str, Any] | None = None
        self.end: dict[str, Any] | None = None
        self.activities: dict[str, dict[str, Any]] = {}
        self.gateways: dict[str, dict[str, Any]] = {}
        self.flows: dict[str, dict[str, Any]] = {}
        self.incoming: dict[str, list[str]] = {}
        self.nodes: dict[str, tuple[Element, dict[str, Any]]] = {}

    def build(self, start_elem: Element) -> dict[str, Any]:
        queue: deque[Element] = deque([start_elem])
        while queue:
            elem = queue.popleft()
            if elem.id in self.nodes:
                continue
            for nxt in elem.outgoing:
                if not isinstance(nxt, Element):
                    raise InvalidTreeError(
                        f"{elem!r}: outgoing holds {nxt!r}, which is not an element",
                        node_ids=[elem.id],
                    )
            queue.extend(elem.outgoing)
            self.nodes[elem.id] = (elem, self._grow(elem))
        for elem, node in self.nodes.values():
            node["incoming"] = self._incoming_of(elem)
        return {
            "id": None,
            "start_event": self.start,
            "end_event": self.end,
            "activities": self.activities,
            "gateways": self.gateways,
            "flows": self.flows,
        }

    def _incoming_of(self, elem: Element) -> str | list[str]:
        flows = list(self.incoming.get(elem.id, []))
        if isinstance(elem, _MULTI_INCOMING):
            return flows
        return _single(flows)

    def _flows_from(self, elem: Element) -> list[str]:
        flows = []
        for nxt in elem.outgoing:
            flow_id = unique_id("f")
            self.flows[flow_id] = {
                "is_default": False,
                "source": elem.id,
                "target": nxt.id,
                "id": flow_id,
            }
            self.incoming.setdefault(nxt.id, []).append(flow_id)
            flows.append(flow_id)
        return flows

    def _grow(self, elem: Element) -> dict[str, Any]:
        if isinstance(elem, EmptyStartEvent):
            return self._grow_start(elem)
        if isinstance(elem, (EmptyEndEvent, ExecutableEndEvent)):
            return self._grow_end(elem)
        if isinstance(elem, ServiceActivity):
            node = self._grow_activity(elem)
        elif isinstance(elem, SubProcess):
            node = self._grow_subprocess(elem)
        elif isinstance(elem, (ParallelGateway, ConditionGateway, ConvergeGateway)):
            node = self._grow_gateway(elem)
            self.gateways[elem.id] = node
            return node
        else:
            raise InvalidTreeError(
                f"{elem!r}: build_tree knows no element of class {type(elem).__name__}",
                node_ids=[elem.id],
            )
        self.activities[elem.id] = node
        return node

    def _grow_start(self, elem: EmptyStartEvent) -> dict[str, Any]:
        if self.start is not None:
            raise InvalidTreeError(
                f"a pipeline has one start event, found {self.start['id']} and {elem.id}",
                node_ids=[self.start["id"], elem.id],
            )
        outgoing = _single(self._flows_from(elem))
        self.start = {
            "incoming": "",
            "outgoing": outgoing,
            "type": elem.type(),
            "id": elem.id,
            "name": elem.name,
        }
        return self.start

    def _grow_end(self, elem: EmptyEndEvent | ExecutableEndEvent) -> dict[str, Any]:
        if self.end is not None:
            raise InvalidTreeError(
                f"a pipeline has one end event, found {self.end['id']} and {elem.id}",
                node_ids=[self.end["id"], elem.id],
            )
        outgoing = _single(self._flows_from(elem))
        self.end = {
            "incoming": [],
            "outgoing": outgoing,
            "type": elem.type(),
            "id": elem.id,
            "name": elem.name,
        }
        return self.end

    def _grow_activity(self, elem: ServiceActivity) -> dict[str, Any]:
        outgoing = _single(self._flows_from(elem))
        node: dict[str, Any] = {
            "incoming": [],
            "outgoing": outgoing,
            "type": elem.type(),
            "id": elem.id,
            "name": elem.name,
            "error_ignorable": elem.error_ignorable,
            "timeout": elem.timeout,
            "skippable": elem.skippable,
            "retryable": elem.retryable,
            "component": elem.component_dict(),
            "optional": elem.optional,
        }
        if elem.loop_config is not None:
            node["loop_config"] = dict(elem.loop_config)
        if elem.timeout_action is not None:
            node["timeout_config"] = {
                "enable": elem.timeout is not None,
                "seconds": elem.timeout,
                "action": elem.timeout_action,
            }
        if elem.retry_policy is not None:
            node["retry_policy"] = elem.retry_policy.to_dict()
        if elem.timer_events:
            node["events"] = {"timer_events": [event.to_dict() for event in elem.timer_events]}
        return node

    def _grow_subprocess(self, elem: SubProcess) -> dict[str, Any]:
        outgoing = _single(self._flows_from(elem))
        params = elem.params.to_dict() if isinstance(elem.params, Params) else elem.params
        if not isinstance(elem.start, Element):
            raise InvalidTreeError(
                f"{elem!r}: start must be the nested pipeline's start element, got {elem.start!r}",
                node_ids=[elem.id],
            )
        return {
            "id": elem.id,
            "incoming": [],
            "name": elem.name,
            "outgoing": outgoing,
            "type": elem.type(),
            "params": params,
            "pipeline": build_tree(elem.start, id=elem.id, data=elem.data),
        }

    def _grow_gateway(
        self, elem: ParallelGateway | ConditionGateway | ConvergeGateway
    ) -> dict[str, Any]:
        flows = self._flows_from(elem)
        node: dict[str, Any] = {
            "id": elem.id,
            "incoming": [],
            "outgoing": _single(flows) if isinstance(elem, ConvergeGateway) else flows,
            "type": elem.type(),
            "name": elem.name,
        }
        if isinstance(elem, ConditionGateway):
            node["conditions"] = elem.link_conditions_with(flows)
            node["default_condition"] = elem.link_default_condition_with(flows)
            if elem.extra_info is not None:
                node["extra_info"] = dict(elem.extra_info)
        return node
