"""Components that break the rules: raise BaseExceptions, swallow cancellation, block the loop."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio

from aiobamboo.component import (
    Component,
    EndEventHandler,
    LazyVariable,
    Service,
    StaticIntervalGenerator,
)

from .components import EXECUTIONS, GATES

#: Exceptions a component raises by name, and the line ex_data must then hold.
RAISES: dict[str, tuple[Any, str]] = {
    "SystemExit": (lambda: SystemExit(3), "SystemExit: 3"),
    "KeyboardInterrupt": (lambda: KeyboardInterrupt("stop it"), "KeyboardInterrupt: stop it"),
    "GeneratorExit": (lambda: GeneratorExit("closing"), "GeneratorExit: closing"),
    "CancelledError": (lambda: asyncio.CancelledError("made up"), "CancelledError: made up"),
    "BaseException": (lambda: BaseException("bare"), "BaseException: bare"),
}

#: Node ids whose deaf component may stop ignoring cancellation (set at a test's end).
RELEASED: set[str] = set()
#: What a ``mis_exit_on_resume`` node does on its next execution: "wait" or "exit".
RESUME_MODE: dict[str, str] = {}


def _maybe_raise(data: Any, where: str) -> None:
    if data.get_one_of_inputs("where") == where:
        make, _ = RAISES[data.get_one_of_inputs("exc")]
        raise make()


class RaiseAsyncService(Service):
    """Polls once; raises inputs ``exc`` at inputs ``where`` (a method or hook name)."""

    __need_schedule__ = True
    __need_run_hook__ = True
    interval = StaticIntervalGenerator(0)

    async def execute(self, data: Any, parent_data: Any) -> bool:
        _maybe_raise(data, "execute")
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        _maybe_raise(data, "schedule")
        self.finish_schedule()
        return True

    async def pre_execute(self, data: Any, parent_data: Any) -> None:
        _maybe_raise(data, "pre_execute")

    async def node_finish(self, data: Any, parent_data: Any) -> None:
        _maybe_raise(data, "node_finish")


class RaiseAsyncComponent(Component):
    code = "mis_raise_async"
    name = "Raise (async)"
    bound_service = RaiseAsyncService


class RaiseSyncService(Service):
    __need_schedule__ = True
    __need_run_hook__ = True
    interval = StaticIntervalGenerator(0)

    def execute(self, data: Any, parent_data: Any) -> bool:
        _maybe_raise(data, "execute")
        return True

    def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        _maybe_raise(data, "schedule")
        self.finish_schedule()
        return True

    def pre_execute(self, data: Any, parent_data: Any) -> None:
        _maybe_raise(data, "pre_execute")

    def node_finish(self, data: Any, parent_data: Any) -> None:
        _maybe_raise(data, "node_finish")


class RaiseSyncComponent(Component):
    code = "mis_raise_sync"
    name = "Raise (def)"
    bound_service = RaiseSyncService


class ExitAsyncVariable(LazyVariable):
    code = "mis_exit_async"

    async def get_value(self) -> Any:
        raise SystemExit(3)


class ExitSyncVariable(LazyVariable):
    code = "mis_exit_sync"

    def get_value(self) -> Any:
        raise SystemExit(3)


class ExitAsyncEnd(EndEventHandler):
    code = "mis_ExitAsync"

    async def execute(
        self, in_subprocess: bool, root_pipeline_id: str, current_pipeline_id: str
    ) -> None:
        raise SystemExit(3)


class ExitSyncEnd(EndEventHandler):
    code = "mis_ExitSync"

    def execute(self, in_subprocess: bool, root_pipeline_id: str, current_pipeline_id: str) -> None:
        raise SystemExit(3)


class ExitOnResumeService(Service):
    """Waits on its gate while RESUME_MODE says "wait"; raises SystemExit(3) once it says "exit"."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        EXECUTIONS[self.id] += 1
        if RESUME_MODE.get(self.id) == "exit":
            raise SystemExit(3)
        await GATES.setdefault(self.id, anyio.Event()).wait()
        return True


class ExitOnResumeComponent(Component):
    code = "mis_exit_on_resume"
    name = "Exit when resumed"
    bound_service = ExitOnResumeService


class LoopBadOutputsService(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        EXECUTIONS[self.id] += 1
        data.outputs.outputs = "not a dict"
        return True


class LoopBadOutputsComponent(Component):
    code = "mis_loop_bad_outputs"
    name = "Loop outputs that are not a dict"
    bound_service = LoopBadOutputsService


class DeafService(Service):
    """Ignores cancellation on its first execution (how: inputs ``swallow``); later ones pass."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        EXECUTIONS[self.id] += 1
        if EXECUTIONS[self.id] > 1:
            return True
        data.outputs.late = "written after being abandoned"
        swallow = data.get_one_of_inputs("swallow")
        while self.id not in RELEASED:
            if swallow == "base":
                try:
                    await anyio.sleep(0.02)
                except BaseException:
                    pass
            else:
                try:
                    await asyncio.sleep(0.02)
                except asyncio.CancelledError:
                    continue
        return True


class DeafComponent(Component):
    code = "mis_deaf"
    name = "Ignores cancellation"
    bound_service = DeafService


class BlockingService(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        time.sleep(float(data.get_one_of_inputs("seconds", 0.5)))  # noqa: ASYNC251 - on purpose
        return True


class BlockingComponent(Component):
    code = "mis_blocking"
    name = "Blocks the event loop"
    bound_service = BlockingService


class ReturnsService(Service):
    """execute (or schedule, after an immediate poll) returns inputs ``value``."""

    __need_schedule__ = True
    interval = StaticIntervalGenerator(0)

    async def execute(self, data: Any, parent_data: Any) -> Any:
        if data.get_one_of_inputs("in_schedule"):
            return True
        return data.get_one_of_inputs("value")

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> Any:
        self.finish_schedule()
        return data.get_one_of_inputs("value")


class ReturnsComponent(Component):
    code = "mis_returns"
    name = "Returns its input"
    bound_service = ReturnsService
