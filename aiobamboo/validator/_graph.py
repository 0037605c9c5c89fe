"""Graph algorithms, all iterative: cycles, depth-first order and back edges, reachability."""

from __future__ import annotations

from collections import deque

import attrs

from aiobamboo.exceptions import CycleError, IsolateNodeError

from ._model import PipelineGraph
from ._problems import Problems

__all__ = ["Walk", "check_no_cycle", "check_reachability", "depth_first", "reaching"]


def strongly_connected(graph: PipelineGraph) -> list[list[str]]:
    """Tarjan's algorithm without recursion: the components that hold a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []
    for root in graph.kinds:
        if root in index:
            continue
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(graph.successors(root)))]
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph.successors(nxt))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph.successors(node):
                        cycles.append(component[::-1])
    return cycles


def check_no_cycle(graph: PipelineGraph) -> None:
    """Raise `CycleError` naming every node on a cycle."""
    problems = Problems()
    for component in strongly_connected(graph):
        problems.add("nodes " + ", ".join(component) + " form a cycle", *component)
    problems.raise_if_any(
        CycleError,
        f"pipeline {graph.id} graph has a cycle (loops need cycle_tolerate=True)",
    )


@attrs.frozen
class Walk:
    """A depth-first walk from the start event, following each node's outgoing order.

    ``order`` is a topological order of the reached nodes once the ``back`` flows
    (those closing a loop) are left out.
    """

    order: list[str]
    back: frozenset[str]
    reached: frozenset[str] = attrs.field(init=False)

    @reached.default
    def _reached(self) -> frozenset[str]:
        return frozenset(self.order)


def depth_first(graph: PipelineGraph) -> Walk:
    order = _loop_free_order(graph)
    if order is not None:
        return Walk(order=order, back=frozenset())
    on_path: set[str] = {graph.start}
    done: set[str] = set()
    back: set[str] = set()
    work = [(graph.start, iter(graph.outgoing[graph.start]))]
    while work:
        node, flows = work[-1]
        for flow in flows:
            nxt = graph.target[flow]
            if nxt in on_path:
                back.add(flow)
            elif nxt not in done:
                on_path.add(nxt)
                work.append((nxt, iter(graph.outgoing[nxt])))
                break
        else:
            work.pop()
            on_path.discard(node)
            done.add(node)
    return Walk(order=_topological(graph, done, back), back=frozenset(back))


def _loop_free_order(graph: PipelineGraph) -> list[str] | None:
    """The walk's order when the pipeline has no loop and every node is reached; else None.

    Kahn's algorithm over every flow: it orders every node exactly when the graph
    has no cycle and each node is reached from the start event (whose incoming
    flows, if any, leave it and its successors waiting). Then the depth-first
    walk would find no back flow and reach every node, and :func:`_topological`
    would run this same loop, so the cheaper one stands in for both.
    """
    target, outgoing = graph.target, graph.outgoing
    waiting: dict[str, int] = {}
    for node in target.values():
        waiting[node] = waiting.get(node, 0) + 1
    start = graph.start
    if start in waiting:
        return None
    order = [start]
    for node in order:
        for flow in outgoing[node]:
            nxt = target[flow]
            left = waiting[nxt] - 1
            waiting[nxt] = left
            if left == 0:
                order.append(nxt)
    return order if len(order) == len(graph.kinds) else None


def _topological(graph: PipelineGraph, reached: set[str], back: set[str]) -> list[str]:
    """Kahn's algorithm from the start event over the flows that close no loop.

    Ties go first-come in each node's outgoing order, so a block's branches are
    listed in order (a reverse post-order would list them backwards).
    """
    waiting: dict[str, int] = {}
    for flow, target in graph.target.items():
        if flow not in back and graph.source[flow] in reached:
            waiting[target] = waiting.get(target, 0) + 1
    order = [graph.start]
    for node in order:
        for flow in graph.outgoing[node]:
            if flow in back:
                continue
            target = graph.target[flow]
            waiting[target] -= 1
            if waiting[target] == 0:
                order.append(target)
    return order


def reaching(graph: PipelineGraph, goal: str, skip: frozenset[str] = frozenset()) -> set[str]:
    """Nodes with a path to ``goal`` (``goal`` included) that uses no flow in ``skip``."""
    found = {goal}
    queue = deque([goal])
    while queue:
        node = queue.popleft()
        for flow in graph.incoming[node]:
            prev = graph.source[flow]
            if flow not in skip and prev not in found:
                found.add(prev)
                queue.append(prev)
    return found


def check_reachability(graph: PipelineGraph, walk: Walk) -> None:
    """Every node is reached from the start event, and can reach the end event.

    ``graph`` has passed :func:`aiobamboo.validator._connection.check_connections`.
    """
    isolated = [node for node in graph.kinds if node not in walk.reached]
    if isolated:
        problems = Problems()
        for node in isolated:
            problems.add(f"{graph.describe(node)} is not reachable from the start event", node)
        problems.raise_if_any(IsolateNodeError, f"pipeline {graph.id} has isolated nodes")
    if not walk.back:
        # Without a loop every walk forward ends, and only at the end event: every
        # other node has an outgoing flow (the connection rules, checked before).
        return
    to_end = reaching(graph, graph.end)
    trapped = [node for node in walk.order if node not in to_end]
    if trapped:
        Problems(
            [
                (
                    "nodes " + ", ".join(trapped) + " are in a loop that never reaches the end "
                    "event",
                    tuple(trapped),
                )
            ]
        ).raise_if_any(CycleError, f"pipeline {graph.id} has a loop without exit")
