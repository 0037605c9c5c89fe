"""Driver errors: which ones become StorageError, which are worth another attempt."""

from __future__ import annotations

import asyncpg

from aiobamboo.exceptions import StorageError

# Everything the driver or the socket can raise; each becomes StorageError.
DRIVER_ERRORS: tuple[type[BaseException], ...] = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,  # includes TimeoutError
)

# Errors that mean the connection is gone or unusable. After one, the pool's
# other connections are likely dead too (a restart, pg_terminate_backend), yet
# look alive until used, so the pool is told to replace them all.
_CONNECTION_LOST: tuple[type[BaseException], ...] = (
    asyncpg.PostgresConnectionError,  # class 08, ConnectionDoesNotExistError
    asyncpg.InterfaceError,  # "connection is closed", "pool is closing", ...
    # Raised when the server's goodbye message arrived on an idle connection:
    # "cannot switch to state ...; another operation is in progress".
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.AdminShutdownError,  # pg_terminate_backend, fast shutdown
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.CannotConnectNowError,  # the server is starting up
    OSError,
)

# Errors after which the same work may succeed on another attempt.
_TRANSIENT: tuple[type[BaseException], ...] = (
    *_CONNECTION_LOST,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.TransactionRollbackError,  # serialization failure, deadlock
    asyncpg.exceptions.InvalidCachedStatementError,  # a migration changed a table
)

# Waits before the 2nd, 3rd and 4th attempt of a group commit.
COMMIT_BACKOFF = (0.05, 0.2, 0.5)

# How long closing waits for queued commits, and for busy pool connections.
CLOSE_TIMEOUT = 10.0


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a failure worth another attempt (on a fresh connection)."""
    # asyncpg's client-side DataError (a bad argument) is an InterfaceError
    # and a ValueError; trying it again cannot help.
    return isinstance(exc, _TRANSIENT) and not isinstance(exc, ValueError)


def connection_lost(exc: BaseException) -> bool:
    return (
        isinstance(exc, _CONNECTION_LOST)
        and not isinstance(exc, ValueError)
        and not isinstance(exc, asyncpg.exceptions.OutdatedSchemaCacheError)
    )


def storage_error(what: str, exc: BaseException) -> StorageError:
    error = StorageError(f"{what}: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
