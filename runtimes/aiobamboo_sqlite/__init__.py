"""SQLiteRuntime: the embedded default runtime, on the standard library's sqlite3.

The connection lives on a thread the runtime owns; results come back to the
event loop through asyncio, so the runtime is asyncio only.

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

import os
from typing import Any

from aiobamboo.component import ComponentLibrary
from aiobamboo.host import Engine, Settings

from ._store import SQLiteStore, Synchronous

__all__ = ["SQLiteRuntime", "SQLiteStore"]


class SQLiteRuntime(Engine):
    """``async with SQLiteRuntime("flows.db") as runtime:`` (``":memory:"`` works too).

    An :class:`~aiobamboo.host.Engine` over a :class:`SQLiteStore` of ``path``.
    """

    store: SQLiteStore

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        worker: bool = True,
        components: ComponentLibrary | None = None,
        settings: Settings | None = None,
        synchronous: Synchronous = "NORMAL",
    ) -> None:
        store = SQLiteStore(path, worker=worker, synchronous=synchronous)
        super().__init__(store, components=components, settings=settings, worker=worker)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        worker: bool = True,
        components: ComponentLibrary | None = None,
        settings: Settings | None = None,
        **_postgres_only: Any,
    ) -> SQLiteRuntime:
        """``sqlite://flows.db`` or a plain path; options of other runtimes are ignored."""
        return cls(
            url.removeprefix("sqlite://"), worker=worker, components=components, settings=settings
        )

    def __repr__(self) -> str:
        return f"SQLiteRuntime({self.path!r}, worker={self.worker})"

    @property
    def path(self) -> str:
        return self.store.path

    @property
    def synchronous(self) -> Synchronous:
        return self.store.synchronous

    @property
    def in_memory(self) -> bool:
        return self.store.in_memory

    @property
    def owner_id(self) -> str:
        return self.store.owner_id

    @property
    def lease_seconds(self) -> float:
        return self.store.lease_seconds
