"""``aiobamboo worker``: a process that runs the pipelines stored in a database."""

from __future__ import annotations

import logging
import signal
from typing import Any

import anyio

logger = logging.getLogger("aiobamboo.worker")


def open_runtime(db: str, *, schema: str = "aiobamboo", concurrency: int = 100) -> Any:
    """A worker runtime for ``db``: a ``postgresql://`` DSN, or a SQLite path."""
    if db.startswith(("postgres://", "postgresql://")):
        from aiobamboo_postgres import PostgresRuntime

        return PostgresRuntime(db, schema=schema, worker=True, concurrency=concurrency)
    from aiobamboo_sqlite import SQLiteRuntime

    return SQLiteRuntime(db.removeprefix("sqlite://"), worker=True)


async def run_worker(db: str, *, schema: str = "aiobamboo", concurrency: int = 100) -> None:
    """Run until SIGTERM or SIGINT, then hand the work back and exit."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with open_runtime(db, schema=schema, concurrency=concurrency):
            logger.info("worker running pipelines from %s", db.split("@")[-1])
            async for signum in signals:
                logger.info("received %s: stopping", signal.Signals(signum).name)
                break
