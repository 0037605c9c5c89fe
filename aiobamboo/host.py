"""The composition root: an :class:`Engine` holds a scheduler over a store.

A store is SQL plus a driver and knows nothing of the scheduler; the engine is
handed one and hosts the scheduler on it, the way an HTTP client is handed a
transport. The object users pass to :mod:`aiobamboo.api` is the engine, so
it carries its scheduler: no registry maps one to the other.

``SQLiteRuntime(path)`` and ``PostgresRuntime(dsn)`` are engines that build
their own store; :func:`runtime_class` finds the one for a database URL
through the ``aiobamboo.runtimes`` entry points, so this package imports none.
"""

from __future__ import annotations

import importlib
from types import TracebackType
from typing import Any, Self

from .component import ComponentLibrary
from .engine import Scheduler, Settings
from .exceptions import ConfigurationError
from .runtime import Store

__all__ = ["ENTRY_POINT_GROUP", "Engine", "Settings", "runtime_class", "scheme_of"]

#: The entry-point group in which runtime packages declare their engine class.
ENTRY_POINT_GROUP = "aiobamboo.runtimes"

# Used when the installed metadata predates the entry points (an editable
# install not refreshed): the runtimes shipped in this distribution.
_BUILT_IN = {
    "sqlite": "aiobamboo_sqlite:SQLiteRuntime",
    "postgresql": "aiobamboo_postgres:PostgresRuntime",
}


class Engine:
    """``async with Engine(store) as engine:`` opens the store, then runs the scheduler.

    Leaving stops the scheduler first (handing its runs back to the store, for
    the next worker) and closes the store last, so nothing the scheduler
    commits on its way out is lost. Entering again while open is a no-op.
    """

    def __init__(
        self,
        store: Store,
        *,
        components: ComponentLibrary | None = None,
        settings: Settings | None = None,
        worker: bool = True,
    ) -> None:
        self.store = store
        self.components = components
        self.settings = settings
        self.worker = worker
        #: The running scheduler while the engine is open, else None.
        self.scheduler: Scheduler | None = None
        self._depth = 0

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Engine:
        """An engine for ``url``; each runtime class says which options it takes."""
        raise NotImplementedError(f"{cls.__name__} cannot be built from a URL")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.store!r}, worker={self.worker})"

    async def __aenter__(self) -> Self:
        self._depth += 1
        if self._depth > 1:
            return self
        opened = False
        try:
            await self.store.open()
            self.scheduler = Scheduler(
                self.store, components=self.components, settings=self.settings, worker=self.worker
            )
            await self.scheduler.start()
            opened = True
        finally:
            if not opened:  # failed or cancelled: whatever was opened is closed again
                self._depth = 0
                await self._close()
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

    async def _close(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        try:
            if scheduler is not None:
                await scheduler.stop()
        finally:
            await self.store.aclose()

    def statistics(self) -> dict[str, Any]:
        """Runs held in memory, plus what the store reports (pool sizes, ...)."""
        scheduler = self.scheduler
        return {
            "runs_in_memory": len(scheduler.runs) if scheduler else 0,
            **self.store.statistics(),
        }


def scheme_of(url: str) -> str:
    """The runtime name for ``url``: ``postgresql`` for a DSN, ``sqlite`` for a path."""
    scheme, sep, _ = url.partition("://")
    if not sep:
        return "sqlite"  # a plain file path
    return "postgresql" if scheme == "postgres" else scheme


def runtime_class(name: str) -> type[Engine]:
    """The engine class a runtime package declares under ``name`` (``sqlite``, ...)."""
    # Imported here, when a runtime is chosen by URL: importlib.metadata brings
    # email, zipfile and csv, some 4,000 objects that every full collection of
    # the garbage collector would walk in every process that imports aiobamboo.
    from importlib import metadata

    found = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if found:
        loaded = found[0].load()
    elif name in _BUILT_IN:
        module, _, attribute = _BUILT_IN[name].partition(":")
        loaded = getattr(importlib.import_module(module), attribute)
    else:
        raise ConfigurationError(f"no aiobamboo runtime is installed for {name!r} URLs")
    if not (isinstance(loaded, type) and issubclass(loaded, Engine)):
        raise ConfigurationError(f"the {name!r} runtime {loaded!r} is not an aiobamboo Engine")
    return loaded


def open_url(url: str, **options: Any) -> Engine:
    """An unopened engine for ``url``, built by the runtime that serves its scheme."""
    return runtime_class(scheme_of(url)).from_url(url, **options)
