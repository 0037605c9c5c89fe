"""``aiobamboo worker``: a process that runs the pipelines stored in a database."""

from __future__ import annotations

import logging
import signal
from typing import Any

import anyio

from .engine import Settings

logger = logging.getLogger("aiobamboo.worker")


def open_runtime(
    db: str, *, schema: str = "aiobamboo", concurrency: int = 10_000, lease_seconds: float = 15.0
) -> Any:
    """A worker runtime for ``db``: a ``postgresql://`` DSN, or a SQLite path."""
    settings = Settings(concurrency=concurrency)
    if db.startswith(("postgres://", "postgresql://")):
        from aiobamboo_postgres import PostgresRuntime

        return PostgresRuntime(
            db, schema=schema, worker=True, settings=settings, lease_seconds=lease_seconds
        )
    from aiobamboo_sqlite import SQLiteRuntime

    return SQLiteRuntime(db.removeprefix("sqlite://"), worker=True, settings=settings)


async def run_worker(
    db: str, *, schema: str = "aiobamboo", concurrency: int = 10_000, lease_seconds: float = 15.0
) -> None:
    """Run until SIGTERM or SIGINT, then hand the held runs back and exit."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    runtime = open_runtime(db, schema=schema, concurrency=concurrency, lease_seconds=lease_seconds)
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with runtime:
            logger.info("worker %s running pipelines", getattr(runtime, "owner_id", ""))
            async for signum in signals:
                logger.info("received %s: handing work back", signal.Signals(signum).name)
                break
