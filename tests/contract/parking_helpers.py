"""Helpers of the parking, timer and event-log suites: where a run is, who claimed it.

"In memory" means held by the scheduler: driven, being loaded, or leaving
(``Scheduler.runs``, ``_loading``, ``_parking``). A parked run is in none of
them; storage alone has it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from aiobamboo.engine import Settings

from .ops_helpers import wait_until


def in_memory(runtime: Any, root_id: str) -> bool:
    scheduler = runtime.scheduler
    return (
        root_id in scheduler.runs or root_id in scheduler._loading or root_id in scheduler._parking
    )


async def wait_parked(runtime: Any, root_id: str, limit: float = 15.0) -> None:
    """Wait until the run has left this worker's memory (it waits on the outside world)."""

    async def check() -> bool:
        return not in_memory(runtime, root_id)

    await wait_until(check, f"run {root_id} to park", limit)


async def rest(runtime: Any, root_id: str) -> None:
    """Wait until the run waits on nothing but the outside world, its changes stored.

    Parked when parking is on; else held still, and as it would be the moment it parks.
    """
    if runtime.scheduler.settings.park_after is not None:
        await wait_parked(runtime, root_id)
        return

    async def resting() -> bool:
        run = runtime.scheduler.runs.get(root_id)
        assert run is not None, "a run that may not park left memory"
        return run.wake_time() is not None

    await wait_until(resting, f"run {root_id} to rest")


class ClaimSpy:
    """Records every run this worker's store claims (a claim is how a parked run is loaded)."""

    def __init__(self, runtime: Any) -> None:
        self.claimed: list[str] = []
        store = runtime.store
        claim_runs, claim_woken = store.claim_runs, store.claim_woken

        async def spy_claim_runs(limit: int, root_ids: Any = None) -> list[str]:
            got = await claim_runs(limit, root_ids)
            self.claimed.extend(got)
            return list(got)

        async def spy_claim_woken(limit: int, now: float) -> list[str]:
            got = await claim_woken(limit, now)
            self.claimed.extend(got)
            return list(got)

        store.claim_runs = spy_claim_runs
        store.claim_woken = spy_claim_woken

    def count(self, root_id: str) -> int:
        return self.claimed.count(root_id)


def needs_shared_storage(kind: str) -> None:
    """A second runtime (a client, a restarted worker) needs storage that outlives one."""
    if kind == "sqlite-memory":
        pytest.skip("an in-memory SQLite database is seen by one runtime only")


@asynccontextmanager
async def opened(factory: Any, **kwargs: Any) -> AsyncIterator[Any]:
    """A runtime from ``runtime_factory``, open for the block."""
    rt = await factory(**kwargs)
    async with rt:
        yield rt


def parking_settings(**overrides: Any) -> Settings:
    """Runs park the moment they wait on the outside world."""
    return Settings(**{"park_after": 0.0, **overrides})
