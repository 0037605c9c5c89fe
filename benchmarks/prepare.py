"""What preparing one tree costs before it is stored: validation, the stored JSON, the spec.

    python -m benchmarks.prepare                         # this checkout, 7 rounds
    python -m benchmarks.prepare --baseline DIR          # A/B against another checkout

``run_pipeline`` validates and processes each tree, encodes it for storage and
reads it into a spec (``_prepare`` in the scheduler); for trees of up to a few
hundred nodes this runs on the event loop, so it is paid by every start. The
shapes: the three-node tree of S4, the 17-node tree of S2 (gateways and a
sub-process), a tree shaped like a bk-sops task (about 100 nodes: stages of
activities with several rendered inputs, exclusive and parallel blocks,
sub-processes, node outputs in the context) and the 1,000-activity chain of S1.

Prints microseconds per tree for each phase: in each round the fastest of a
few batches, then the median over ``--rounds`` rounds; total is the sum of
the three phases. With ``--baseline DIR``, rounds alternate between child processes
importing ``aiobamboo`` from DIR and from this checkout, so that both are
measured under the same load; DIR is a checkout (or an exported tree) of
another commit.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Trees prepared per round, per shape: each round takes a few tens of milliseconds.
_COPIES = {"3 nodes": 400, "17 nodes": 100, "bk-sops ~100": 20, "chain 1,000": 3}
PHASES = ("validate", "dumps", "parse", "total")
#: Batches per round; a round keeps each phase's fastest batch.
_BATCHES = 3


def _bk_sops_like() -> dict[str, Any]:
    """About 100 nodes as bk-sops writes them: stages of activities with rendered inputs."""
    from aiobamboo.builder import (
        ConvergeGateway,
        Data,
        EmptyEndEvent,
        EmptyStartEvent,
        ExclusiveGateway,
        NodeOutput,
        ParallelGateway,
        Params,
        ServiceActivity,
        SubProcess,
        Var,
        build_tree,
    )

    def act(n: int) -> ServiceActivity:
        node = ServiceActivity(component_code="bench_noop", name=f"step {n}", skippable=True)
        inputs = node.component.inputs
        inputs.biz_cc_id = Var(type=Var.SPLICE, value="${biz_cc_id}")
        inputs.job_script = Var(type=Var.SPLICE, value=f"echo ${{host}} {n} && sleep 0")
        inputs.job_ip_list = Var(type=Var.SPLICE, value="${ip_list}")
        inputs.job_timeout = Var(type=Var.PLAIN, value=600)
        inputs.job_account = Var(type=Var.PLAIN, value="root")
        inputs.job_params = Var(type=Var.PLAIN, value={"retry": 1, "notes": ["a", "b"]})
        return node

    def chain(first: Any, count: int, base: int) -> Any:
        node = first
        for i in range(count):
            node = node.extend(act(base + i))
        return node

    def block(node: Any, base: int, parallel: bool, width: int, depth: int) -> Any:
        """A gateway, ``width`` branches of ``depth`` activities, and its converge."""
        if parallel:
            gateway: Any = ParallelGateway()
        else:
            gateway = ExclusiveGateway(
                conditions={i: f'"${{mode}}" == "m{i}"' for i in range(width)}
            )
        node = node.extend(gateway)
        ends = [
            chain(gateway.extend(act(base + b * 10)), depth - 1, base + b * 10 + 1)
            for b in range(width)
        ]
        converge = ConvergeGateway()
        for end in ends:
            end.extend(converge)
        return converge

    def sub(base: int) -> SubProcess:
        start = EmptyStartEvent()
        node = chain(start, 4, base)
        node = block(node, base + 10, True, 3, 2)
        node = chain(node, 3, base + 50)
        node.extend(EmptyEndEvent())
        data = Data(
            inputs={
                "${biz_cc_id}": Var(type=Var.PLAIN, value=""),
                "${ip_list}": Var(type=Var.PLAIN, value=""),
                "${host}": Var(type=Var.PLAIN, value="localhost"),
                "${mode}": Var(type=Var.PLAIN, value="m0"),
            }
        )
        params = Params(
            {
                "${biz_cc_id}": Var(type=Var.SPLICE, value="${biz_cc_id}"),
                "${ip_list}": Var(type=Var.SPLICE, value="${ip_list}"),
            }
        )
        return SubProcess(start=start, data=data, params=params)

    start = EmptyStartEvent()
    first = act(0)
    node = chain(start.extend(first), 9, 1)
    node = block(node, 100, False, 3, 4)
    node = node.extend(sub(200))
    node = chain(node, 8, 300)
    node = block(node, 400, True, 4, 3)
    node = node.extend(sub(500))
    node = block(node, 600, False, 2, 3)
    node = chain(node, 10, 700)
    node.extend(EmptyEndEvent())
    inputs: dict[str, Any] = {
        "${biz_cc_id}": Var(type=Var.PLAIN, value=2),
        "${ip_list}": Var(type=Var.PLAIN, value="10.0.0.1,10.0.0.2"),
        "${host}": Var(type=Var.SPLICE, value="${ip_list}"),
        "${mode}": Var(type=Var.PLAIN, value="m1"),
        "${first_out}": NodeOutput(type=Var.PLAIN, source_act=first.id, source_key="ok"),
    }
    for i in range(12):
        inputs[f"${{const_{i}}}"] = Var(type=Var.PLAIN, value=f"value {i}")
    return build_tree(start, data=Data(inputs=inputs, outputs=["${first_out}"]))


def _shapes() -> dict[str, dict[str, Any]]:
    from aiobamboo import bench

    return {
        "3 nodes": bench.single()[0],
        "17 nodes": bench.seventeen()[0],
        "bk-sops ~100": _bk_sops_like(),
        "chain 1,000": bench.chain(1000)[0],
    }


def _time(step: Callable[[Any], Any], items: list[Any]) -> tuple[float, list[Any]]:
    began = time.perf_counter()
    results = [step(item) for item in items]
    return time.perf_counter() - began, results


def measure(rounds: int) -> dict[str, dict[str, list[float]]]:
    """Microseconds per tree, per shape and phase, one figure per round."""
    from aiobamboo import codec, validator
    from aiobamboo.engine._spec import parse_tree

    figures: dict[str, dict[str, list[float]]] = {}
    for name, tree in _shapes().items():
        text = json.dumps(tree)
        copies = _COPIES[name]
        per = figures[name] = {phase: [] for phase in PHASES}
        for _ in range(rounds):
            # The best of a few batches: other processes' load only ever adds time.
            best = dict.fromkeys(PHASES, float("inf"))
            for _ in range(_BATCHES):
                trees = [json.loads(text) for _ in range(copies)]
                validate, _ = _time(validator.validate_and_process_pipeline, trees)
                dumps, _ = _time(lambda t: codec.dumps(t, "pipeline"), trees)
                parse, _ = _time(parse_tree, trees)
                for phase, seconds in zip(PHASES, (validate, dumps, parse), strict=False):
                    best[phase] = min(best[phase], seconds)
            best["total"] = best["validate"] + best["dumps"] + best["parse"]
            for phase in PHASES:
                per[phase].append(best[phase] / copies * 1e6)
    return figures


def _table(columns: dict[str, dict[str, dict[str, list[float]]]]) -> str:
    labels = list(columns)
    head = f"{'tree':<14} {'phase':<9}" + "".join(f" {label:>12}" for label in labels)
    if len(labels) == 2:
        head += f" {'ratio':>7}"
    lines = [head, "-" * len(head)]
    first = columns[labels[0]]
    for name in first:
        for phase in PHASES:
            medians = [statistics.median(columns[label][name][phase]) for label in labels]
            line = f"{name:<14} {phase:<9}" + "".join(f" {m:>12.1f}" for m in medians)
            if len(labels) == 2:
                line += f" {medians[0] / medians[1]:>6.2f}x"
            lines.append(line)
    return "\n".join(lines)


def _child(source: str, rounds: int) -> dict[str, dict[str, list[float]]]:
    env = dict(os.environ, PYTHONPATH=source)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(rounds)],
        env=env,
        cwd=source,
        check=True,
        capture_output=True,
        text=True,
    )
    if not out.stderr.startswith(str(Path(source).resolve())):
        raise SystemExit(f"{source} does not provide aiobamboo: {out.stderr}")
    result: dict[str, dict[str, list[float]]] = json.loads(out.stdout)
    return result


# Runs measure() of this file against the aiobamboo that PYTHONPATH gives.
_CHILD = (
    "import json, runpy, sys, aiobamboo\n"
    "print(aiobamboo.__file__, file=sys.stderr)\n"
    f"m = runpy.run_path({str(Path(__file__).resolve())!r})\n"
    "print(json.dumps(m['measure'](int(sys.argv[1]))))\n"
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--baseline", help="a checkout of another commit to compare with")
    args = parser.parse_args(argv)
    if args.baseline is None:
        print(_table({"us/tree": measure(args.rounds)}))
        return
    here = str(Path(__file__).resolve().parent.parent)
    columns: dict[str, dict[str, dict[str, list[float]]]] = {"baseline": {}, "this": {}}
    # Alternate one round at a time so that both see the same load.
    for _ in range(args.rounds):
        for label, source in (("baseline", args.baseline), ("this", here)):
            result = _child(source, 1)
            for name, phases in result.items():
                shape = columns[label].setdefault(name, {phase: [] for phase in PHASES})
                for phase, values in phases.items():
                    shape[phase].extend(values)
    print(_table(columns))


if __name__ == "__main__":
    main()
