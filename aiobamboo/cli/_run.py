"""``aiobamboo run``: start a pipeline from a file or a Python function, and follow it."""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import os
from typing import Any

import anyio

from .. import api, states
from ..host import Engine
from ._common import (
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    CliError,
    add_database_options,
    add_import_option,
    import_modules,
    print_json,
    session,
    settle,
    unwrap,
)


def add_parser(commands: Any) -> None:
    run = commands.add_parser(
        "run",
        help="start a pipeline from a JSON or YAML tree, or a Python function",
        description=(
            "Start a pipeline. FILE is a tree as JSON (.json) or YAML (.yaml, .yml; "
            "needs the yaml extra), or MODULE:FUNCTION, a function that returns a tree. "
            "Without --wait it prints the pipeline id once the pipeline is stored."
        ),
    )
    run.add_argument("file", metavar="FILE", help="tree.json, tree.yaml or module:function")
    add_import_option(run)
    run.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set the pipeline variable ${KEY} (a JSON value, else text; repeatable)",
    )
    run.add_argument("--wait", action="store_true", help="follow the pipeline until it rests")
    run.add_argument(
        "--timeout", type=float, default=None, help="give up waiting after this many seconds"
    )
    run.add_argument(
        "--embedded",
        action="store_true",
        help="run the pipeline in this process on Postgres too (SQLite does when no worker runs)",
    )
    add_database_options(run)
    run.set_defaults(handler=handle_run)


def load_tree(source: str) -> dict[str, Any]:
    """The tree in ``source``: a JSON or YAML file, or ``module:function``."""
    if os.path.exists(source) or source.endswith((".json", ".yaml", ".yml")):
        try:
            with open(source, encoding="utf-8") as file:
                text = file.read()
        except OSError as exc:
            raise CliError(f"cannot read {source}: {exc}", EXIT_USAGE) from exc
        if source.endswith((".yaml", ".yml")):
            tree = _load_yaml(source, text)
        else:
            try:
                tree = json.loads(text)
            except json.JSONDecodeError as exc:
                raise CliError(f"{source} is not valid JSON: {exc}", EXIT_USAGE) from exc
    else:
        tree = _call_builder(source)
    if not isinstance(tree, dict):
        raise CliError(
            f"{source} gives a {type(tree).__name__}, not a pipeline tree (a mapping)", EXIT_USAGE
        )
    return tree


def _load_yaml(source: str, text: str) -> Any:
    try:
        import yaml
    except ImportError:
        raise CliError(
            f"reading {source} needs PyYAML: install aiobamboo with the yaml extra",
            EXIT_USAGE,
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CliError(f"{source} is not valid YAML: {exc}", EXIT_USAGE) from exc


def _call_builder(source: str) -> Any:
    module_name, sep, function_name = source.partition(":")
    if not sep or not module_name or not function_name:
        raise CliError(f"{source} is neither a file nor module:function", EXIT_USAGE)
    import_modules([])  # the current directory is importable
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {module_name}: {exc}", EXIT_USAGE) from exc
    function = getattr(module, function_name, None)
    if not callable(function):
        raise CliError(f"{module_name} has no function {function_name}", EXIT_USAGE)
    return function()


def apply_data(tree: dict[str, Any], pairs: list[str]) -> None:
    """Set ``${key}`` of the tree's data to each plain value given as ``key=value``."""
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CliError(f"--data {pair!r}: expected KEY=VALUE", EXIT_USAGE)
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        name = key if key.startswith("${") else "${" + key + "}"
        data = tree.setdefault("data", {})
        if not isinstance(data, dict):
            raise CliError("the tree's data is not a mapping", EXIT_USAGE)
        data.setdefault("inputs", {})[name] = {"type": "plain", "value": value}


def _node_names(tree: dict[str, Any]) -> dict[str, tuple[str, str]]:
    names: dict[str, tuple[str, str]] = {tree.get("id", ""): (tree.get("name") or "", "Pipeline")}

    def walk(pipeline: dict[str, Any]) -> None:
        for key in ("start_event", "end_event"):
            node = pipeline.get(key) or {}
            names[node.get("id", "")] = (node.get("name") or "", node.get("type", ""))
        for group in ("activities", "gateways"):
            for node in (pipeline.get(group) or {}).values():
                names[node.get("id", "")] = (node.get("name") or "", node.get("type", ""))
                if node.get("type") == "SubProcess" and isinstance(node.get("pipeline"), dict):
                    walk(node["pipeline"])

    walk(tree)
    return names


async def follow(
    runtime: Engine,
    root_id: str,
    names: dict[str, tuple[str, str]],
    after: int,
    timeout: float | None,  # noqa: ASYNC109 - the command's option
    show: bool,
) -> tuple[str, str]:
    """Wait for the pipeline to rest, printing its committed changes as they come."""
    store = runtime.store
    cursor = after
    outcome: tuple[str, str] | None = None

    async def drain() -> None:
        nonlocal cursor
        for row in await store.read_events(cursor, root_id):
            cursor = row.id
            if show:
                print(_progress_line(row.kind, row.node_id, row.state, row.time, names), flush=True)

    async def wait() -> None:
        nonlocal outcome
        res = await api.wait_pipeline(runtime, root_id, timeout=timeout)
        data = unwrap(res)
        outcome = (str(data), res.message)
        tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait)
        while True:
            seen = store.events_seen
            await drain()
            await store.wait_for_events(seen, 0.2)
    await drain()
    assert outcome is not None
    return outcome


def _progress_line(
    kind: str, node_id: str, state: str, at: float, names: dict[str, tuple[str, str]]
) -> str:
    when = dt.datetime.fromtimestamp(at).strftime("%H:%M:%S")
    if kind != "state":
        return f"{when}  pipeline {kind.removeprefix('pipeline_')}"
    name, kind_of = names.get(node_id, ("", ""))
    label = name or kind_of or node_id
    return f"{when}  {label:<16} {kind_of:<22} {state}"


async def handle_run(args: argparse.Namespace) -> int:
    import_modules(args.imports)
    tree = load_tree(args.file)
    apply_data(tree, args.data)
    names = _node_names(tree)
    async with session(args, execute=True) as runtime:
        after = await runtime.store.last_event_id()
        unwrap(await api.run_pipeline(runtime, tree))
        root_id = str(tree["id"])
        if not args.wait:
            await settle(runtime)
            if args.json:
                print_json({"id": root_id})
            else:
                print(root_id)
            return EXIT_OK
        if not args.json:
            print(f"pipeline {root_id}", flush=True)
        state, message = await follow(runtime, root_id, names, after, args.timeout, not args.json)
        if args.json:
            print_json({"id": root_id, "state": state, "message": message})
        else:
            print(f"pipeline {root_id} {state}" + (f": {message}" if state != "FINISHED" else ""))
        return EXIT_OK if state == states.FINISHED else EXIT_REFUSED
