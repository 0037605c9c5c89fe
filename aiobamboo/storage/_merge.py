"""Batch merging: the rows of several batches, one per key, as applying them in order would."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from ..runtime import (
    RUN_ACTIVE,
    CallbackRow,
    ContextRow,
    EventRow,
    ExecutionDataRow,
    HistoryRow,
    NodeDataRow,
    ProcessRow,
    ScheduleRow,
    StateRow,
    TimerRow,
    WriteBatch,
)

__all__ = ["Merged", "merge"]


@attrs.define
class Merged:
    """What a group of batches writes; a store writes it with one statement per table.

    A run that ends in the group (``run_status`` other than active) keeps no
    stored processes nor timers: they are deleted (``ended``), and so are the
    processes and timers of that run written by earlier batches of the group. Processes written by
    later batches survive, exactly as if the batches were applied one by one.
    """

    states: dict[str, StateRow] = attrs.Factory(dict)
    execution_data: dict[str, ExecutionDataRow] = attrs.Factory(dict)
    node_data: dict[str, NodeDataRow] = attrs.Factory(dict)
    context: dict[tuple[str, str], ContextRow] = attrs.Factory(dict)
    # root id -> process id -> row: ending a run drops its processes in one step.
    _processes: dict[str, dict[str, ProcessRow]] = attrs.field(factory=dict, init=False)
    # Keyed like the unique (node_id, version) of the table, so no row is hit twice.
    schedules: dict[tuple[str, str], ScheduleRow] = attrs.Factory(dict)
    callbacks: dict[str, CallbackRow] = attrs.Factory(dict)
    histories: list[HistoryRow] = attrs.Factory(list)
    timers: dict[str, TimerRow] = attrs.Factory(dict)
    #: in commit order: stores give them ids in this order
    events: list[EventRow] = attrs.Factory(list)
    #: root id -> the run's last status written in the group
    run_status: dict[str, str] = attrs.Factory(dict)
    #: runs whose stored processes are deleted (before the processes here are written)
    ended: set[str] = attrs.Factory(set)

    def add(self, batch: WriteBatch) -> None:
        self.states.update(batch.states)
        self.execution_data.update(batch.execution_data)
        self.node_data.update(batch.node_data)
        self.context.update(batch.context)
        for pid, process in batch.processes.items():
            self._processes.setdefault(process.root_id, {})[pid] = process
        self.schedules.update({(s.node_id, s.version): s for s in batch.schedules.values()})
        self.callbacks.update(batch.callbacks)
        self.histories.extend(batch.histories)
        self.timers.update(batch.timers)
        self.events.extend(batch.events)
        if batch.run_status is not None:
            self.run_status[batch.root_id] = batch.run_status
            if batch.run_status != RUN_ACTIVE:
                self.ended.add(batch.root_id)
                self._processes.pop(batch.root_id, None)
                # Nor timers: an ended run's timers would never fire.
                if self.timers:
                    self.timers = {
                        k: t for k, t in self.timers.items() if t.root_id != batch.root_id
                    }

    @property
    def processes(self) -> dict[str, ProcessRow]:
        """The processes to write, by id."""
        return {pid: p for rows in self._processes.values() for pid, p in rows.items()}

    def __bool__(self) -> bool:
        return bool(
            self.states
            or self.execution_data
            or self.node_data
            or self.context
            or any(self._processes.values())
            or self.schedules
            or self.callbacks
            or self.histories
            or self.timers
            or self.events
            or self.run_status
        )


def merge(batches: Iterable[WriteBatch]) -> Merged:
    """The batches' rows, in call order: a later write of a row wins."""
    merged = Merged()
    for batch in batches:
        merged.add(batch)
    return merged
