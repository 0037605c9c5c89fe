"""Delivery of committed state changes to subscribers, in order per pipeline."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from anyio.streams.memory import MemoryObjectSendStream

from ._run import RunEvent


class EventHub:
    """Fans committed :class:`RunEvent` batches out to subscribers.

    Publishing never blocks and never raises: a subscriber's stream is
    unbounded, and a subscriber that went away is dropped.
    """

    def __init__(self) -> None:
        self._subscribers: list[tuple[str | None, MemoryObjectSendStream[RunEvent]]] = []

    def listened(self) -> bool:
        return bool(self._subscribers)

    def publish(self, events: list[RunEvent]) -> None:
        if not self._subscribers:
            return
        for root_id, stream in list(self._subscribers):
            for event in events:
                if root_id is not None and event.root_id != root_id:
                    continue
                try:
                    stream.send_nowait(event)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    self._drop(stream)
                    break

    def _drop(self, stream: MemoryObjectSendStream[RunEvent]) -> None:
        self._subscribers = [s for s in self._subscribers if s[1] is not stream]

    @asynccontextmanager
    async def subscribe(self, root_id: str | None = None) -> AsyncIterator[AsyncIterator[RunEvent]]:
        send, receive = anyio.create_memory_object_stream[RunEvent](math.inf)
        self._subscribers.append((root_id, send))
        try:
            async with receive:
                yield receive
        finally:
            self._drop(send)
            send.close()
