"""One runtime that drives pipelines when it can and is a client of the driver otherwise.

Several processes of one application (``uvicorn --workers 4``) on one SQLite
file: a SQLite file has one worker at a time (an exclusive lock), so the
first process to lock it drives the pipelines and the others open it as
clients, whose operations the driver carries out. Each client tries to take
the lock every ``retry_interval`` seconds; when the driver dies (its lock
goes with it) the first client to take it becomes the driver and runs on
the pipelines the dead one held. The other side of the API sees one runtime
throughout: ``api.*(runtime, ...)`` works before, during and after the change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self

import anyio
from anyio.abc import TaskGroup

from .engine import Scheduler
from .exceptions import StorageError
from .host import Engine

__all__ = ["FailoverRuntime", "is_lock_held"]

logger = logging.getLogger("aiobamboo.failover")


def is_lock_held(exc: BaseException) -> bool:
    """Whether opening a worker failed because another process drives the file."""
    return isinstance(exc, StorageError) and "in use by another worker" in str(exc)


class FailoverRuntime(Engine):
    """``FailoverRuntime(lambda worker: SQLiteRuntime(path, worker=worker))``.

    ``make(worker)`` builds an unopened runtime; it is called with True to
    try to drive, with False for the client. ``worker`` tells which this
    process is now; ``promoted`` is set once it drives.
    """

    def __init__(self, make: Callable[[bool], Engine], *, retry_interval: float = 0.5) -> None:
        # Not Engine.__init__: the store, scheduler and role are those of the
        # runtime in charge, which changes.
        self._make = make
        self.retry_interval = retry_interval
        self._current: Engine | None = None
        self._client: Engine | None = None
        self._tg: TaskGroup | None = None
        self._depth = 0
        self.promoted = anyio.Event()

    # What the API reads of an engine, from the runtime in charge.
    @property
    def scheduler(self) -> Scheduler | None:  # type: ignore[override]
        return None if self._current is None else self._current.scheduler

    @property
    def store(self) -> Any:  # type: ignore[override]
        return None if self._current is None else self._current.store

    @property
    def worker(self) -> bool:  # type: ignore[override]
        return self._current is not None and self._current.worker

    @property
    def components(self) -> Any:  # type: ignore[override]
        return None if self._current is None else self._current.components

    @property
    def settings(self) -> Any:  # type: ignore[override]
        return None if self._current is None else self._current.settings

    def __repr__(self) -> str:
        return f"FailoverRuntime({self._current!r})"

    async def _try_worker(self) -> Engine | None:
        runtime = self._make(True)
        try:
            await runtime.__aenter__()
        except Exception as exc:
            if is_lock_held(exc):
                return None
            raise
        return runtime

    async def __aenter__(self) -> Self:
        self._depth += 1
        if self._depth > 1:
            return self
        try:
            worker = await self._try_worker()
            if worker is not None:
                self._current = worker
                self.promoted.set()
                logger.info("this process drives the pipelines")
                return self
            client = self._make(False)
            await client.__aenter__()
            self._client = self._current = client
            logger.info("another process drives the pipelines; this one is its client")
            self._tg = anyio.create_task_group()
            await self._tg.__aenter__()
            self._tg.start_soon(self._take_over)
        except BaseException:
            self._depth = 0
            await self._close()
            raise
        return self

    async def _take_over(self) -> None:
        while True:
            await anyio.sleep(self.retry_interval)
            try:
                worker = await self._try_worker()
            except Exception:
                logger.exception("could not open the database to drive it; trying again")
                continue
            if worker is not None:
                break
        # Calls already under way finish on the client, whose operations the new
        # driver carries out; it closes with this runtime.
        self._current = worker
        self.promoted.set()
        logger.info("the driving process is gone: this process drives the pipelines now")

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth == 0:
            await self._close()

    async def _close(self) -> None:
        tg, self._tg = self._tg, None
        if tg is not None:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
        current, client = self._current, self._client
        self._current = self._client = None
        with anyio.CancelScope(shield=True):
            try:
                if current is not None and current is not client:
                    await current.__aexit__(None, None, None)
            finally:
                if client is not None:
                    await client.__aexit__(None, None, None)
