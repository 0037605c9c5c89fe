"""Count the instructions each scenario's run takes, for changes too small for a noisy clock.

    python -m benchmarks.instructions S1 S2 S4                  # this tree, SQLite
    python -m benchmarks.instructions S1 S2 S4 --compare c57bd15

Wall time on a shared machine moves by 10-30 % from one run to the next,
which hides a change worth 2 %. The number of instructions the CPU executes
for the same work moves by less than 0.1 %. Each scenario runs in a fresh
process under valgrind's cachegrind (``--cache-sim=no``: instructions only),
once up to the moment its pipelines would start (imports, the runtime
opened, the trees built) and once through to the end; the difference is
the scenario's own run. Under valgrind a process runs some 15-30 times
slower: half a minute a scenario and revision, S1-S6 against another
revision some five minutes.

Instructions are not time: they leave out waits (a commit's write to the
disk, the database thread, the GIL) and count a cheap instruction like a
costly one. Use them to compare two versions of the engine's own work, and
``benchmarks.run`` for what a user waits for. Needs ``valgrind`` on PATH.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
#: The scenarios this script runs: those driven as "start every pipeline, wait for all".
SCENARIOS = ("S1", "S2", "S3", "S4", "S6")


async def _not_run(runtime: Any, trees: list[dict[str, Any]], **options: Any) -> float:
    """Stands in for ``aiobamboo.bench._run_all`` when only the trees are built."""
    return 0.0


async def _child(scenario: str, run: bool) -> None:
    # Only what every revision of the package has: the child runs another
    # revision's code when comparing. Each scenario's driver builds its trees
    # and hands them to bench._run_all; without ``run`` that call does nothing.
    from aiobamboo import bench
    from aiobamboo.engine import Settings
    from aiobamboo_sqlite import SQLiteRuntime

    if not run:
        bench._run_all = _not_run
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(rerun_limit=10_000)
        path = os.path.join(tmp, "bench.db")
        async with SQLiteRuntime(path, components=bench.library, settings=settings) as runtime:
            await bench.SCENARIOS[scenario](runtime)


def _instructions(scenario: str, run: bool, tree: Path | None) -> int:
    """Instructions of one child process under cachegrind."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    if tree is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(tree), str(tree / "runtimes")])
    command = [
        "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
        sys.executable, str(Path(__file__).resolve()), "--child", scenario,
        "run" if run else "prepare",
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    found = re.search(r"I\s+refs:\s+([\d,]+)", out.stderr)
    if out.returncode != 0 or found is None:
        raise SystemExit(f"{scenario} failed under valgrind:\n{out.stderr[-3000:]}")
    return int(found.group(1).replace(",", ""))


def _scenario_instructions(scenario: str, tree: Path | None) -> int:
    return _instructions(scenario, True, tree) - _instructions(scenario, False, tree)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenarios", nargs="*", metavar="SCENARIO", help=", ".join(SCENARIOS))
    parser.add_argument("--compare", metavar="REVISION", help="a git revision to count too")
    parser.add_argument("--child", nargs=2, metavar=("SCENARIO", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        scenario, mode = args.child
        asyncio.run(_child(scenario, mode == "run"))
        return 0
    unknown = sorted(set(args.scenarios) - set(SCENARIOS))
    if unknown:
        parser.error(f"unknown scenarios {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on PATH (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory() as tmp:
        other = None
        if args.compare:
            from .run import checkout

            other = checkout(args.compare, Path(tmp))
        head = f"{'scenario':<10}{'M instructions':>16}"
        if other is not None:
            head += f"{args.compare[:12]:>16}{'ratio':>8}"
        print(head)
        print("-" * len(head))
        for scenario in args.scenarios or SCENARIOS:
            here = _scenario_instructions(scenario, None)
            line = f"{scenario:<10}{here / 1e6:>16.1f}"
            if other is not None:
                there = _scenario_instructions(scenario, other)
                line += f"{there / 1e6:>16.1f}{here / there:>8.3f}"
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    if __package__ in (None, ""):
        # Run as a file (the children are): the repository's root is not on sys.path.
        sys.path.append(str(ROOT))
    raise SystemExit(main())
