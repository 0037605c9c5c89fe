"""What a deadline on every node costs: S1 (a chain of 1,000 activities) on SQLite,
without timeouts, with a timeout on every node, and with a timeout and a timer event
(an ISO 8601 duration) on every node; the runs interleaved, the median of each.

    python -m benchmarks.timeouts [--runs 5] [--nodes 1000]

Each node's deadline is an hour away: it is armed (a timer row) when the node
starts running and dropped when it finishes, which is the whole per-node cost.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from typing import Any

import anyio

from aiobamboo.bench import _run_all, chain, library
from aiobamboo.timing import TimerEvent

HOUR = 3600


def timed_chain(nodes: int, *, event: bool) -> dict[str, Any]:
    """S1's tree, every activity given a one-hour timeout (and a one-hour timer event)."""
    tree, _ = chain(nodes)
    for activity in tree["activities"].values():
        activity["timeout"] = HOUR
        if event:
            timer = TimerEvent("time_duration", "PT1H", action="forced_fail")
            activity["events"] = {"timer_events": [timer.to_dict()]}
    return tree


async def one_run(variant: str, nodes: int) -> float:
    from aiobamboo_sqlite import SQLiteRuntime

    if variant == "plain":
        tree, _ = chain(nodes)
    else:
        tree = timed_chain(nodes, event=variant == "timeout+event")
    with tempfile.TemporaryDirectory() as tmp:
        async with SQLiteRuntime(os.path.join(tmp, "bench.db"), components=library) as runtime:
            return await _run_all(runtime, [tree])


async def main(runs: int, nodes: int) -> None:
    variants = ["plain", "timeout", "timeout+event"]
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    await one_run("plain", 50)  # warm up imports and the first database
    for _ in range(runs):
        for variant in variants:
            seconds[variant].append(await one_run(variant, nodes))
    base = statistics.median(seconds["plain"])
    print(f"S1, a chain of {nodes} activities on SQLite, median of {runs} interleaved runs")
    for variant in variants:
        median = statistics.median(seconds[variant])
        print(
            f"  {variant:<14} {median:7.3f} s  {nodes / median:8.0f} nodes/s  "
            f"ratio {median / base:5.2f}  runs {' '.join(f'{s:.3f}' for s in seconds[variant])}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--nodes", type=int, default=1000)
    args = parser.parse_args()
    anyio.run(main, args.runs, args.nodes)
