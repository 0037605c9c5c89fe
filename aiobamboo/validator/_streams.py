"""Streams: which parallel branch each node runs in.

The start and end events are on the main stream; branch ``i`` of a parallel gateway
``P`` is its own stream, and ``P``'s converge gateway is back on ``P``'s stream.
Labels flow along the loop-free graph in topological order, so each node's label
is complete before it is passed on. A node given two labels is where a flow
crosses between branches or leaves one. A flow closing a loop must stay in its
stream. An exclusive gateway inside a parallel branch may not end the pipeline.
"""

from __future__ import annotations

from collections import defaultdict

from aiobamboo.exceptions import ConvergeMatchError, StreamValidateError

from ._gateways import Match
from ._graph import Walk
from ._model import PARALLEL, PipelineGraph
from ._problems import Problems

__all__ = ["MAIN", "Label", "check_streams", "stream_labels"]

Label = tuple[str, int]
MAIN: Label = ("", -1)


def stream_labels(
    graph: PipelineGraph, walk: Walk, match: Match, conflicts: Problems
) -> dict[str, Label | None]:
    """Each reached node's stream; ``None`` where labels conflict (reported once)."""
    arriving: defaultdict[str, set[Label]] = defaultdict(set)
    arriving[graph.start].add(MAIN)
    arriving[graph.end].add(MAIN)
    labels: dict[str, Label | None] = {}
    kinds, outgoing, target, back = graph.kinds, graph.outgoing, graph.target, walk.back
    owners = match.parallel_owner
    for node in walk.order:
        found = arriving[node]
        if len(found) == 1:
            (label,) = found
        else:
            # None also where no label arrives: the nodes after a conflict.
            label = None
        if len(found) > 1:
            names = " and from ".join(describe_label(graph, item) for item in sorted(found))
            conflicts.add(
                f"{graph.describe(node)} is reached from {names}: a flow crosses between "
                "parallel branches or leaves one",
                node,
            )
        labels[node] = label
        if kinds[node] in PARALLEL:
            _pass_on(graph, walk, match, node, label, arriving)
        elif label is not None:
            # What _pass_on does for any other node, inline: this runs once a node.
            for flow in outgoing[node]:
                if flow in back:
                    continue
                nxt = target[flow]
                owner = owners.get(nxt)
                if owner is None or label[0] != owner:
                    arriving[nxt].add(label)
    return labels


def _pass_on(
    graph: PipelineGraph,
    walk: Walk,
    match: Match,
    node: str,
    label: Label | None,
    arriving: defaultdict[str, set[Label]],
) -> None:
    flows = [(i, flow) for i, flow in enumerate(graph.outgoing[node]) if flow not in walk.back]
    if graph.kinds[node] in PARALLEL:
        converge = match.converge_of(node)
        assert converge is not None
        if label is not None:
            arriving[converge].add(label)
        for i, flow in flows:
            if graph.target[flow] != converge:
                arriving[graph.target[flow]].add((node, i))
        return
    if label is None:
        return
    for _, flow in flows:
        target = graph.target[flow]
        owner = match.parallel_owner.get(target)
        if owner is not None and label[0] == owner:
            continue  # a branch arriving at its own converge gateway
        arriving[target].add(label)


def describe_label(graph: PipelineGraph, label: Label) -> str:
    if label == MAIN:
        return "the main stream"
    gateway, index = label
    flow = graph.outgoing[gateway][index]
    return f"branch {index + 1} (flow {flow}) of {graph.describe(gateway)}"


def check_streams(graph: PipelineGraph, walk: Walk, match: Match) -> None:
    """Raise `ConvergeMatchError` or `StreamValidateError` naming every offending node."""
    if not graph.has_gateways or (
        not match.parallel_owner and all(kind not in PARALLEL for kind in graph.kinds.values())
    ):
        # Streams only split at parallel gateways: without one every node is on
        # the main stream, so no flow crosses and no branch can end the pipeline.
        return
    conflicts = Problems()
    labels = stream_labels(graph, walk, match, conflicts)
    hanging = Problems()
    for gateway, resolution in match.resolutions.items():
        label = labels.get(gateway)
        if resolution.reaches_end and label is not None and label != MAIN:
            hanging.add(
                f"{graph.describe(gateway)} is inside {describe_label(graph, label)}, so all "
                "its branches must come back to a converge gateway, but one ends the pipeline",
                gateway,
            )
    hanging.raise_if_any(
        ConvergeMatchError, f"pipeline {graph.id}: gateways and converge gateways do not match"
    )
    for flow in sorted(walk.back):
        source, target = graph.source[flow], graph.target[flow]
        here, there = labels.get(source), labels.get(target)
        if here is not None and there is not None and here != there:
            conflicts.add(
                f"flow {flow} loops back from {graph.describe(source)} in "
                f"{describe_label(graph, here)} to {graph.describe(target)} in "
                f"{describe_label(graph, there)}; a loop may not leave or enter a parallel branch",
                target,
                source,
            )
    conflicts.raise_if_any(
        StreamValidateError, f"pipeline {graph.id} has flows that cross parallel branches"
    )
