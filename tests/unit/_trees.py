"""Small helpers to build and edit pipeline trees in the validator tests."""

from __future__ import annotations

from typing import Any

from aiobamboo.builder import (
    ConvergeGateway,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    ParallelGateway,
    ServiceActivity,
    build_tree,
)

Tree = dict[str, Any]


def sa(node_id: str) -> ServiceActivity:
    return ServiceActivity("echo", id=node_id)


def eg(node_id: str, branches: int = 2) -> ExclusiveGateway:
    return ExclusiveGateway(conditions=dict.fromkeys(range(branches), "True"), id=node_id)


def pg(node_id: str) -> ParallelGateway:
    return ParallelGateway(id=node_id)


def cg(node_id: str) -> ConvergeGateway:
    return ConvergeGateway(id=node_id)


def start(node_id: str = "s") -> EmptyStartEvent:
    return EmptyStartEvent(id=node_id)


def end(node_id: str = "end") -> EmptyEndEvent:
    return EmptyEndEvent(id=node_id)


def chain_tree(length: int = 1, pipeline_id: str = "p") -> Tree:
    """``s -> a1 -> ... -> a<length> -> end``."""
    s = start()
    current: Any = s
    for i in range(1, length + 1):
        current = current.extend(sa(f"a{i}"))
    current.extend(end())
    return build_tree(s, id=pipeline_id)


def diamond_tree(kind: str = "pg") -> Tree:
    """``s -> g -> [a, b] -> c -> end`` with a parallel or exclusive gateway ``g``."""
    s, c = start(), cg("c")
    gateway = pg("g") if kind == "pg" else eg("g")
    s.extend(gateway).connect(sa("a"), sa("b")).to(gateway).converge(c).extend(end())
    return build_tree(s, id="p")


def node(tree: Tree, node_id: str) -> dict[str, Any]:
    for key in ("start_event", "end_event"):
        if tree[key]["id"] == node_id:
            return tree[key]  # type: ignore[no-any-return]
    for key in ("activities", "gateways"):
        if node_id in tree[key]:
            return tree[key][node_id]  # type: ignore[no-any-return]
    raise KeyError(node_id)


def flow_between(tree: Tree, source: str, target: str) -> str:
    return next(
        fid for fid, f in tree["flows"].items() if f["source"] == source and f["target"] == target
    )


def _remove(holder: dict[str, Any], key: str, fid: str) -> None:
    value = holder[key]
    if isinstance(value, list):
        value.remove(fid)
    else:
        holder[key] = ""


def _add(holder: dict[str, Any], key: str, fid: str, as_list: bool) -> None:
    value = holder[key]
    if isinstance(value, list):
        value.append(fid)
    elif value == "" and not as_list:
        holder[key] = fid
    else:
        holder[key] = [value, fid] if value else [fid]


def redirect(tree: Tree, fid: str, target: str) -> None:
    """Point flow ``fid`` at ``target``, keeping incoming lists consistent."""
    old = tree["flows"][fid]["target"]
    _remove(node(tree, old), "incoming", fid)
    _add(node(tree, target), "incoming", fid, as_list=True)
    tree["flows"][fid]["target"] = target


def add_flow(tree: Tree, fid: str, source: str, target: str) -> None:
    """Add flow ``fid`` from ``source`` to ``target`` and list it on both nodes."""
    tree["flows"][fid] = {"is_default": False, "source": source, "target": target, "id": fid}
    src = node(tree, source)
    _add(src, "outgoing", fid, as_list=isinstance(src["outgoing"], list))
    _add(node(tree, target), "incoming", fid, as_list=True)
    if "conditions" in src:
        src["conditions"][fid] = {"evaluate": "True"}


def remove_flow(tree: Tree, fid: str) -> None:
    f = tree["flows"].pop(fid)
    src = node(tree, f["source"])
    _remove(src, "outgoing", fid)
    _remove(node(tree, f["target"]), "incoming", fid)
    src.get("conditions", {}).pop(fid, None)
