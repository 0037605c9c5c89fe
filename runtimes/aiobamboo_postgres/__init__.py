"""PostgresRuntime: the shared runtime, on asyncpg (asyncio only).

All tables live in one schema (``schema="aiobamboo"``), created and migrated
when the runtime is entered, so several installations or test runs can share
a database. Statements name their tables through the quoted schema, so no
``search_path`` is needed and an adopted pool (``pool=...``) works unchanged;
an adopted pool is left open on exit.

Durability: a step is stored once its transaction commits on the server,
as the server's ``synchronous_commit`` says (``on`` by default: flushed to
disk). ``?synchronous_commit=off`` in the DSN, which asyncpg passes on as a
setting of every connection, trades the last commits before a crash of the
server or its machine for speed; a crash of a worker loses nothing either way.
Concurrent steps share transactions (group commit); a group interrupted by a
lost connection is written again on a fresh one, which is safe because every
write is idempotent.

The pool's connections carry ``application_name`` = :attr:`application_name`
(``aiobamboo/<schema>``), which tells them apart in ``pg_stat_activity``.
"""

from __future__ import annotations

from typing import Any

from aiobamboo.component import ComponentLibrary
from aiobamboo.host import Engine, Settings

from ._connect import redact
from ._store import PostgresStore

__all__ = ["PostgresRuntime", "PostgresStore"]


class PostgresRuntime(Engine):
    """``async with PostgresRuntime("postgresql://user@host/db") as runtime:``.

    An :class:`~aiobamboo.host.Engine` over a :class:`PostgresStore` of ``schema``.
    """

    store: PostgresStore

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "aiobamboo",
        pool: Any = None,
        worker: bool = True,
        components: ComponentLibrary | None = None,
        settings: Settings | None = None,
        min_pool_size: int = 2,
        max_pool_size: int = 10,
        lease_seconds: float = 15.0,
    ) -> None:
        store = PostgresStore(
            dsn,
            schema=schema,
            pool=pool,
            worker=worker,
            min_pool_size=min_pool_size,
            max_pool_size=max_pool_size,
            lease_seconds=lease_seconds,
        )
        super().__init__(store, components=components, settings=settings, worker=worker)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        worker: bool = True,
        components: ComponentLibrary | None = None,
        settings: Settings | None = None,
        schema: str = "aiobamboo",
        lease_seconds: float = 15.0,
        **_other_runtimes_only: Any,
    ) -> PostgresRuntime:
        """``postgresql://...`` (or ``postgres://...``) with the worker's options."""
        return cls(
            url,
            schema=schema,
            worker=worker,
            components=components,
            settings=settings,
            lease_seconds=lease_seconds,
        )

    def __repr__(self) -> str:
        return (
            f"PostgresRuntime({redact(self.dsn)!r}, schema={self.schema!r}, worker={self.worker})"
        )

    # What users and tools read of the store, kept on the runtime they hold.
    @property
    def dsn(self) -> str:
        return self.store.dsn

    @property
    def schema(self) -> str:
        return self.store.schema

    @property
    def pool(self) -> Any:
        return self.store.pool

    @property
    def adopted_pool(self) -> bool:
        """Whether the pool was passed in (and is therefore not closed on exit)."""
        return self.store.adopted_pool

    @property
    def channel(self) -> str:
        return self.store.channel

    @property
    def application_name(self) -> str:
        return self.store.application_name

    @property
    def owner_id(self) -> str:
        return self.store.owner_id

    @property
    def lease_seconds(self) -> float:
        return self.store.lease_seconds
