"""Where a pipeline may start, and what a later start skips."""

from __future__ import annotations

from typing import Any

from aiobamboo.exceptions import StartPositionInvalidError

from ._graph import reaching
from ._model import PARALLEL, Kind
from ._process import Analysis, analyse_tree

__all__ = [
    "get_allowed_start_node_ids",
    "get_skipped_execute_node_ids",
    "validate_pipeline_start_node",
]

_STARTABLE = {Kind.START, Kind.ACTIVITY, Kind.EXCLUSIVE, Kind.PARALLEL, Kind.CONDITIONAL_PARALLEL}
_PASS_THROUGH = {Kind.START, Kind.ACTIVITY, Kind.EXCLUSIVE, Kind.CONVERGE, Kind.SUBPROCESS}


def _analyse(pipeline: dict[str, Any]) -> Analysis:
    # Validation of a scratch view: loops are allowed here, the tree is not changed.
    return analyse_tree(pipeline, cycle_tolerate=True, process=False)[-1]


def _main_line(analysis: Analysis) -> list[str]:
    graph, match = analysis.graph, analysis.match
    allowed: list[str] = []
    seen: set[str] = set()
    stack = [graph.start]
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        kind = graph.kinds[node]
        if kind in _STARTABLE:
            allowed.append(node)
        if kind in _PASS_THROUGH:
            stack.extend(reversed(graph.successors(node)))
        elif kind in PARALLEL:
            converge = match.converge_of(node)
            assert converge is not None
            stack.append(converge)
    return allowed


def get_allowed_start_node_ids(pipeline: dict[str, Any]) -> list[str]:
    """Nodes a run may start at: those on the main line, in depth-first order.

    The start event, service activities and exclusive, parallel and conditional
    parallel gateways, walking through exclusive branches, converge gateways and
    subprocess nodes, and jumping from a parallel gateway to its converge gateway.
    Works on unvalidated trees (the original needed ``converge_gateway_id`` already
    written); raises `InvalidTreeError` for an invalid one.
    """
    return _main_line(_analyse(pipeline))


def validate_pipeline_start_node(pipeline: dict[str, Any], node_id: str) -> None:
    """Raise `StartPositionInvalidError` unless a run may start at ``node_id``."""
    check_start_node(pipeline, None, node_id)


def check_start_node(pipeline: Any, analysis: Analysis | None, node_id: str) -> None:
    """:func:`validate_pipeline_start_node`, on ``analysis`` of ``pipeline`` when given.

    An analysis made with ``process`` (the tree then changed in place) or without
    ``cycle_tolerate`` serves as well: neither changes the graph or the matching
    of a tree that passes.
    """
    start = pipeline.get("start_event") if isinstance(pipeline, dict) else None
    if isinstance(start, dict) and start.get("id") == node_id:
        return
    if node_id not in _main_line(analysis or _analyse(pipeline)):
        raise StartPositionInvalidError(
            f"this node_id is not allowed as a starting node: {node_id}"
        )


def get_skipped_execute_node_ids(
    pipeline: dict[str, Any], start_node_id: str, validate: bool = True
) -> list[str]:
    """The nodes before ``start_node_id`` that a run starting there never executes.

    These are the nodes on a path from the start event to ``start_node_id`` (loops
    left out), in topological order: of an exclusive gateway before the start node,
    only the branches that lead to it count. With ``validate``, ``start_node_id``
    must be an allowed start node.
    """
    analysis = _analyse(pipeline)
    graph = analysis.graph
    if validate and start_node_id not in _main_line(analysis):
        raise StartPositionInvalidError(
            f"this node_id is not allowed as a starting node: {start_node_id}"
        )
    if start_node_id not in graph.kinds:
        raise StartPositionInvalidError(f"node {start_node_id} is not in pipeline {graph.id}")
    before = reaching(graph, start_node_id, skip=analysis.walk.back)
    return [node for node in analysis.walk.order if node in before and node != start_node_id]
