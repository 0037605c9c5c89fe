"""PostgresRuntime: the shared runtime, on asyncpg (asyncio only).

All tables live in one schema (``schema="aiobamboo"``), created and migrated
when the runtime is entered, so several installations or test runs can share
a database. Statements name their tables through the quoted schema, so no
``search_path`` is needed and an adopted pool (``pool=...``) works unchanged;
an adopted pool is left open on exit.

Durability: a step is stored once its transaction commits on the server.
Concurrent steps share transactions (group commit); a group interrupted by a
lost connection is written again on a fresh one, which is safe because every
write is idempotent.

The pool's connections carry ``application_name`` = :attr:`application_name`
(``aiobamboo/<schema>``), which tells them apart in ``pg_stat_activity``.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import re
import socket
import uuid
from types import TracebackType
from typing import Any

import asyncpg

from aiobamboo.component import ComponentLibrary
from aiobamboo.engine import Scheduler, Settings, attach, detach
from aiobamboo.exceptions import ConfigurationError

from ._migrate import migrate
from ._store import CLOSE_TIMEOUT, DRIVER_ERRORS, Store, load_queries, storage_error

__all__ = ["PostgresRuntime"]

# Postgres truncates longer identifiers silently, which would split one
# schema name into two; pg_notify refuses longer channel names outright.
_MAX_IDENTIFIER_BYTES = 63


def _check_schema(schema: str) -> None:
    """Refuse a schema name Postgres would truncate or cannot store at all."""
    if not isinstance(schema, str) or not schema:
        raise ConfigurationError(f"schema must be a non-empty string: {schema!r}")
    if "\x00" in schema:
        # Postgres text cannot hold NUL; the server would refuse every statement.
        raise ConfigurationError(f"schema must not contain NUL: {schema!r}")
    try:
        size = len(schema.encode())
    except UnicodeEncodeError as exc:  # lone surrogates have no UTF-8 form
        raise ConfigurationError(f"schema must be valid Unicode text: {schema!r}") from exc
    if size > _MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(
            f"schema must be 1 to {_MAX_IDENTIFIER_BYTES} bytes in UTF-8, not {size}: {schema!r}"
        )


def _cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    return text.encode()[:limit].decode(errors="ignore")


def _channel_for(schema: str) -> str:
    """The NOTIFY channel of ``schema``: ``aiobamboo.<schema>`` when it fits in 63 bytes.

    A longer one keeps as much of the name as fits beside a digest of the whole,
    so it stays readable and distinct per schema. Every process derives the
    same name, since they must all LISTEN and NOTIFY on it.
    """
    channel = f"aiobamboo.{schema}"
    if len(channel.encode()) <= _MAX_IDENTIFIER_BYTES:
        return channel
    digest = hashlib.blake2b(schema.encode(), digest_size=4).hexdigest()
    return _cut(channel, _MAX_IDENTIFIER_BYTES - len(digest) - 1) + "#" + digest


def redact(dsn: str) -> str:
    """``dsn`` with its password hidden, for messages and repr."""
    return re.sub(r"(://[^:/?#@]*:)[^@/?#]*@", r"\1***@", dsn)


async def _keep_session(conn: Any) -> None:
    """The pool's reset: nothing to undo.

    asyncpg's default reset sends ``RESET ALL; UNLISTEN *; ...`` on every
    release, one round trip per read or commit. This runtime leaves no
    session state behind (its locks and settings are transaction-scoped), and
    asyncpg still rolls back a transaction left open before calling this.
    """


# create_pool(reset=...) exists since asyncpg 0.30; older ones keep their reset.
_RESET_OPTION: dict[str, Any] = (
    {"reset": _keep_session} if "reset" in inspect.signature(asyncpg.create_pool).parameters else {}
)


async def _close_pool(pool: Any) -> None:
    """Close ``pool``; terminate it if a connection is still busy after CLOSE_TIMEOUT."""
    try:
        await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
    except DRIVER_ERRORS:  # TimeoutError included, it is an OSError
        # Closing must not fail: the server may already be gone.
        pool.terminate()


class PostgresRuntime(Store):
    """``async with PostgresRuntime("postgresql://user@host/db") as runtime:``."""

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
        _check_schema(schema)
        self.dsn = dsn
        self.schema = schema
        self.worker = worker
        self.components = components
        self.settings = settings
        self.min_pool_size = min_pool_size
        self.max_pool_size = max_pool_size
        self.application_name = _cut(f"aiobamboo/{schema}", _MAX_IDENTIFIER_BYTES)
        self.lease_seconds = lease_seconds
        self.owner_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        # One channel per schema: installations sharing a database do not wake each other.
        self.channel = _channel_for(schema)
        self.scheduler: Scheduler | None = None
        self._adopted_pool = pool
        self._depth = 0
        Store.__init__(self, None, load_queries(schema))

    def __repr__(self) -> str:
        return (
            f"PostgresRuntime({redact(self.dsn)!r}, schema={self.schema!r}, worker={self.worker})"
        )

    async def __aenter__(self) -> PostgresRuntime:
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

    async def _create_pool(self) -> Any:
        try:
            return await asyncpg.create_pool(
                self.dsn,
                min_size=self.min_pool_size,
                max_size=self.max_pool_size,
                server_settings={"application_name": self.application_name},
                **_RESET_OPTION,
            )
        except DRIVER_ERRORS as exc:
            raise storage_error(f"cannot connect to {redact(self.dsn)}", exc) from exc

    async def _migrate(self) -> None:
        try:
            async with self.pool.acquire() as conn:
                await migrate(conn, self.schema)
        except DRIVER_ERRORS as exc:
            raise storage_error(f"cannot migrate schema {self.schema!r}", exc) from exc

    async def _open(self) -> None:
        self.pool = self._adopted_pool or await self._create_pool()
        await self._migrate()
        self.start()
        self.scheduler = Scheduler(
            self, components=self.components, settings=self.settings, worker=self.worker
        )
        attach(self, self.scheduler)
        await self.scheduler.start()

    def dsn_for_listen(self) -> str:
        return self.dsn

    async def _close(self) -> None:
        detach(self)
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            await scheduler.stop()
        await self._close_listener()
        await self.close()
        pool, self.pool = self.pool, None
        if pool is not None and pool is not self._adopted_pool:
            await _close_pool(pool)

    def statistics(self) -> dict[str, Any]:
        scheduler = self.scheduler
        pool = self.pool
        return {
            "runs_in_memory": len(scheduler.runs) if scheduler else 0,
            "pool_size": pool.get_size() if pool is not None else 0,
            "pool_idle": pool.get_idle_size() if pool is not None else 0,
        }

    @property
    def adopted_pool(self) -> bool:
        """Whether the pool was passed in (and is therefore not closed on exit)."""
        return self._adopted_pool is not None
