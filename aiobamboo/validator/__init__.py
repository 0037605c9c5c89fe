"""Validate pipeline trees before they run.

The package is pure: it imports nothing from the engine or a runtime. Every error is
a subclass of `aiobamboo.exceptions.InvalidTreeError` whose ``node_ids`` names every
offending node (and flow), and whose message says why; arbitrary malformed input
gives one too, never another exception, and every algorithm is iterative and
polynomial.
"""

from __future__ import annotations

from typing import Any

from ._process import validate_and_process_pipeline as validate_and_process_pipeline
from ._start import get_allowed_start_node_ids as get_allowed_start_node_ids
from ._start import get_skipped_execute_node_ids as get_skipped_execute_node_ids
from ._start import validate_pipeline_start_node as validate_pipeline_start_node

__all__ = [
    "add_sink_type",
    "count_nodes",
    "get_allowed_start_node_ids",
    "get_skipped_execute_node_ids",
    "validate_and_process_pipeline",
    "validate_pipeline_start_node",
]


def add_sink_type(node_type: str) -> None:
    """Accepted for compatibility; it does nothing.

    The original needed every end-event handler type registered before validation.
    Here the ``end_event`` of a tree is the sink whatever its ``type``.
    """


def count_nodes(tree: Any) -> int:
    """How many nodes ``tree`` has, sub-processes included; cheap, and 0 for what is no tree.

    Malformed parts count as nothing: this only sizes the validation work ahead.
    """
    count = 0
    pending = [tree]
    seen: set[int] = set()
    while pending:
        pipeline = pending.pop()
        if not isinstance(pipeline, dict) or id(pipeline) in seen:
            continue
        seen.add(id(pipeline))
        activities = pipeline.get("activities")
        gateways = pipeline.get("gateways")
        count += 2  # the start and end events
        if isinstance(gateways, dict):
            count += len(gateways)
        if isinstance(activities, dict):
            count += len(activities)
            # A plain loop: a generator costs more than it saves on the few nodes
            # of most trees, and this runs for every tree started.
            for node in activities.values():
                if isinstance(node, dict) and node.get("type") == "SubProcess":
                    pending.append(node.get("pipeline"))  # noqa: PERF401
    return count
