"""The engine's clock: when timers are due, and waiting for them.

Timers (a polling activity's next ``schedule()``) are stored as POSIX times
read from this clock, and claimed by comparing them with its ``now()``. Tests
pass a clock they advance by hand (:class:`aiobamboo.testing.ManualClock`), so
that an hour-long poll interval fires at once, with no sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

import anyio

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """What the engine asks of a clock."""

    def now(self) -> float:
        """POSIX seconds."""

    async def wait(self, event: anyio.Event, until: float) -> bool:
        """Wait until ``event`` is set (True) or ``now()`` reaches ``until`` (False)."""


class SystemClock:
    """The wall clock (``time.time``); waits are the event loop's timers."""

    def now(self) -> float:
        return time.time()

    async def wait(self, event: anyio.Event, until: float) -> bool:
        with anyio.move_on_after(until - time.time()):
            await event.wait()
        return event.is_set()

    def __repr__(self) -> str:
        return "SystemClock()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SystemClock)

    def __hash__(self) -> int:
        return hash(SystemClock)
