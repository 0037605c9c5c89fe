"""The shape of a stored pipeline, for drawing: its nodes and flows, sub-processes nested."""

from __future__ import annotations

from typing import Any

from .. import codec
from ..api import _scheduler
from ..exceptions import NotFoundError
from ..host import Engine

__all__ = ["pipeline_graph"]


def _node(spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(spec.get("id", "")),
        "type": str(spec.get("type", "")),
        "name": str(spec.get("name") or ""),
    }


def _graph(tree: dict[str, Any]) -> dict[str, Any]:
    nodes = [
        _node(event)
        for event in (tree.get("start_event"), tree.get("end_event"))
        if isinstance(event, dict)
    ]
    for activity in (tree.get("activities") or {}).values():
        node = _node(activity)
        if isinstance(activity.get("pipeline"), dict):
            node["pipeline"] = _graph(activity["pipeline"])
        nodes.append(node)
    nodes.extend(_node(gateway) for gateway in (tree.get("gateways") or {}).values())
    flows = [
        {"id": str(flow_id), "source": str(flow["source"]), "target": str(flow["target"])}
        for flow_id, flow in (tree.get("flows") or {}).items()
    ]
    return {"id": str(tree.get("id", "")), "nodes": nodes, "flows": flows}


async def pipeline_graph(runtime: Engine, pipeline_id: str) -> dict[str, Any]:
    """``{"id", "name", "nodes": [{"id", "type", "name", "pipeline"?}], "flows": [...]}``."""
    row = await _scheduler(runtime).store.get_run(pipeline_id)
    if row is None:
        raise NotFoundError(f"pipeline {pipeline_id} does not exist")
    tree = codec.loads(row.tree_json)
    return {**_graph(tree), "name": str(tree.get("name") or "")}
