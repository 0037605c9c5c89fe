"""A wake-up for every waiter at once, that a waiter cannot miss."""

from __future__ import annotations

import asyncio


class Broadcast:
    """A counter that wakes everyone waiting for it to pass a value they saw.

    A waiter reads :attr:`count` before it looks for work, and waits with that
    value: a bump between the two returns at once instead of being missed.
    """

    def __init__(self) -> None:
        self.count = 0
        self._event: asyncio.Event | None = None

    def bump(self) -> None:
        self.count += 1
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait(self, seen: int, at_most: float) -> None:
        """Return once :attr:`count` exceeds ``seen``, or after ``at_most`` seconds."""
        if self.count > seen:
            return
        if self._event is None:
            self._event = asyncio.Event()
        try:
            await asyncio.wait_for(self._event.wait(), at_most)
        except TimeoutError:
            return
