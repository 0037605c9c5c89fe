"""Subscribers read committed events from storage, so they see every process's events.

Events are rows written with the changes they describe (``WriteBatch.events``),
so a subscriber sees exactly what is durable, in commit order, whichever
worker committed it. It reads them lazily: a slow consumer only falls behind
in the table, it never holds anything of the engine back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator

from ..runtime import EventLog
from ._run import RunEvent

#: Events read from storage per query.
READ_BATCH = 500


class EventStream(AsyncIterator[RunEvent]):
    """The events after ``cursor`` (of ``root_id`` only, if given), read as they commit.

    ``cursor`` is the id of the last event delivered: open another stream
    with it to resume after a disconnect, without losing or repeating any.
    Woken at once by commits of this process (and, on Postgres, of every
    process); otherwise it looks again every ``poll_interval`` seconds.
    """

    def __init__(
        self, store: EventLog, root_id: str | None, cursor: int, poll_interval: float
    ) -> None:
        self.store = store
        self.root_id = root_id
        self.cursor = cursor
        self.poll_interval = poll_interval
        self._buffer: deque[RunEvent] = deque()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> RunEvent:
        while not self._buffer:
            seen = self.store.events_seen
            rows = await self.store.read_events(self.cursor, self.root_id, READ_BATCH)
            if rows:
                self._buffer.extend(RunEvent.from_row(row) for row in rows)
                break
            await self.store.wait_for_events(seen, self.poll_interval)
        event = self._buffer.popleft()
        self.cursor = event.id
        return event
