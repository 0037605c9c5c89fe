"""Versioned migrations: sql/migrations/NNNN_*.sql, applied once each, in order."""

from __future__ import annotations

import sqlite3
import time

from aiobamboo.storage import package_sql_files


def migrations() -> list[tuple[str, str]]:
    return package_sql_files(__package__, "sql/migrations")


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply pending migrations; returns the ids applied now (on the connection's thread).

    ``conn`` is in autocommit mode. Several processes may open a new file at
    once (``serve --workers 2``): each migration is looked up again once its
    transaction holds the write lock, so a migration another process applied
    meanwhile is not applied twice.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS aiobamboo_migrations "
        "(id TEXT PRIMARY KEY, applied_time REAL NOT NULL)"
    )
    applied = {row[0] for row in conn.execute("SELECT id FROM aiobamboo_migrations")}
    done = []
    for mid, sql in migrations():
        if mid in applied:
            continue
        # One transaction per migration: it applies whole or not at all.
        conn.execute("BEGIN IMMEDIATE")
        try:
            if conn.execute("SELECT 1 FROM aiobamboo_migrations WHERE id = ?", (mid,)).fetchone():
                conn.execute("COMMIT")
                continue
            for statement in _statements(sql):
                conn.execute(statement)
            conn.execute("INSERT INTO aiobamboo_migrations VALUES (?, ?)", (mid, time.time()))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        done.append(mid)
    return done


def _statements(script: str) -> list[str]:
    """The statements of ``script``, one by one (``executescript`` would commit first)."""
    statements, pending = [], ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending)
            pending = ""
    leftover = [line for line in pending.splitlines() if not line.strip().startswith("--")]
    if "".join(leftover).strip():  # more than trailing comments
        raise ValueError(f"a migration ends with an incomplete statement: {pending.strip()!r:.80}")
    return statements
