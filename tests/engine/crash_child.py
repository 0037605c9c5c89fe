"""Child process of the crash test: start pipelines, answer callbacks, get killed."""

from __future__ import annotations

import sys

import anyio
from tests.engine.crash_components import build, library, record

from aiobamboo import api
from aiobamboo_sqlite import SQLiteRuntime


async def main(db: str, count: int) -> None:
    async with SQLiteRuntime(db, components=library) as runtime:
        for i in range(count):
            result = await api.run_pipeline(runtime, build(i))
            assert result.result, result.message
        record("started")
        sent: set[str] = set()
        while True:
            for i in range(count):
                node_id = f"ewait{i:028d}"
                if node_id in sent:
                    continue
                states = await api.get_children_states(runtime, f"pcrash{i:027d}")
                child = states.data and states.data[f"pcrash{i:027d}"]["children"].get(node_id)
                if child and child["state"] == "RUNNING":
                    res = await api.callback(runtime, node_id, child["version"], {"n": i})
                    if res.result:
                        sent.add(node_id)
                        record(f"acked {node_id}")
            await anyio.sleep(0.005)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], int(sys.argv[2]))
