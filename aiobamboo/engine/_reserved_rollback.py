"""A reserved rollback: a rollback that takes place when a running node finishes.

A run holds at most one, as the original's rollback plan. It is stored as a
row of the run's ``timers`` table that never comes due: the row is loaded with
the run (so the reservation survives restarts and moves with the run between
workers), is dropped with the run's other timers when the run ends, and needs
no table of its own. ``kind`` carries the rollback's target and options, the
only column free for them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Final

import attrs

from ..runtime import TimerRow
from ._node_timers import SPENT

#: Prefix of the ``kind`` of a reservation's row.
KIND: Final = "reserved_rollback:"


@attrs.frozen
class Reservation:
    """Roll back from ``start_id`` to ``target_id`` once ``start_id`` finishes."""

    id: str
    start_id: str
    target_id: str
    mode: str
    skip_check_token: bool
    #: The start's attempt when the rollback was reserved (kept for the record).
    version: str


def as_row(res: Reservation, root_id: str, *, live: bool) -> TimerRow:
    """The row of ``res``; a reservation cancelled or used is a row never due again."""
    options = {"target": res.target_id, "mode": res.mode, "skip_check_token": res.skip_check_token}
    return TimerRow(
        id=res.id,
        root_id=root_id,
        node_id=res.start_id,
        version=res.version,
        kind=KIND + json.dumps(options, separators=(",", ":"), sort_keys=True),
        # Never due: the run is not claimed for it; a row with no due time is not loaded.
        due_time=SPENT if live else None,
    )


def from_rows(rows: Sequence[TimerRow]) -> Reservation | None:
    """The live reservation among a run's stored timers, if any."""
    for row in rows:
        if not row.kind.startswith(KIND) or row.due_time is None:
            continue
        try:
            options = json.loads(row.kind[len(KIND) :])
            return Reservation(
                id=row.id,
                start_id=row.node_id,
                target_id=str(options["target"]),
                mode=str(options["mode"]),
                skip_check_token=bool(options.get("skip_check_token", False)),
                version=row.version,
            )
        except (ValueError, KeyError, TypeError):
            continue  # not ours after all: left alone
    return None


__all__ = ["KIND", "Reservation", "as_row", "from_rows"]
