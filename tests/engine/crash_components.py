"""Components for the crash test: every execution is appended to a log file."""

from __future__ import annotations

import os
from typing import Any

import anyio

from aiobamboo.builder import (
    ConvergeGateway,
    EmptyEndEvent,
    EmptyStartEvent,
    ParallelGateway,
    ServiceActivity,
    build_tree,
)
from aiobamboo.component import Component, ComponentLibrary, Service

library = ComponentLibrary()


def record(line: str) -> None:
    # O_APPEND writes of one short line are atomic; the OS keeps them on SIGKILL.
    fd = os.open(os.environ["AIOBAMBOO_CRASH_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class Slow(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        record(f"exec {self.id}")
        await anyio.sleep(0.02)
        return True


class Waiting(Service):
    __need_schedule__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        record(f"exec {self.id}")
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.got = callback_data
        return True


class SlowComponent(Component):
    code = "crash_slow"
    name = "slow"
    bound_service = Slow
    auto_register = False


class WaitingComponent(Component):
    code = "crash_wait"
    name = "waiting"
    bound_service = Waiting
    auto_register = False


library.register(SlowComponent)
library.register(WaitingComponent)


def build(index: int) -> dict[str, Any]:
    """start -> 3 slow -> parallel(2 slow branches) -> converge -> callback node -> slow -> end."""
    start = EmptyStartEvent()
    node: Any = start
    for _ in range(3):
        node = node.extend(ServiceActivity(component_code="crash_slow"))
    pg = ParallelGateway()
    node = node.extend(pg)
    pg.connect(
        ServiceActivity(component_code="crash_slow"), ServiceActivity(component_code="crash_slow")
    )
    wait = ServiceActivity(component_code="crash_wait", id=f"ewait{index:028d}")
    pg.converge(ConvergeGateway()).extend(wait).extend(
        ServiceActivity(component_code="crash_slow")
    ).extend(EmptyEndEvent())
    return build_tree(start, id=f"pcrash{index:027d}")
