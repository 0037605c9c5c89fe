"""A clock that tests move by hand."""

from __future__ import annotations

import time

import anyio

__all__ = ["ManualClock"]


class ManualClock:
    """A clock that stands still until :meth:`advance` moves it.

    Pass it to a runtime (``settings=Settings(clock=clock)``): every timer of
    the engine (a polling activity's next ``schedule()``) then fires when the
    test has advanced the clock past its due time, in memory or from storage,
    instead of after real seconds::

        clock = ManualClock()
        async with MemoryRuntime(settings=Settings(clock=clock)) as runtime:
            ...  # a pipeline whose activity polls every hour
            clock.advance(3600)  # the next poll is due now
    """

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._moved: anyio.Event | None = None

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward and wake every wait that is now due."""
        if seconds < 0:
            raise ValueError("a clock only moves forward")
        self._now += seconds
        moved, self._moved = self._moved, None
        if moved is not None:
            moved.set()

    async def wait(self, event: anyio.Event, until: float) -> bool:
        while not event.is_set() and self._now < until:
            if self._moved is None:
                self._moved = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(_cancel_when_set, self._moved, tg.cancel_scope)
                await event.wait()
                tg.cancel_scope.cancel()
        return event.is_set()

    def __repr__(self) -> str:
        return f"ManualClock(now={self._now})"


async def _cancel_when_set(event: anyio.Event, scope: anyio.CancelScope) -> None:
    await event.wait()
    scope.cancel()
