"""MemoryRuntime: a :class:`MemoryStore` that hosts a scheduler, as SQLiteRuntime does.

Only the hosting lives here (open, attach a scheduler, close), so that the
store stays a plain implementation of the storage protocol.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from ..component import ComponentLibrary
from ..engine import Scheduler, Settings, attach, detach
from ..exceptions import StorageError
from ._memory import MemoryStorage, MemoryStore

__all__ = ["MemoryRuntime"]


class MemoryRuntime(MemoryStore):
    """``async with MemoryRuntime() as runtime:``; ``runtime.faults`` makes storage fail.

    Pass ``storage=`` (a :class:`MemoryStorage`) to open a runtime on the data
    of an earlier one, as a restart would.
    """

    def __init__(
        self,
        storage: MemoryStorage | None = None,
        *,
        worker: bool = True,
        components: ComponentLibrary | None = None,
        settings: Settings | None = None,
    ) -> None:
        super().__init__(storage)
        self.worker = worker
        self.components = components
        self.settings = settings
        self.scheduler: Scheduler | None = None
        self._depth = 0

    def __repr__(self) -> str:
        return f"MemoryRuntime(worker={self.worker})"

    async def __aenter__(self) -> MemoryRuntime:
        self._depth += 1
        if self._depth > 1:
            return self
        try:
            await self._start()
        except BaseException:
            self._depth = 0
            await self._close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth == 0:
            await self._close()

    async def _start(self) -> None:
        if self.worker:
            if self.storage.worker_owner is not None:
                raise StorageError(
                    "this storage is in use by another worker runtime; "
                    "open it with worker=False to start and control pipelines from here"
                )
            self.storage.worker_owner = self.owner_id
        self.open_store()
        self.scheduler = Scheduler(
            self, components=self.components, settings=self.settings, worker=self.worker
        )
        attach(self, self.scheduler)
        await self.scheduler.start()

    async def _close(self) -> None:
        detach(self)
        scheduler, self.scheduler = self.scheduler, None
        try:
            if scheduler is not None:
                await scheduler.stop()
        finally:
            self.close_store()
            if self.storage.worker_owner == self.owner_id:
                self.storage.worker_owner = None

    def statistics(self) -> dict[str, Any]:
        scheduler = self.scheduler
        return {"runs_in_memory": len(scheduler.runs) if scheduler else 0}
