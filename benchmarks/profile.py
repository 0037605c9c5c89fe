"""Profile scenarios with cProfile and print their costliest functions.

    python -m benchmarks.profile S1 S4 S5                 # this tree, SQLite
    python -m benchmarks.profile S1 --compare c57bd15     # and a git revision, side by side
    python -m benchmarks.profile S5 --count 3000 --top 15

Each scenario runs once to warm up, then once under cProfile, in a fresh
process on a fresh SQLite file (the embedded default), with the event loop and
the runtime in that process. Functions are ranked by their own time
("tottime"); the event loop's ``select`` is time the loop waited (for the
database thread, mostly). cProfile slows Python code about twofold, so
compare rankings and shares rather than absolute times.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

#: The checkout whose code this file profiles (another revision's, in a --compare child).
ROOT = Path(__file__).resolve().parent.parent


async def _profiled(scenario: str, count: int | None) -> tuple[dict[str, Any], pstats.Stats]:
    from aiobamboo.engine import Settings
    from aiobamboo_sqlite import SQLiteRuntime

    from .scenarios import SCENARIOS, library

    options = {"count": count} if count is not None and scenario == "S5" else {}
    with tempfile.TemporaryDirectory() as tmp:
        async with SQLiteRuntime(
            os.path.join(tmp, "profile.db"),
            components=library,
            settings=Settings(rerun_limit=10_000),
        ) as runtime:
            await SCENARIOS[scenario](runtime, **options)
            profile = cProfile.Profile()
            profile.enable()
            result = await SCENARIOS[scenario](runtime, **options)
            profile.disable()
    return result, pstats.Stats(profile)


def _where(func: tuple[str, int, str]) -> str:
    filename, line, name = func
    if filename == "~":
        return name  # a built-in
    for prefix in (str(ROOT) + os.sep, os.path.dirname(os.__file__) + os.sep):
        if filename.startswith(prefix):
            filename = filename[len(prefix) :]
    parts = Path(filename).parts
    if "site-packages" in parts:
        filename = os.path.join(*parts[parts.index("site-packages") + 1 :])
    elif len(parts) > 3 and not filename.startswith(("aiobamboo", "runtimes", "benchmarks")):
        filename = os.path.join(*parts[-2:])
    return f"{filename}:{line}({name})"


def _child(scenario: str, count: int | None, top: int) -> dict[str, Any]:
    result, stats = asyncio.run(_profiled(scenario, count))
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in raw.values())
    ranked = sorted(raw.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return {
        "seconds": result["seconds"],
        "profiled_s": total,
        "top": [
            {"function": _where(func), "calls": entry[1], "own_s": entry[2], "cum_s": entry[3]}
            for func, entry in ranked
        ],
    }


def _run(scenario: str, count: int | None, top: int, tree: Path | None) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.profile", "--child", scenario, "--top", str(top)]
    if count is not None:
        command += ["--count", str(count)]
    env = None
    if tree is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tree), str(tree / "runtimes")])}
        # The revision may predate this script: run this one against its code.
        (tree / "benchmarks" / "profile.py").write_text(Path(__file__).read_text())
    out = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=tree or ROOT, env=env
    )
    if out.returncode != 0:
        raise SystemExit(f"profiling {scenario} failed:\n{out.stderr[-4000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _print(title: str, figures: dict[str, Any]) -> None:
    print(
        f"{title}: {figures['seconds']:.3f} s run time under the profiler; "
        f"{figures['profiled_s']:.3f} s of own time profiled"
    )
    print(f"  {'own %':>6} {'own s':>7} {'calls':>8}  function")
    for row in figures["top"]:
        share = 100 * row["own_s"] / figures["profiled_s"]
        print(f"  {share:6.1f} {row['own_s']:7.3f} {row['calls']:8}  {row['function']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("scenarios", nargs="*", default=["S1", "S4", "S5"])
    parser.add_argument("--count", type=int, default=3000, help="S5's pipelines (default 3,000)")
    parser.add_argument("--top", type=int, default=10)
    parser.add_argument("--compare", help="a git revision profiled the same way, shown first")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child, args.count, args.top)))
        return 0
    from .run import checkout

    with tempfile.TemporaryDirectory() as tmp:
        base = checkout(args.compare, Path(tmp)) if args.compare else None
        for scenario in args.scenarios:
            if base is not None:
                _print(f"{scenario} at {args.compare}", _run(scenario, args.count, args.top, base))
            _print(f"{scenario} here", _run(scenario, args.count, args.top, None))
            print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
