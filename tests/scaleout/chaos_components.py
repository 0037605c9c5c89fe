"""Components and trees of the chaos test; workers import this module (--import)."""

from __future__ import annotations

import os
import time
from typing import Any

import anyio

from aiobamboo.builder import (
    ConvergeGateway,
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    ParallelGateway,
    Params,
    ServiceActivity,
    SubProcess,
    Var,
    build_tree,
)
from aiobamboo.component import Component, Service, StaticIntervalGenerator


def record(line: str) -> None:
    """Append one line to the shared log (O_APPEND lines are atomic; kept on SIGKILL)."""
    fd = os.open(os.environ["AIOBAMBOO_CHAOS_LOG"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{time.time():.6f} {line}\n".encode())
    finally:
        os.close(fd)


class Work(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        record(f"exec {self.id} {os.getpid()}")
        await anyio.sleep(0.05)
        return True


class Poll(Service):
    __need_schedule__ = True
    interval = StaticIntervalGenerator(0.05)

    async def execute(self, data: Any, parent_data: Any) -> bool:
        record(f"exec {self.id} {os.getpid()}")
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.polls = data.outputs.get("polls", 0) + 1
        if data.outputs.polls >= 3:
            self.finish_schedule()
        return True


class Wait(Service):
    __need_schedule__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        record(f"exec {self.id} {os.getpid()}")
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.got = callback_data
        return True


class WorkComponent(Component):
    code = "chaos_work"
    name = "work"
    bound_service = Work


class PollComponent(Component):
    code = "chaos_poll"
    name = "poll"
    bound_service = Poll


class WaitComponent(Component):
    code = "chaos_wait"
    name = "wait"
    bound_service = Wait


def callback_node_id(index: int) -> str:
    return f"ecb{index:030d}"


def root_id(index: int) -> str:
    return f"pchaos{index:027d}"


def build(index: int) -> dict[str, Any]:
    """work -> parallel(work, sub-process[work -> poll], work) -> converge -> wait -> work."""
    sub_start = EmptyStartEvent()
    sub_start.extend(ServiceActivity(component_code="chaos_work")).extend(
        ServiceActivity(component_code="chaos_poll")
    ).extend(EmptyEndEvent())
    sub = SubProcess(
        start=sub_start,
        data=Data(inputs={"${n}": Var(type=Var.PLAIN, value=0)}),
        params=Params({"${n}": Var(type=Var.SPLICE, value="${n}")}),
    )
    start = EmptyStartEvent()
    pg = ParallelGateway()
    wait = ServiceActivity(component_code="chaos_wait", id=callback_node_id(index))
    start.extend(ServiceActivity(component_code="chaos_work")).extend(pg).connect(
        ServiceActivity(component_code="chaos_work"),
        sub,
        ServiceActivity(component_code="chaos_work"),
    ).to(pg).converge(ConvergeGateway()).extend(wait).extend(
        ServiceActivity(component_code="chaos_work")
    ).extend(EmptyEndEvent())
    data = Data(inputs={"${n}": Var(type=Var.PLAIN, value=index)})
    return build_tree(start, id=root_id(index), data=data)


#: Activities per pipeline (each logs one line per execution).
ACTIVITIES = 7
