"""Versioned migrations: sql/migrations/NNNN_*.sql, applied once each, in order."""

from __future__ import annotations

import sqlite3
import time
from importlib import resources


def migrations() -> list[tuple[str, str]]:
    folder = resources.files(__package__).joinpath("sql/migrations")
    files = sorted(f.name for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), folder.joinpath(name).read_text()) for name in files]


def migrate(conn: sqlite3.Connection) -> list[str]:
    """Apply pending migrations; returns the ids applied now (on the connection's thread)."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS aiobamboo_migrations "
        "(id TEXT PRIMARY KEY, applied_time REAL NOT NULL)"
    )
    rows = conn.execute("SELECT id FROM aiobamboo_migrations").fetchall()
    applied = {row[0] for row in rows}
    done = []
    for mid, sql in migrations():
        if mid in applied:
            continue
        # One script, one transaction: a migration applies whole or not at all.
        record = f"INSERT INTO aiobamboo_migrations VALUES ('{mid}', {time.time()});"
        conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\n{record}\nCOMMIT;")
        done.append(mid)
    return done
