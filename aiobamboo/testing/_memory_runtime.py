"""MemoryRuntime: an :class:`~aiobamboo.host.Engine` over a :class:`MemoryStore`."""

from __future__ import annotations

from ..component import ComponentLibrary
from ..engine import Settings
from ..host import Engine
from ._memory import Faults, MemoryStorage, MemoryStore

__all__ = ["MemoryRuntime"]


class MemoryRuntime(Engine):
    """``async with MemoryRuntime() as runtime:``; ``runtime.faults`` makes storage fail.

    Pass ``storage=`` (a :class:`MemoryStorage`) to open a runtime on the data
    of an earlier one, as a restart would. One worker runtime at a time may be
    open on a storage, as one worker process on a SQLite file.
    """

    store: MemoryStore

    def __init__(
        self,
        storage: MemoryStorage | None = None,
        *,
        worker: bool = True,
        components: ComponentLibrary | None = None,
        settings: Settings | None = None,
    ) -> None:
        store = MemoryStore(storage, worker=worker)
        super().__init__(store, components=components, settings=settings, worker=worker)

    def __repr__(self) -> str:
        return f"MemoryRuntime(worker={self.worker})"

    @property
    def storage(self) -> MemoryStorage:
        """The tables: open another ``MemoryRuntime`` on them to test a restart."""
        return self.store.storage

    @property
    def faults(self) -> Faults:
        """Fault hooks: fail the next commits, delay them, or lose their answers."""
        return self.store.faults

    @property
    def owner_id(self) -> str:
        return self.store.owner_id
