"""Validate pipeline trees before they run (semantics §3).

The package is pure: it imports nothing from the engine or a runtime. Every error is
a subclass of `aiobamboo.exceptions.InvalidTreeError` whose ``node_ids`` names every
offending node (and flow), and whose message says why; arbitrary malformed input
gives one too, never another exception, and every algorithm is iterative and
polynomial.
"""

from __future__ import annotations

from ._process import validate_and_process_pipeline as validate_and_process_pipeline
from ._start import get_allowed_start_node_ids as get_allowed_start_node_ids
from ._start import get_skipped_execute_node_ids as get_skipped_execute_node_ids
from ._start import validate_pipeline_start_node as validate_pipeline_start_node

__all__ = [
    "add_sink_type",
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
