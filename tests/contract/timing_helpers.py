"""Helpers of the node timeout, retry and timer event suites: a clock moved by hand."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from aiobamboo.builder import ServiceActivity, Var
from aiobamboo.engine import Settings
from aiobamboo.testing import ManualClock

from .parking_helpers import opened

#: How often a worker looks for due timers of parked runs.
POLL_INTERVAL = 0.05
MINUTE = 60.0


def settings(clock: ManualClock, park_after: float | None) -> Settings:
    return Settings(clock=clock, park_after=park_after, poll_interval=POLL_INTERVAL)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=[0.0, None], ids=["parked", "in-memory"])
async def engine(
    request: pytest.FixtureRequest, runtime_factory: Any, clock: ManualClock
) -> AsyncIterator[Any]:
    """A runtime on ``clock``: runs park at once when they may, or never park."""
    park_after = request.param
    if park_after is None and runtime_factory.kind == "sqlite-parking":
        pytest.skip("this runtime kind parks every run")
    async with opened(runtime_factory, settings=settings(clock, park_after)) as rt:
        yield rt


def timed(code: str, **fields: Any) -> ServiceActivity:
    """A ServiceActivity with time fields (``timeout=``, ``retry_policy=`` ...) and no inputs."""
    inputs = fields.pop("inputs", {})
    node = ServiceActivity(component_code=code, **fields)
    for key, value in inputs.items():
        node.component.inputs[key] = value if isinstance(value, Var) else Var(Var.PLAIN, value)
    return node


async def timer_rows(runtime: Any, root_id: str, kind: str | None = None) -> list[Any]:
    """The run's stored timers still due (of ``kind``, a prefix, when given)."""
    snap = await runtime.store.load_run(root_id)
    rows = [] if snap is None else [t for t in snap.timers if t.due_time is not None]
    return [t for t in rows if kind is None or t.kind.startswith(kind)]


async def due_times(runtime: Any, root_id: str, kind: str) -> list[float]:
    return sorted(t.due_time for t in await timer_rows(runtime, root_id, kind))
