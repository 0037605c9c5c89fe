"""The group committer: every store's queue of batches, written a group at a time.

Concurrent node steps each call ``commit(batch)``; one committer task takes
everything queued and hands it to the store's ``write_group`` as one group,
so a busy moment costs one transaction instead of one per step.

What is acknowledged is never dropped:

- A caller cancelled while it waits does not take its batch back: the batch
  is written with its group (or fails with it) all the same; only nobody
  hears the outcome.
- Closing writes everything queued before it returns. If that takes longer
  than ``close_timeout`` the write in flight is cancelled; its batches, and
  any still queued, fail with :class:`~aiobamboo.exceptions.StorageError`.
  No commit is ever left waiting.
- A failing group fails each of its batches with a StorageError; the
  committer itself carries on, or later commits would hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

from ..exceptions import StorageError
from ..runtime import WriteBatch

__all__ = ["BatchOutcome", "GroupCommitter", "WriteGroup"]

#: Per batch of a group: None when stored, else the error its commit raises.
BatchOutcome = BaseException | None

#: Writes a group atomically per batch; says which batches were refused, in order.
#: Raises when the group as a whole could not be written.
WriteGroup = Callable[[list[WriteBatch]], Awaitable[list[BatchOutcome]]]

_Queued = tuple[WriteBatch, "asyncio.Future[None]"]

#: How long closing waits for the queued commits to be written.
CLOSE_TIMEOUT = 10.0

#: Told of every group written (or failed): its number of batches and the seconds it took.
GroupListener = Callable[[int, float], None]


def _settle(group: list[_Queued], outcomes: list[BatchOutcome]) -> None:
    for (_, future), outcome in zip(group, outcomes, strict=True):
        if future.done():  # its caller was cancelled, and the future with it
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)


def _fail(group: list[_Queued], error: BaseException) -> None:
    _settle(group, [error] * len(group))


class GroupCommitter:
    """The queue, the futures and the committer task of one store.

    The committer is a task of its own, like the scheduler's host: commits come
    from any task and the committer outlives each of them. The futures are
    asyncio's because every store driver is asyncio-only.
    """

    #: Process-wide listeners (metrics): empty, the default, costs one check a group.
    listeners: ClassVar[list[GroupListener]] = []

    def __init__(
        self, write_group: WriteGroup, *, what: str, close_timeout: float = CLOSE_TIMEOUT
    ) -> None:
        self._write_group = write_group
        self._what = what  # names the store in error messages
        self.close_timeout = close_timeout
        self._queue: list[_Queued] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def commit(self, batch: WriteBatch) -> None:
        """Store ``batch``; return once it is stored, or raise why it was not."""
        if self._task is None:
            raise StorageError("the runtime is not open")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((batch, future))
        self._wakeup.set()
        await future

    async def aclose(self) -> None:
        """Write what is queued (for up to ``close_timeout`` seconds), then stop."""
        task, self._task = self._task, None
        if task is not None:
            self._closing = True
            self._wakeup.set()
            done, _ = await asyncio.wait({task}, timeout=self.close_timeout)
            if not done:
                task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        _fail(self._queue, StorageError(f"{self._what} was closed before this commit was written"))
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            group, self._queue = self._queue, []
            started = time.perf_counter() if self.listeners else 0.0
            try:
                outcomes = await self._write_group([batch for batch, _ in group])
            except asyncio.CancelledError:
                _fail(group, StorageError(f"{self._what} was closed during this commit"))
                raise
            except StorageError as exc:
                _fail(group, exc)
            except Exception as exc:
                error = StorageError(f"{self._what} commit failed: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
                _fail(group, error)
            else:
                _settle(group, outcomes)
            finally:
                for listener in self.listeners:
                    listener(len(group), time.perf_counter() - started)
