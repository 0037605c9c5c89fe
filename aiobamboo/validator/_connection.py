"""Connection rules: degrees and allowed targets, checked on every node."""

from __future__ import annotations

import attrs

from aiobamboo.exceptions import ConnectionValidateError

from ._model import Kind, PipelineGraph
from ._problems import Problems

__all__ = ["MAX_IN", "MAX_OUT", "check_connections"]

MAX_IN = 1000
MAX_OUT = 1000


@attrs.frozen
class _Rule:
    min_in: int
    max_in: int
    min_out: int
    max_out: int
    forbidden_targets: frozenset[Kind] = frozenset({Kind.START})


_SINGLE_OUT = _Rule(1, MAX_IN, 1, 1)
_SPLIT = _Rule(1, MAX_IN, 1, MAX_OUT)
_RULES = {
    Kind.START: _Rule(0, 0, 1, 1, frozenset({Kind.START, Kind.END})),
    Kind.END: _Rule(1, MAX_IN, 0, 0),
    Kind.ACTIVITY: _SINGLE_OUT,
    Kind.SUBPROCESS: _SINGLE_OUT,
    Kind.CONVERGE: _SINGLE_OUT,
    Kind.EXCLUSIVE: _SPLIT,
    Kind.PARALLEL: _SPLIT,
    Kind.CONDITIONAL_PARALLEL: _SPLIT,
}


def _needs(low: int, high: int) -> str:
    if low == high:
        return "none" if low == 0 else f"exactly {low}"
    return f"{low} to {high}"


def _flows(count: int, direction: str) -> str:
    return f"{count} {direction} flow" + ("" if count == 1 else "s")


#: Each kind's (min_in, max_in, min_out, max_out), read in the hot loop.
_DEGREES = {
    kind: (rule.min_in, rule.max_in, rule.min_out, rule.max_out) for kind, rule in _RULES.items()
}


def _sound(graph: PipelineGraph) -> bool:
    """Whether every node keeps its rule, checked without naming anything.

    Only the start event takes no incoming flow, so a flow into it breaks the
    start event's own degree; what remains of the forbidden targets is a start
    event leading straight to the end event.
    """
    incoming, outgoing = graph.incoming, graph.outgoing
    for node_id, kind in graph.kinds.items():
        min_in, max_in, min_out, max_out = _DEGREES[kind]
        if not (
            min_in <= len(incoming[node_id]) <= max_in
            and min_out <= len(outgoing[node_id]) <= max_out
        ):
            return False
    return all(graph.kinds[target] is not Kind.END for target in graph.successors(graph.start))


def check_connections(graph: PipelineGraph) -> None:
    """Raise `ConnectionValidateError` naming every node that breaks its rule."""
    if _sound(graph):
        return
    problems = Problems()
    for node_id, kind in graph.kinds.items():
        rule = _RULES[kind]
        reasons = []
        n_in, n_out = len(graph.incoming[node_id]), len(graph.outgoing[node_id])
        if not rule.min_in <= n_in <= rule.max_in:
            reasons.append(
                f"has {_flows(n_in, 'incoming')}, needs {_needs(rule.min_in, rule.max_in)}"
            )
        if not rule.min_out <= n_out <= rule.max_out:
            reasons.append(
                f"has {_flows(n_out, 'outgoing')}, needs {_needs(rule.min_out, rule.max_out)}"
            )
        reasons.extend(
            f"may not connect to {graph.describe(target)}"
            for target in dict.fromkeys(graph.successors(node_id))
            if graph.kinds[target] in rule.forbidden_targets
        )
        if reasons:
            problems.add(f"{graph.describe(node_id)} " + " and ".join(reasons), node_id)
    problems.raise_if_any(
        ConnectionValidateError, f"pipeline {graph.id} has nodes with invalid connections"
    )
