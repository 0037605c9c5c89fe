"""Extra components for the operation, race and event suites (codes prefixed ``ops_``).

They register in ``ComponentLibrary.default`` on import, like ``components``.
Every piece of module state is keyed by node id (ids are unique per test), so
tests never see each other's counters.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio

from aiobamboo.component import Component, LazyVariable, Service, StaticIntervalGenerator

#: How often each node id's execute() ran.
OPS_EXECUTIONS: Counter[str] = Counter()
#: How often each node id's schedule() ran.
OPS_SCHEDULES: Counter[str] = Counter()
#: Gates that block a node's schedule() until the test sets them: node id -> event.
SCHEDULE_GATES: dict[str, anyio.Event] = {}
#: Node ids whose schedule() has started (so a test knows the schedule is in flight).
SCHEDULE_STARTED: set[str] = set()
#: How often each ``ops_flaky`` lazy variable value was evaluated.
LAZY_CALLS: Counter[str] = Counter()


class FailOnceService(Service):
    """Fails on its first execution, succeeds on every later one (no input needed)."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        OPS_EXECUTIONS[self.id] += 1
        data.outputs.attempt = OPS_EXECUTIONS[self.id]
        if OPS_EXECUTIONS[self.id] == 1:
            data.outputs.ex_data = "first attempt fails"
            return False
        return True


class FailOnceComponent(Component):
    code = "ops_fail_once"
    name = "Fail once"
    bound_service = FailOnceService


class SlowCallbackService(Service):
    """Waits for one callback; its schedule() blocks on SCHEDULE_GATES[node_id]."""

    __need_schedule__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        OPS_EXECUTIONS[self.id] += 1
        data.outputs.waiting = True
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        OPS_SCHEDULES[self.id] += 1
        SCHEDULE_STARTED.add(self.id)
        await SCHEDULE_GATES.setdefault(self.id, anyio.Event()).wait()
        data.outputs.callback_data = callback_data
        if isinstance(callback_data, dict) and callback_data.get("fail"):
            data.outputs.ex_data = "late schedule failure"
            return False
        return True


class SlowCallbackComponent(Component):
    code = "ops_slow_callback"
    name = "Callback with a blocking schedule"
    bound_service = SlowCallbackService


class PollForeverService(Service):
    """Polls every 10 ms and never finishes; counts its polls."""

    __need_schedule__ = True
    interval = StaticIntervalGenerator(0.01)

    async def execute(self, data: Any, parent_data: Any) -> bool:
        OPS_EXECUTIONS[self.id] += 1
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        OPS_SCHEDULES[self.id] += 1
        return True


class PollForeverComponent(Component):
    code = "ops_poll_forever"
    name = "Poll forever"
    bound_service = PollForeverService


class FlakyVariable(LazyVariable):
    """Raises on the first evaluation of a given value, returns it upper-cased afterwards."""

    code = "ops_flaky"

    def get_value(self) -> Any:
        key = str(self.value)
        LAZY_CALLS[key] += 1
        if LAZY_CALLS[key] == 1:
            raise ValueError(f"flaky variable {key} fails once")
        return key.upper()
