"""``aiobamboo worker``: a process that runs the pipelines stored in a database."""

from __future__ import annotations

import logging
import signal
from typing import Any

import anyio

from .engine import Settings, scheduler_of

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
) -> int:
    """Run until SIGTERM or SIGINT, then hand the held runs back; the exit status.

    Non-zero when the engine stopped on its own: a worker that no longer runs
    pipelines must not look alive, so that its supervisor restarts it.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    runtime = open_runtime(db, schema=schema, concurrency=concurrency, lease_seconds=lease_seconds)
    failure: BaseException | None = None
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with runtime:
            scheduler = scheduler_of(runtime)
            logger.info("worker %s running pipelines", getattr(runtime, "owner_id", ""))
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    nonlocal failure
                    failure = await scheduler.wait_failure()
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                async for signum in signals:
                    logger.info("received %s: handing work back", signal.Signals(signum).name)
                    break
                tg.cancel_scope.cancel()
    if failure is not None:
        logger.critical("the engine stopped (%r): exiting", failure)
        return 1
    return 0
