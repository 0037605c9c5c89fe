"""Rollback tokens: which nodes of a pipeline lie in one unit a rollback may cross.

As the original's ``generate_pipeline_token``: flows that close a loop are left
out first; the main line and the branches of an exclusive gateway share a token;
each branch of a parallel or conditional parallel gateway gets a fresh one (its
converge gateway, and what follows it, the gateway's again); the inside of a
sub-process gets a fresh one. A rollback in TOKEN mode only goes between nodes of
one token.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._ids import unique_id

__all__ = ["generate_pipeline_token", "tokens_of"]

#: Node roles the walk tells apart.
FORK = "fork"  # parallel and conditional parallel gateways: a fresh token per branch
BRANCH = "branch"  # exclusive gateways: the branches keep the token
CONVERGE = "converge"
END = "end"
SUBPROCESS = "subprocess"
STEP = "step"  # start events, activities: one way on


def tokens_of(
    start_id: str,
    role: Callable[[str], str],
    successors: Callable[[str], list[str]],
    inner_start: Callable[[str], str | None],
    new_token: Callable[[], str],
) -> dict[str, str]:
    """Tokens of every node reachable from ``start_id``, sub-process insides included."""
    tokens: dict[str, str] = {}
    _pipeline(start_id, role, _acyclic(start_id, successors), inner_start, new_token, tokens)
    return tokens


def _acyclic(start_id: str, successors: Callable[[str], list[str]]) -> Callable[[str], list[str]]:
    """``successors`` without the flows that lead back onto the path walked (loops)."""
    forward: dict[str, list[str]] = {}
    on_path: set[str] = set()
    done: set[str] = set()
    stack: list[tuple[str, int]] = [(start_id, 0)]
    on_path.add(start_id)
    while stack:
        node, i = stack.pop()
        targets = successors(node)
        kept = forward.setdefault(node, [])
        if i < len(targets):
            stack.append((node, i + 1))
            target = targets[i]
            if target in on_path:
                continue  # a flow back: the loop it closes is cut here
            kept.append(target)
            if target not in done:
                on_path.add(target)
                stack.append((target, 0))
            continue
        on_path.discard(node)
        done.add(node)

    def forward_of(node: str) -> list[str]:
        found = forward.get(node)
        return found if found is not None else successors(node)

    return forward_of


def _pipeline(
    start_id: str,
    role: Callable[[str], str],
    successors: Callable[[str], list[str]],
    inner_start: Callable[[str], str | None],
    new_token: Callable[[], str],
    tokens: dict[str, str],
) -> None:
    def walk(node: str, token: str) -> str | None:
        """Give ``token`` to the line from ``node``; the converge or end it stops at."""
        seen: set[str] = set()
        while node not in seen:
            seen.add(node)
            tokens[node] = token
            kind = role(node)
            if kind in (CONVERGE, END):
                return node
            if kind in (FORK, BRANCH):
                ends: dict[str, None] = {}
                for target in successors(node):
                    reached = walk(target, new_token() if kind == FORK else token)
                    if reached is not None:
                        ends[reached] = None
                for reached in ends:
                    tokens[reached] = token
                    if role(reached) == CONVERGE:
                        after = successors(reached)
                        if after:
                            walk(after[0], token)
                return None
            if kind == SUBPROCESS:
                inner = inner_start(node)
                if inner is not None:
                    _pipeline(
                        inner, role, _acyclic(inner, successors), inner_start, new_token, tokens
                    )
            after = successors(node)
            if not after:
                return None
            node = after[0]
        return None

    walk(start_id, new_token())


_ROLES = {
    "ParallelGateway": FORK,
    "ConditionalParallelGateway": FORK,
    "ExclusiveGateway": BRANCH,
    "ConvergeGateway": CONVERGE,
    "EmptyEndEvent": END,
    "ExecutableEndEvent": END,
    "SubProcess": SUBPROCESS,
}


def generate_pipeline_token(pipeline_tree: Mapping[str, Any]) -> dict[str, str]:
    """``{node_id: token}`` for a tree from :func:`build_tree`, as the original's.

    Tokens are fresh ids (``t`` + 32 hex digits) on every call: only which
    nodes share one means anything.
    """
    nodes: dict[str, Mapping[str, Any]] = {}
    flows: dict[str, Mapping[str, Any]] = {}

    def collect(tree: Mapping[str, Any]) -> None:
        nodes[tree["start_event"]["id"]] = tree["start_event"]
        nodes[tree["end_event"]["id"]] = tree["end_event"]
        for group in ("activities", "gateways"):
            for node_id, node in (tree.get(group) or {}).items():
                nodes[node_id] = node
                if node.get("type") == "SubProcess" and isinstance(node.get("pipeline"), Mapping):
                    collect(node["pipeline"])
        flows.update(tree.get("flows") or {})

    collect(pipeline_tree)

    def successors(node_id: str) -> list[str]:
        outgoing = nodes[node_id].get("outgoing") or []
        if isinstance(outgoing, str):
            outgoing = [outgoing]
        return [flows[f]["target"] for f in outgoing if f in flows]

    def inner_start(node_id: str) -> str | None:
        inner = nodes[node_id].get("pipeline")
        return inner["start_event"]["id"] if isinstance(inner, Mapping) else None

    return tokens_of(
        pipeline_tree["start_event"]["id"],
        lambda node_id: _ROLES.get(str(nodes[node_id].get("type")), STEP),
        successors,
        inner_start,
        lambda: unique_id("t"),
    )
