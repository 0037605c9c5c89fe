"""Versioned migrations: sql/migrations/NNNN_*.sql, applied once each, in order.

Several processes may open the same schema at once, so everything runs in one
transaction that first takes an advisory lock for the schema: the first
process creates the schema and applies the migrations, the others wait for
its commit and then find nothing left to do.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from aiobamboo.storage import package_sql_files

__all__ = ["lock_key", "migrate", "migrations", "quote_ident"]


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier (any character allowed)."""
    return '"' + name.replace('"', '""') + '"'


def lock_key(schema: str) -> int:
    """A stable signed 64-bit advisory lock key for migrating ``schema``.

    Python's ``hash`` is salted per process, so derive the key from a digest
    that every process computes alike.
    """
    digest = hashlib.blake2b(f"aiobamboo-migrate:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def migrations() -> list[tuple[str, str]]:
    return package_sql_files(__package__, "sql/migrations")


async def _ensure_schema(conn: Any, schema: str) -> None:
    # CREATE SCHEMA IF NOT EXISTS checks the CREATE privilege on the database
    # even when the schema exists, so look first: a role that may only use an
    # existing schema can still open it.
    exists = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
    if not exists:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")


async def migrate(conn: Any, schema: str) -> list[str]:
    """Create ``schema`` if missing and apply pending migrations; returns the ids applied now.

    ``conn`` is an asyncpg connection outside any transaction.
    """
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_key(schema))
        await _ensure_schema(conn, schema)
        # The migration files use unqualified names; SET LOCAL ends with the
        # transaction, so an adopted pool's connection is left as it was.
        await conn.execute(f"SET LOCAL search_path TO {quote_ident(schema)}")
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS aiobamboo_migrations "
            "(id TEXT PRIMARY KEY, applied_time DOUBLE PRECISION NOT NULL)"
        )
        applied = {r[0] for r in await conn.fetch("SELECT id FROM aiobamboo_migrations")}
        done = []
        for mid, sql in migrations():
            if mid in applied:
                continue
            await conn.execute(sql)
            await conn.execute(
                "INSERT INTO aiobamboo_migrations (id, applied_time) VALUES ($1, $2)",
                mid,
                time.time(),
            )
            done.append(mid)
    return done
