"""The database file: one worker per file (an exclusive lock), and errors that name it."""

from __future__ import annotations

import errno
import fcntl
import os
import sqlite3
from typing import IO

from aiobamboo.exceptions import StorageError


def lock_database(path: str) -> IO[bytes]:
    """Hold ``<real path>.lock`` exclusively, or raise StorageError saying who holds it.

    SQLite resolves symlinks before it names the -wal and -shm files, so the
    lock does too: a symlink or another relative path reaches the same lock.
    """
    real = os.path.realpath(path)
    try:
        links = os.stat(real).st_nlink
    except OSError:
        links = 1  # not there yet (or unreadable: opening it says why)
    if links > 1:
        raise StorageError(
            f"{path} has {links} hard links; SQLite keeps a write-ahead log per "
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
        shown = path if real == os.path.abspath(path) else f"{path} ({real})"
        raise StorageError(
            f"{shown} is in use by another worker process; "
            "open it with worker=False to start and control pipelines from here"
        ) from None
    return lock


def open_error(path: str, exc: sqlite3.Error) -> StorageError:
    """The error for a file SQLite cannot open or read: damaged, or not a database."""
    code = (getattr(exc, "sqlite_errorcode", None) or 0) & 0xFF  # the primary code
    if code in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT):
        return StorageError(f"{path} is not a valid aiobamboo SQLite database: {exc}")
    return StorageError(f"cannot open {path}: {exc}")
