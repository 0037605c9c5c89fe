"""Components used by the behavioural suite (registered in the default library)."""

from __future__ import annotations

import threading
import weakref
from collections import Counter
from typing import Any

import anyio
import anyio.lowlevel

from aiobamboo.component import (
    Component,
    EndEventHandler,
    LazyVariable,
    Service,
    StaticIntervalGenerator,
)

#: How often each node id was executed (by execute(), not schedule()).
EXECUTIONS: Counter[str] = Counter()
#: Gates that block a node until a test opens them: node id -> anyio.Event.
GATES: dict[str, anyio.Event] = {}
END_CALLS: list[tuple[bool, str, str]] = []


class EchoService(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        EXECUTIONS[self.id] += 1
        for key, value in data.inputs.items():
            data.outputs[key] = value
        data.outputs.echo = data.get_one_of_inputs("text")
        return True


class EchoComponent(Component):
    code = "echo"
    name = "Echo"
    bound_service = EchoService


class SyncEchoService(Service):
    def execute(self, data: Any, parent_data: Any) -> bool:
        EXECUTIONS[self.id] += 1
        data.outputs.thread = threading.current_thread().name
        data.outputs.echo = data.get_one_of_inputs("text")
        data.outputs.parent_inputs = dict(parent_data.inputs)
        return True


class SyncEchoComponent(Component):
    code = "sync_echo"
    name = "Sync echo"
    bound_service = SyncEchoService


class ScopedService(Service):
    """Awaits inside cancel scopes of its own: a timeout, a deadline that passes, a shield."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        EXECUTIONS[self.id] += 1
        with anyio.fail_after(30):
            await anyio.lowlevel.checkpoint()
        with anyio.move_on_after(0.001) as late:
            await anyio.sleep(30)
        with anyio.CancelScope(shield=True):
            await anyio.lowlevel.checkpoint()
        data.outputs.timed_out = late.cancelled_caught
        return True


class ScopedComponent(Component):
    code = "scoped"
    name = "Cancel scopes of its own"
    bound_service = ScopedService


class FailService(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        EXECUTIONS[self.id] += 1
        data.outputs.attempted = True
        if data.get_one_of_inputs("ok"):
            return True
        if data.get_one_of_inputs("raise"):
            raise RuntimeError("boom from component")
        data.outputs.ex_data = "refused by component"
        return False


class FailComponent(Component):
    code = "fail"
    name = "Fail unless ok"
    bound_service = FailService


class GateService(Service):
    """Blocks until GATES[node_id] is set by the test."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        EXECUTIONS[self.id] += 1
        gate = GATES.setdefault(self.id, anyio.Event())
        await gate.wait()
        data.outputs.passed = True
        return True


class GateComponent(Component):
    code = "gate"
    name = "Gate"
    bound_service = GateService


class CallbackService(Service):
    __need_schedule__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        EXECUTIONS[self.id] += 1
        data.outputs.waiting = True
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.callback_data = callback_data
        if isinstance(callback_data, dict) and callback_data.get("fail"):
            data.outputs.ex_data = "callback said fail"
            return False
        return True


class CallbackComponent(Component):
    code = "callback"
    name = "Wait for a callback"
    bound_service = CallbackService


#: What a watched callback activity's execute was given, weakly: node id -> refs.
EXECUTE_REFS: dict[str, list[weakref.ref[Any]]] = {}
#: How many watched callback services were made (for execute, for schedule, or else).
WATCHED_MADE: Counter[str] = Counter()


class WatchedCallbackService(CallbackService):
    """A callback activity that lets a test see what became of its execute's objects."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        WATCHED_MADE["services"] += 1

    async def execute(self, data: Any, parent_data: Any) -> bool:
        EXECUTE_REFS[self.id] = [weakref.ref(self), weakref.ref(data.inputs)]
        return await super().execute(data, parent_data)


class WatchedCallbackComponent(Component):
    code = "watched_callback"
    name = "Wait for a callback, watched"
    bound_service = WatchedCallbackService


class MultiCallbackService(Service):
    __need_schedule__ = True
    __multi_callback_enabled__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.received = []
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.received = [*data.outputs.get("received", []), callback_data]
        if len(data.outputs.received) >= data.get_one_of_inputs("count", 2):
            self.finish_schedule()
        return True


class MultiCallbackComponent(Component):
    code = "multi_callback"
    name = "Several callbacks"
    bound_service = MultiCallbackService


class PollService(Service):
    __need_schedule__ = True
    interval = StaticIntervalGenerator(0.01)

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.polls = 0
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.polls = data.outputs.get("polls", 0) + 1
        if data.outputs.polls >= data.get_one_of_inputs("polls", 3):
            self.finish_schedule()
        return True


class PollComponent(Component):
    code = "poll"
    name = "Poll"
    bound_service = PollService


class ParentWatchingPollService(PollService):
    """A poll that notes what each call finds in ``parent_data.outputs``, then writes there."""

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.parent_outputs = [
            *data.outputs.get("parent_outputs", []),
            dict(parent_data.outputs),
        ]
        parent_data.outputs.left_by_poll = data.outputs.get("polls", 0) + 1
        return await super().schedule(data, parent_data, callback_data)


class ParentWatchingPollComponent(Component):
    code = "parent_poll"
    name = "Poll, watching its parent data"
    bound_service = ParentWatchingPollService


class CounterService(Service):
    """Adds 1 to input ``count`` and outputs it as ``count``."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        EXECUTIONS[self.id] += 1
        data.outputs.count = int(data.get_one_of_inputs("count", 0)) + 1
        return True


class CounterComponent(Component):
    code = "counter"
    name = "Counter"
    bound_service = CounterService


class UpperVariable(LazyVariable):
    code = "upper"

    def get_value(self) -> Any:
        return str(self.value).upper()


class BrokenVariable(LazyVariable):
    code = "broken"

    async def get_value(self) -> Any:
        raise ValueError("lazy variable exploded")


class RecordEnd(EndEventHandler):
    code = "RecordEnd"

    async def execute(
        self, in_subprocess: bool, root_pipeline_id: str, current_pipeline_id: str
    ) -> None:
        END_CALLS.append((in_subprocess, root_pipeline_id, current_pipeline_id))


class BadObjectService(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.thing = {1, 2, 3}
        return True


class BadObjectComponent(Component):
    code = "bad_object"
    name = "Outputs a set"
    bound_service = BadObjectService
