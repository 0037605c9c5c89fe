"""Components of the timeout, retry and timer event suites (codes prefixed ``time_``).

They register in ``ComponentLibrary.default`` on import. Module state is keyed by
node id (ids are unique per test).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from aiobamboo.component import Component, DataObject, Service, TimerEventAction

#: How often each node id's execute() ran.
ATTEMPTS: Counter[str] = Counter()
#: The timer actions that ran: (node id, version, the node's outputs then).
NOTIFIED: list[tuple[str, str, dict[str, Any]]] = []


class FailTimesService(Service):
    """Fails its first ``failures`` executions (input, default 1), then succeeds."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        ATTEMPTS[self.id] += 1
        data.outputs.attempt = ATTEMPTS[self.id]
        if ATTEMPTS[self.id] <= data.get_one_of_inputs("failures", 1):
            data.outputs.ex_data = f"attempt {ATTEMPTS[self.id]} fails"
            return False
        return True


class FailTimesComponent(Component):
    code = "time_fail_times"
    name = "Fail a few times"
    bound_service = FailTimesService


class NotifyAction(TimerEventAction):
    """A user-defined timer action: records that it ran, and what it saw."""

    code = "time_notify"

    def do(self, data: DataObject, parent_data: DataObject) -> bool:
        NOTIFIED.append((self.node_id, self.version, dict(data.outputs)))
        return True


class BrokenAction(TimerEventAction):
    """A timer action that raises: logged, and nothing else changes."""

    code = "time_broken"

    async def do(self, data: DataObject, parent_data: DataObject) -> bool:
        raise RuntimeError("the action broke")


def notified(node_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    return [n for n in NOTIFIED if n[0] == node_id]


#: Rollback hook calls: (node id, retry_data), in call order.
UNDONE: list[tuple[str, Any]] = []
#: How many more rollbacks of a node id fail (set by the test).
UNDO_FAILURES: Counter[str] = Counter()


#: Rollback hooks that block until the test sets their gate: node id -> event.
UNDO_GATES: dict[str, Any] = {}


class UndoableService(Service):
    """Succeeds; its rollback hook records the call, and fails while UNDO_FAILURES says so.

    A hook whose node id has a gate in UNDO_GATES waits for it first.
    """

    async def execute(self, data: Any, parent_data: Any) -> bool:
        ATTEMPTS[self.id] += 1
        data.outputs.done = ATTEMPTS[self.id]
        return True

    async def rollback(self, data: Any, parent_data: Any, retry_data: Any = None) -> bool:
        UNDONE.append((self.id, retry_data))
        gate = UNDO_GATES.get(self.id)
        if gate is not None:
            await gate.wait()
        if UNDO_FAILURES[self.id] > 0:
            UNDO_FAILURES[self.id] -= 1
            return False
        return True


class UndoableComponent(Component):
    code = "time_undoable"
    name = "Undoable"
    bound_service = UndoableService


def undone(*node_ids: str) -> list[str]:
    return [n for n, _ in UNDONE if n in node_ids]


class UndoableCallbackService(UndoableService):
    """Waits for a callback (its outputs say so once it waits), then succeeds; undoable."""

    __need_schedule__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        ATTEMPTS[self.id] += 1
        data.outputs.waiting = ATTEMPTS[self.id]
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.called_back = callback_data
        return True


class UndoableCallbackComponent(Component):
    code = "time_undoable_callback"
    name = "Undoable, waits for a callback"
    bound_service = UndoableCallbackService
