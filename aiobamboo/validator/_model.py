"""The checked graph of one (sub)pipeline, as the graph phases see it."""

from __future__ import annotations

import enum
from typing import Any

import attrs

__all__ = [
    "ACTIVITY_TYPES",
    "GATEWAY_TYPES",
    "PARALLEL",
    "SPLITTING",
    "START_TYPE",
    "Kind",
    "PipelineGraph",
]


class Kind(enum.Enum):
    START = "EmptyStartEvent"
    END = "end event"
    ACTIVITY = "ServiceActivity"
    SUBPROCESS = "SubProcess"
    EXCLUSIVE = "ExclusiveGateway"
    PARALLEL = "ParallelGateway"
    CONDITIONAL_PARALLEL = "ConditionalParallelGateway"
    CONVERGE = "ConvergeGateway"

    # Members are singletons compared by identity; Enum's own __hash__ is Python
    # code, run for every set and dict lookup of a kind, once per node per phase.
    __hash__ = object.__hash__


START_TYPE = "EmptyStartEvent"
ACTIVITY_TYPES = {"ServiceActivity": Kind.ACTIVITY, "SubProcess": Kind.SUBPROCESS}
GATEWAY_TYPES = {
    "ExclusiveGateway": Kind.EXCLUSIVE,
    "ParallelGateway": Kind.PARALLEL,
    "ConditionalParallelGateway": Kind.CONDITIONAL_PARALLEL,
    "ConvergeGateway": Kind.CONVERGE,
}
SPLITTING = frozenset({Kind.EXCLUSIVE, Kind.PARALLEL, Kind.CONDITIONAL_PARALLEL})
PARALLEL = frozenset({Kind.PARALLEL, Kind.CONDITIONAL_PARALLEL})


@attrs.define
class PipelineGraph:
    """Nodes and flows of one pipeline, after the structure check.

    ``outgoing`` and ``incoming`` keep each node's own order and agree with ``flows``.
    """

    id: str
    tree: dict[str, Any]
    start: str
    end: str
    kinds: dict[str, Kind]
    types: dict[str, str]
    nodes: dict[str, dict[str, Any]]
    source: dict[str, str]
    target: dict[str, str]
    outgoing: dict[str, list[str]]
    incoming: dict[str, list[str]]

    def describe(self, node_id: str) -> str:
        """``"ExclusiveGateway eg1"``, ``"start event s"``, ``"end event e"``."""
        kind = self.kinds[node_id]
        if kind is Kind.START:
            return f"start event {node_id}"
        if kind is Kind.END:
            return f"end event {node_id}"
        return f"{kind.value} {node_id}"

    @property
    def has_gateways(self) -> bool:
        return bool(self.tree["gateways"])

    def successors(self, node_id: str) -> list[str]:
        return [self.target[flow] for flow in self.outgoing[node_id]]
