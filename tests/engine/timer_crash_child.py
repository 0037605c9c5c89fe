"""Child process of the timer crash test: start pipelines whose nodes time out, get killed."""

from __future__ import annotations

import sys

import anyio
from tests.engine.crash_components import library, record
from tests.engine.test_timer_crash import timed_tree

from aiobamboo import api
from aiobamboo_sqlite import SQLiteRuntime


async def main(db: str, count: int) -> None:
    async with SQLiteRuntime(db, components=library) as runtime:
        for i in range(count):
            result = await api.run_pipeline(runtime, timed_tree(i))
            assert result.result, result.message
        record("started")
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
