"""The validation pipeline, shared by the public functions."""

from __future__ import annotations

from typing import Any

import attrs

from ._connection import check_connections
from ._gateways import Match, match_gateways
from ._graph import Walk, check_no_cycle, check_reachability, depth_first
from ._model import PARALLEL, Kind, PipelineGraph
from ._schema import check_tree
from ._streams import check_streams

__all__ = ["Analysis", "analyse_tree", "validate_and_process_pipeline"]


@attrs.frozen
class Analysis:
    """A validated pipeline: its graph, depth-first walk and gateway matching."""

    graph: PipelineGraph
    walk: Walk
    match: Match


def analyse_tree(tree: object, *, cycle_tolerate: bool, process: bool) -> list[Analysis]:
    """Validate ``tree`` and every nested pipeline, innermost first (the root is last).

    With ``process``, normalise ``incoming`` to lists and write ``converge_gateway_id``
    as validation goes, like the original.
    """
    analyses = []
    for graph in check_tree(tree):
        if process:
            _normalise_incoming(graph)
        check_connections(graph)
        walk = depth_first(graph)
        # A walk that reaches every node and closes no loop proves there is no
        # cycle; only otherwise are the cycles looked for (and named).
        if not cycle_tolerate and (walk.back or len(walk.reached) != len(graph.kinds)):
            check_no_cycle(graph)
        check_reachability(graph, walk)
        match = match_gateways(graph, walk)
        if process:
            _write_converges(graph, match)
        check_streams(graph, walk, match)
        analyses.append(Analysis(graph, walk, match))
    return analyses


def validate_and_process_pipeline(
    pipeline: dict[str, Any], cycle_tolerate: bool = False, *, start_node_id: str | None = None
) -> None:
    """Validate a pipeline tree, and prepare it for the engine, in place.

    Checks, in order, each phase reporting every offending node at once:
    the structure of the whole tree (keys, types, ids used once, nested pipeline ids),
    flows against each node's ``incoming``/``outgoing``, then for each pipeline,
    innermost first: the connection rules, cycles (unless ``cycle_tolerate``),
    reachability, gateway matching and streams.

    The tree is changed as by the original: ``incoming`` of activities, gateways and
    the end event becomes a list, and every parallel, conditional parallel and matched
    exclusive gateway gets its ``converge_gateway_id``.

    Raises a subclass of `aiobamboo.exceptions.InvalidTreeError` whose ``node_ids``
    names every offending node or flow.

    With ``start_node_id``, then checks it as
    :func:`~aiobamboo.validator.validate_pipeline_start_node` does, on the
    analysis just made rather than on a second one.
    """
    analyses = analyse_tree(pipeline, cycle_tolerate=cycle_tolerate, process=True)
    if start_node_id is not None:
        from ._start import check_start_node

        check_start_node(pipeline, analyses[-1], start_node_id)


def _normalise_incoming(graph: PipelineGraph) -> None:
    for node_id, node in graph.nodes.items():
        if graph.kinds[node_id] is not Kind.START and not isinstance(node["incoming"], list):
            node["incoming"] = list(graph.incoming[node_id])


def _write_converges(graph: PipelineGraph, match: Match) -> None:
    for gateway, resolution in match.resolutions.items():
        node = graph.nodes[gateway]
        if resolution.converge is not None:
            node["converge_gateway_id"] = resolution.converge
        elif graph.kinds[gateway] not in PARALLEL:
            # A stale id from an earlier edit would point the engine at the wrong node.
            node.pop("converge_gateway_id", None)
