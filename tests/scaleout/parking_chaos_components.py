"""Components, trees and the worker process of the parking chaos test.

Run as a worker: ``python -m tests.scaleout.parking_chaos_components SCHEMA`` (the DSN
is AIOBAMBOO_PG_DSN; park_after, lease and concurrency come from the environment).
Every execute() and schedule() appends a line to AIOBAMBOO_CHAOS_LOG.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from typing import Any

import anyio

from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, build_tree
from aiobamboo.component import Component, Service

#: Callback activities per pipeline, one after the other.
STAGES = 2


def record(line: str) -> None:
    """Append one line to the shared log (O_APPEND lines are atomic; kept on SIGKILL)."""
    path = os.environ.get("AIOBAMBOO_CHAOS_LOG")
    if path is None:
        return  # a worker in the test's own process: nothing to share
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f"{time.time():.6f} {line}\n".encode())
    finally:
        os.close(fd)


class Step(Service):
    async def execute(self, data: Any, parent_data: Any) -> bool:
        record(f"exec {self.id} {os.getpid()}")
        await anyio.sleep(0.01)
        return True


class Wait(Service):
    __need_schedule__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        record(f"exec {self.id} {os.getpid()}")
        data.outputs.waiting = True
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        text = json.dumps(callback_data, sort_keys=True, separators=(",", ":"))
        record(f"sched {self.id} {os.getpid()} {text}")
        data.outputs.got = callback_data
        return True


class StepComponent(Component):
    code = "parking_chaos_step"
    name = "step"
    bound_service = Step


class WaitComponent(Component):
    code = "parking_chaos_wait"
    name = "wait for a callback"
    bound_service = Wait


def root_id(index: int) -> str:
    return f"ppark{index:028d}"


def wait_id(index: int, stage: int) -> str:
    return f"ewait{stage}{index:027d}"


def build(index: int, stages: int = STAGES) -> dict[str, Any]:
    """step -> wait0 -> step -> wait1 -> step: each run parks at every wait."""
    start = EmptyStartEvent()
    current: Any = start.extend(ServiceActivity(component_code="parking_chaos_step"))
    for stage in range(stages):
        current = current.extend(
            ServiceActivity(component_code="parking_chaos_wait", id=wait_id(index, stage))
        ).extend(ServiceActivity(component_code="parking_chaos_step"))
    current.extend(EmptyEndEvent())
    return build_tree(start, id=root_id(index))


async def serve(schema: str) -> None:
    """A worker until SIGTERM; its runs park after AIOBAMBOO_PARK_AFTER seconds."""
    from aiobamboo.engine import Settings
    from aiobamboo_postgres import PostgresRuntime

    settings = Settings(
        park_after=float(os.environ.get("AIOBAMBOO_PARK_AFTER", "0.05")),
        concurrency=int(os.environ.get("AIOBAMBOO_CONCURRENCY", "10000")),
        poll_interval=0.1,
    )
    runtime = PostgresRuntime(
        os.environ["AIOBAMBOO_PG_DSN"],
        schema=schema,
        settings=settings,
        lease_seconds=float(os.environ.get("AIOBAMBOO_LEASE", "2.0")),
    )
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with runtime:
            async for _ in signals:
                return


if __name__ == "__main__":
    anyio.run(serve, sys.argv[1])
