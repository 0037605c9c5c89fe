"""Connecting: the schema's name and channel, the pool, and a DSN fit to show."""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import re
from typing import Any

import asyncpg

from aiobamboo.exceptions import ConfigurationError

from ._errors import CLOSE_TIMEOUT, DRIVER_ERRORS, storage_error

# Postgres truncates longer identifiers silently, which would split one
# schema name into two; pg_notify refuses longer channel names outright.
MAX_IDENTIFIER_BYTES = 63


def check_schema(schema: str) -> None:
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
    if size > MAX_IDENTIFIER_BYTES:
        raise ConfigurationError(
            f"schema must be 1 to {MAX_IDENTIFIER_BYTES} bytes in UTF-8, not {size}: {schema!r}"
        )


def cut(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes, never inside a character."""
    return text.encode()[:limit].decode(errors="ignore")


def channel_for(schema: str) -> str:
    """The NOTIFY channel of ``schema``: ``aiobamboo.<schema>`` when it fits in 63 bytes.

    A longer one keeps as much of the name as fits beside a digest of the whole,
    so it stays readable and distinct per schema. Every process derives the
    same name, since they must all LISTEN and NOTIFY on it.
    """
    channel = f"aiobamboo.{schema}"
    if len(channel.encode()) <= MAX_IDENTIFIER_BYTES:
        return channel
    digest = hashlib.blake2b(schema.encode(), digest_size=4).hexdigest()
    return cut(channel, MAX_IDENTIFIER_BYTES - len(digest) - 1) + "#" + digest


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


async def close_pool(pool: Any) -> None:
    """Close ``pool``; terminate it if a connection is still busy after CLOSE_TIMEOUT."""
    try:
        await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
    except DRIVER_ERRORS:  # TimeoutError included, it is an OSError
        # Closing must not fail: the server may already be gone.
        pool.terminate()


async def create_pool(dsn: str, *, min_size: int, max_size: int, application_name: str) -> Any:
    try:
        return await asyncpg.create_pool(
            dsn,
            min_size=min_size,
            max_size=max_size,
            server_settings={"application_name": application_name},
            **_RESET_OPTION,
        )
    except DRIVER_ERRORS as exc:
        raise storage_error(f"cannot connect to {redact(dsn)}", exc) from exc
