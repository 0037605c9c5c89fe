"""SQLiteRuntime: the embedded default runtime, on aiosqlite (asyncio only).

Durability: the database runs in WAL mode with ``synchronous=NORMAL`` by
default. A committed step survives a crash of the process (SIGKILL included);
after a power loss or an operating-system crash the last few commits may be
lost. Pass ``synchronous="FULL"`` to fsync every commit as well.

One worker at a time: a runtime opened with ``worker=True`` on a file holds an
exclusive lock on ``<path>.lock`` while it is open, and the operating system
releases it if the process dies, so the next runtime resumes at once. The lock
file sits next to the file's real path (symlinks resolved), where SQLite keeps
its ``-wal`` and ``-shm`` files, so every path that reaches one database meets
one lock. A worker refuses a database file with several hard links: SQLite
names the write-ahead log after the path it was given, so each link would get
a log, and a lock, of its own.

The database file is read with plain reads, never memory-mapped: a mapped file
that another process truncates kills this one with SIGBUS, where a read
returns an error the runtime reports as :class:`~aiobamboo.exceptions.StorageError`.
(SQLite's ``-shm`` index is mapped whatever the settings: WAL mode shares it
between processes through that map, so it must be left alone.)
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import os
import sqlite3
import threading
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


async def _thread_stopped(connection: aiosqlite.Connection) -> None:
    """Wait for the thread of a connection that failed to open to end.

    aiosqlite stops it with a call that reports back to the event loop; were
    the loop closed first (the caller gives up at once), the report would fail
    in that thread.
    """
    thread = getattr(connection, "_thread", connection)
    if isinstance(thread, threading.Thread) and thread.is_alive():
        await asyncio.to_thread(thread.join, 5.0)


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
        # SQLite resolves symlinks before it names the -wal and -shm files, so the
        # lock does too: a symlink or another relative path reaches the same lock.
        real = os.path.realpath(self.path)
        try:
            links = os.stat(real).st_nlink
        except OSError:
            links = 1  # not there yet (or unreadable: opening it says why)
        if links > 1:
            raise StorageError(
                f"{self.path} has {links} hard links; SQLite keeps a write-ahead log per "
                "name, so workers opened through two links would each run every activity "
                "and corrupt the file. Open it through one name only (remove the other links)"
            )
        lock_path = real + ".lock"
        try:
            lock = open(lock_path, "ab")
        except OSError as exc:
            raise StorageError(f"cannot create the lock file {lock_path}: {exc}") from exc
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            lock.close()
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise StorageError(f"cannot lock {lock_path}: {exc}") from exc
            shown = self.path if real == os.path.abspath(self.path) else f"{self.path} ({real})"
            raise StorageError(
                f"{shown} is in use by another worker process; "
                "open it with worker=False to start and control pipelines from here"
            ) from None
        self._lock_file = lock

    def _open_error(self, exc: sqlite3.Error) -> StorageError:
        code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code
        if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
            return StorageError(f"{self.path} is not a valid aiobamboo SQLite database: {exc}")
        return StorageError(f"cannot open {self.path}: {exc}")

    async def _open(self) -> None:
        if self.worker and not self.in_memory:
            self._lock()
        connection = aiosqlite.connect(self.path, isolation_level=None)
        try:
            conn = await connection
        except Exception as exc:
            await _thread_stopped(connection)
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        Store.__init__(self, conn)
        try:
            await self._prepare(conn)
        except sqlite3.Error as exc:
            # SQLite reads the file lazily: a garbage header shows up here, not at connect.
            raise self._open_error(exc) from exc
        self.start()
        self.scheduler = Scheduler(
            self, components=self.components, settings=self.settings, worker=self.worker
        )
        attach(self, self.scheduler)
        await self.scheduler.start()

    async def _prepare(self, conn: aiosqlite.Connection) -> None:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute(f"PRAGMA synchronous={self.synchronous}")
        await conn.execute("PRAGMA busy_timeout=5000")
        # Node ids are random, so writes land all over the tables: a page cache
        # large enough for the working set keeps them off the disk.
        await conn.execute("PRAGMA cache_size=-16384")
        # No memory map, whatever SQLite was built with: touching a mapped page of
        # a file another process truncated raises SIGBUS and kills the process.
        await conn.execute("PRAGMA mmap_size=0")
        await migrate(conn)

    async def _close(self) -> None:
        detach(self)
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            await scheduler.stop()
        try:
            if getattr(self, "conn", None) is not None:
                await self.close()
                try:
                    await self.conn.close()
                except sqlite3.Error as exc:
                    raise StorageError(f"cannot close {self.path}: {exc}") from exc
                finally:
                    self.conn = None  # type: ignore[assignment]
        finally:
            # Released even when closing failed: the connection is gone either way,
            # and a held lock would keep every later worker out until this process exits.
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None

    def statistics(self) -> dict[str, Any]:
        scheduler = self.scheduler
        return {"runs_in_memory": len(scheduler.runs) if scheduler else 0}
