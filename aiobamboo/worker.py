"""``aiobamboo worker``: a process that runs the pipelines stored in a database."""

from __future__ import annotations

import logging
import signal

import anyio

from .engine import Settings
from .engine._observer import Observer
from .host import Engine, open_url

logger = logging.getLogger("aiobamboo.worker")


def open_runtime(
    db: str,
    *,
    schema: str = "aiobamboo",
    concurrency: int = 10_000,
    lease_seconds: float = 15.0,
    observer: Observer | None = None,
) -> Engine:
    """A worker runtime for ``db``: a ``postgresql://`` DSN, or a SQLite path.

    The runtime package that serves the URL's scheme is found through its
    entry point, so this module imports none.
    """
    return open_url(
        db,
        worker=True,
        settings=Settings(concurrency=concurrency, observer=observer),
        schema=schema,
        lease_seconds=lease_seconds,
    )


async def run_worker(
    db: str,
    *,
    schema: str = "aiobamboo",
    concurrency: int = 10_000,
    lease_seconds: float = 15.0,
    observer: Observer | None = None,
) -> int:
    """Run until SIGTERM or SIGINT, then hand the held runs back; the exit status.

    Non-zero when the engine stopped on its own: a worker that no longer runs
    pipelines must not look alive, so that its supervisor restarts it.
    """
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    runtime = open_runtime(
        db,
        schema=schema,
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        observer=observer,
    )
    failure: BaseException | None = None
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with runtime:
            scheduler = runtime.scheduler
            assert scheduler is not None  # set while the runtime is open
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
