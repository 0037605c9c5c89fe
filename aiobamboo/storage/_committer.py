"""The group committer: every store's queue of batches, written a group at a time.

Concurrent node steps each call ``commit(batch)``; everything queued while a
group is being written goes out as the next group, so a busy moment costs one
transaction instead of one per step. A store gives either

- ``write_group``, a coroutine: a committer task awaits it, group after group; or
- ``submit_group``, which starts the write at once (on a thread of the store's)
  and calls back on the event loop when it ends. There is no committer task
  then: the commit that finds nothing in flight submits its group itself, and
  the callback that settles a group submits the next. A lone commit then costs
  the write and two passes of the event loop, instead of waking a committer
  task, which wakes the thread, which wakes the committer, which wakes the
  caller.

  A submitting store may also give ``write_now``, which writes a small group
  on the event loop's own thread when its connection is idle, or declines.
  The first commit of a pass of the event loop then does not submit at
  once: its caller yields until the next pass, then hands over the group of
  every commit made meanwhile, written there and then if ``write_now``
  takes it. A lone node step then costs one pass of the loop and no thread
  hop; a busy moment still gets one transaction per group.

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
import functools
import time
from collections.abc import Awaitable, Callable
from typing import ClassVar

from ..exceptions import StorageError
from ..runtime import WriteBatch

__all__ = ["BatchOutcome", "GroupCommitter", "GroupDone", "SubmitGroup", "WriteGroup", "WriteNow"]

#: Per batch of a group: None when stored, else the error its commit raises.
BatchOutcome = BaseException | None

#: Writes a group atomically per batch; says which batches were refused, in order.
#: Raises when the group as a whole could not be written.
WriteGroup = Callable[[list[WriteBatch]], Awaitable[list[BatchOutcome]]]

#: Told on the event loop that a submitted group ended: its outcomes, or the error
#: that failed the group as a whole.
GroupDone = Callable[[list[BatchOutcome] | None, BaseException | None], None]

#: Starts writing a group without awaiting, and calls ``done`` when the write ends.
#: Raises when it cannot start.
SubmitGroup = Callable[[list[WriteBatch], GroupDone], None]

#: Writes a group at once, on the calling thread, and returns its outcomes; or
#: returns None, having written nothing, to have it submitted instead. Raises
#: when the group as a whole failed.
WriteNow = Callable[[list[WriteBatch]], list[BatchOutcome] | None]

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
        self,
        write_group: WriteGroup | None = None,
        *,
        what: str,
        close_timeout: float = CLOSE_TIMEOUT,
        submit_group: SubmitGroup | None = None,
        write_now: WriteNow | None = None,
    ) -> None:
        if (write_group is None) == (submit_group is None):
            raise TypeError("give the committer either write_group or submit_group")
        if write_now is not None and submit_group is None:
            raise TypeError("write_now goes with submit_group")
        self._write_group = write_group
        self._submit_group = submit_group
        self._write_now = write_now
        self._flush_due = False  # a pass-end submit is scheduled
        self._what = what  # names the store in error messages
        self.close_timeout = close_timeout
        self._queue: list[_Queued] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        # Submitting stores: whether commits are taken, the group being written,
        # and what closing waits for (set when nothing is queued or in flight).
        self._open = False
        self._inflight: list[_Queued] | None = None
        self._drained: asyncio.Event | None = None

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        if self._submit_group is not None:
            self._open = True
            return
        if self._task is None:
            self._closing = False
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def commit(self, batch: WriteBatch) -> None:
        """Store ``batch``; return once it is stored, or raise why it was not."""
        if self._task is None and not self._open:
            raise StorageError("the runtime is not open")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((batch, future))
        if self._submit_group is None:
            self._wakeup.set()
        elif self._inflight is None:
            if self._write_now is None:
                self._submit()
            elif not self._flush_due:
                # This caller leads the group: it lets the pass end, then
                # writes what was queued meanwhile and, when that was written
                # here, goes on without waiting for another pass.
                self._flush_due = True
                try:
                    await asyncio.sleep(0)
                except BaseException:
                    # Cancelled: the group is written all the same, a pass later.
                    asyncio.get_running_loop().call_soon(self._flush)
                    raise
                self._flush()
        await future

    def _flush(self) -> None:
        self._flush_due = False
        self._submit()

    def _submit(self) -> None:
        """Hand the queue to the store as one group, unless a group is in flight."""
        assert self._submit_group is not None
        while self._inflight is None and self._queue:
            group, self._queue = self._queue, []
            started = time.perf_counter() if self.listeners else 0.0
            batches = [batch for batch, _ in group]
            if self._write_now is not None:
                try:
                    outcomes = self._write_now(batches)
                except Exception as exc:
                    outcomes = [self._failure(exc)] * len(group)
                if outcomes is not None:
                    _settle(group, outcomes)
                    for listener in self.listeners:
                        listener(len(group), time.perf_counter() - started)
                    continue
            self._inflight = group
            done = functools.partial(self._landed, group, started)
            try:
                self._submit_group(batches, done)
            except Exception as exc:
                self._inflight = None
                _fail(group, self._failure(exc))
        if self._drained is not None and self._inflight is None and not self._queue:
            self._drained.set()

    def _landed(
        self,
        group: list[_Queued],
        started: float,
        outcomes: list[BatchOutcome] | None,
        error: BaseException | None,
    ) -> None:
        if self._inflight is not group:
            return  # closing gave up on it; its commits were failed then
        self._inflight = None
        if error is not None or outcomes is None:
            _fail(group, self._failure(error or StorageError(f"{self._what}: no outcome")))
        else:
            _settle(group, outcomes)
        for listener in self.listeners:
            listener(len(group), time.perf_counter() - started)
        self._submit()

    def _failure(self, exc: BaseException) -> StorageError:
        if isinstance(exc, StorageError):
            return exc
        error = StorageError(f"{self._what} commit failed: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error

    async def _close_submitting(self) -> None:
        self._open = False
        if self._inflight is not None or self._queue:
            self._drained = asyncio.Event()
            try:
                await asyncio.wait_for(self._drained.wait(), self.close_timeout)
            except TimeoutError:
                pass
            finally:
                self._drained = None
        group, self._inflight = self._inflight, None
        if group is not None:
            _fail(group, StorageError(f"{self._what} was closed during this commit"))

    async def aclose(self) -> None:
        """Write what is queued (for up to ``close_timeout`` seconds), then stop."""
        if self._submit_group is not None:
            await self._close_submitting()
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
        assert self._write_group is not None
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
            except Exception as exc:
                _fail(group, self._failure(exc))
            else:
                _settle(group, outcomes)
            finally:
                for listener in self.listeners:
                    listener(len(group), time.perf_counter() - started)
