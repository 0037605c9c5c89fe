"""SQLiteRuntime: the embedded default runtime, on aiosqlite (asyncio only).

Durability: the database runs in WAL mode with ``synchronous=NORMAL`` by
default. A committed step survives a crash of the process (SIGKILL included);
after a power loss or an operating-system crash the last few commits may be
lost. Pass ``synchronous="FULL"`` to fsync every commit as well.

One worker at a time: a runtime opened with ``worker=True`` on a file holds an
exclusive lock on ``<path>.lock`` while it is open, and the operating system
releases it if the process dies, so the next runtime resumes at once.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from types import TracebackType
from typing import IO, Any, Literal

import aiosqlite

from aiobamboo.component import ComponentLibrary
from aiobamboo.engine import Scheduler, Settings, attach, detach
from aiobamboo.exceptions import StorageError

from ._migrate import migrate
from ._store import Store

__all__ = ["SQLiteRuntime"]


class SQLiteRuntime(Store):
    """``async with SQLiteRuntime("flows.db") as runtime:`` (``":memory:"`` works too)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        worker: bool = True,
        components: ComponentLibrary | None = None,
        settings: Settings | None = None,
        synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "NORMAL",
    ) -> None:
        self.path = os.fspath(path)
        self.worker = worker
        self.components = components
        self.settings = settings
        self.synchronous = synchronous
        self.scheduler: Scheduler | None = None
        self.owner_id = f"sqlite-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # One worker per file (the flock), so a lease only matters to clients.
        self.lease_seconds = 3600.0
        self._lock_file: IO[bytes] | None = None
        self._depth = 0

    def __repr__(self) -> str:
        return f"SQLiteRuntime({self.path!r}, worker={self.worker})"

    @property
    def in_memory(self) -> bool:
        return self.path == ":memory:" or self.path.startswith("file::memory:")

    async def __aenter__(self) -> SQLiteRuntime:
        self._depth += 1
        if self._depth > 1:
            return self
        try:
            await self._open()
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

    def _lock(self) -> None:
        lock = open(self.path + ".lock", "wb")
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise StorageError(
                f"{self.path} is in use by another worker process; "
                "open it with worker=False to start and control pipelines from here"
            ) from None
        self._lock_file = lock

    async def _open(self) -> None:
        if self.worker and not self.in_memory:
            self._lock()
        try:
            conn = await aiosqlite.connect(self.path, isolation_level=None)
        except Exception as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        Store.__init__(self, conn)
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={self.synchronous}")
        await conn.execute("PRAGMA busy_timeout=5000")
        # Node ids are random, so writes land all over the tables: a page cache
        # and memory map large enough for the working set keep them off the disk.
        await conn.execute("PRAGMA cache_size=-16384")
        await conn.execute("PRAGMA mmap_size=268435456")
        await migrate(conn)
        self.start()
        self.scheduler = Scheduler(
            self, components=self.components, settings=self.settings, worker=self.worker
        )
        attach(self, self.scheduler)
        await self.scheduler.start()

    async def _close(self) -> None:
        detach(self)
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            await scheduler.stop()
        if getattr(self, "conn", None) is not None:
            await self.close()
            await self.conn.close()
            self.conn = None  # type: ignore[assignment]
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def statistics(self) -> dict[str, Any]:
        scheduler = self.scheduler
        return {"runs_in_memory": len(scheduler.runs) if scheduler else 0}
