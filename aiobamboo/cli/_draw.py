"""Drawing a state tree in the terminal: one line a node, sub-processes indented."""

from __future__ import annotations

import datetime as dt
from typing import Any

from ._common import duration, local_time, table


def _label(entry: dict[str, Any]) -> str:
    return str(entry.get("name") or entry.get("type") or entry["id"])


def _row(entry: dict[str, Any], prefix: str) -> list[str]:
    started: dt.datetime | None = entry.get("started_time")
    archived: dt.datetime | None = entry.get("archived_time")
    state = str(entry["state"])
    if entry.get("retry"):
        state += f" (retry {entry['retry']})"
    if entry.get("loop", 1) > 1:
        state += f" (loop {entry['loop']})"
    return [
        prefix + _label(entry),
        str(entry.get("type", "")),
        state,
        local_time(started),
        duration(started, archived) if started else "",
        entry["id"],
    ]


def _walk(entry: dict[str, Any], indent: str, rows: list[list[str]]) -> None:
    children = sorted(entry["children"].values(), key=lambda e: (e["created_time"], e["id"]))
    for i, child in enumerate(children):
        last = i == len(children) - 1
        rows.append(_row(child, indent + ("└─ " if last else "├─ ")))
        _walk(child, indent + ("   " if last else "│  "), rows)


def draw_tree(tree: dict[str, Any]) -> str:
    """The lines for ``get_pipeline_states(..., flat_children=False, with_names=True).data``."""
    (root,) = tree.values()
    rows = [_row(root, "")]
    _walk(root, "", rows)
    return table(rows, ["NODE", "TYPE", "STATE", "STARTED", "TOOK", "ID"])


def is_over(tree: dict[str, Any]) -> bool:
    """Whether the pipeline has ended (FINISHED or REVOKED): nothing more will change."""
    (root,) = tree.values()
    return str(root["state"]) in ("FINISHED", "REVOKED")
