"""``aiobamboo status``, ``list`` and ``history``: reading pipelines."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import anyio

from .. import api
from ..host import Engine
from ._common import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    CliError,
    add_database_options,
    duration,
    local_time,
    parse_when,
    print_json,
    session,
    table,
    unwrap,
)
from ._draw import draw_tree, is_over


def add_parsers(commands: Any) -> None:
    status = commands.add_parser(
        "status",
        help="draw a pipeline's state tree",
        description="Draw the state tree of a pipeline: every node reached, its state and times.",
    )
    status.add_argument("pipeline_id", metavar="ID", help="the root pipeline id")
    status.add_argument(
        "--watch", action="store_true", help="redraw as it changes, until the pipeline ends"
    )
    status.add_argument(
        "--interval", type=float, default=0.5, help="seconds between redraws (default: 0.5)"
    )
    add_database_options(status)
    status.set_defaults(handler=handle_status)

    listing = commands.add_parser(
        "list",
        help="list pipelines, newest first",
        description="List root pipelines, newest first, a page at a time.",
    )
    listing.add_argument("--state", help="only pipelines whose root is in this state")
    listing.add_argument(
        "--since", metavar="WHEN", help="created at or after WHEN (7d, 12h, an ISO 8601 date)"
    )
    listing.add_argument("--until", metavar="WHEN", help="created before WHEN")
    listing.add_argument("--limit", type=int, default=50, help="pipelines a page (default: 50)")
    listing.add_argument("--cursor", help="the page after the one that printed this cursor")
    listing.add_argument("--all", action="store_true", help="every page, not only the first")
    add_database_options(listing)
    listing.set_defaults(handler=handle_list)

    history = commands.add_parser(
        "history",
        help="a node's earlier attempts",
        description="The earlier attempts of a node (retries, loops), oldest first.",
    )
    history.add_argument("node_id", metavar="NODE_ID")
    history.add_argument("--loop", type=int, default=-1, help="one loop only (default: every)")
    history.add_argument(
        "--full", action="store_true", help="with each attempt's inputs and outputs"
    )
    add_database_options(history)
    history.set_defaults(handler=handle_history)

    explain = commands.add_parser(
        "explain",
        help="why a pipeline is not moving, and what would unblock it",
        description=(
            "What each process of a pipeline waits on (a callback, a poll, a failed node, "
            "a pause, a converge gateway) and the operations that would unblock it."
        ),
    )
    explain.add_argument("pipeline_id", metavar="ID", help="the pipeline, or any node of it")
    add_database_options(explain)
    explain.set_defaults(handler=handle_explain)


async def _tree(runtime: Engine, pipeline_id: str) -> dict[str, Any]:
    """The state tree; ``{}`` for a pipeline stored but not started by a worker yet."""
    tree = unwrap(await api.get_pipeline_states(runtime, pipeline_id, False, with_names=True))
    if not tree and not (await api.get_data(runtime, pipeline_id)).result:
        raise CliError(f"pipeline {pipeline_id} does not exist", EXIT_NOT_FOUND)
    return tree or {}


def _drawn(tree: dict[str, Any], pipeline_id: str) -> str:
    if not tree:
        return f"pipeline {pipeline_id} is stored; no worker has started it yet"
    return draw_tree(tree)


async def handle_status(args: argparse.Namespace) -> int:
    async with session(args) as runtime:
        tree = await _tree(runtime, args.pipeline_id)
        if not args.watch:
            if args.json:
                print_json(tree)
            else:
                print(_drawn(tree, args.pipeline_id))
            return EXIT_OK
        clear = sys.stdout.isatty() and not args.json
        last = ""
        while True:
            shown = _drawn(tree, args.pipeline_id) if not args.json else repr(tree)
            if shown != last:
                if args.json:
                    print_json(tree)
                elif clear:
                    print("\x1b[H\x1b[J" + shown, flush=True)
                else:
                    print(shown + "\n", flush=True)
                last = shown
            if tree and is_over(tree):
                return EXIT_OK
            await anyio.sleep(args.interval)
            tree = await _tree(runtime, args.pipeline_id)


async def handle_list(args: argparse.Namespace) -> int:
    since = parse_when(args.since, "--since") if args.since else None
    until = parse_when(args.until, "--until") if args.until else None
    cursor = args.cursor
    pipelines: list[dict[str, Any]] = []
    async with session(args) as runtime:
        while True:
            page = unwrap(
                await api.list_pipelines(
                    runtime,
                    state=args.state,
                    created_after=since,
                    created_before=until,
                    limit=args.limit,
                    cursor=cursor,
                )
            )
            assert page is not None
            pipelines.extend(page["pipelines"])
            cursor = page["cursor"]
            if cursor is None or not args.all:
                break
    if args.json:
        print_json({"pipelines": pipelines, "cursor": cursor})
        return EXIT_OK
    rows = [
        [
            str(p["state"]),
            p["name"] or "-",
            local_time(p["created_time"], date=True),
            duration(p["started_time"], p["archived_time"]),
            p["id"],
        ]
        for p in pipelines
    ]
    if rows:
        print(table(rows, ["STATE", "NAME", "CREATED", "TOOK", "ID"]))
    else:
        print("no pipelines")
    if cursor is not None:
        print(f"more: --cursor {cursor}", file=sys.stderr)
    return EXIT_OK


async def handle_history(args: argparse.Namespace) -> int:
    async with session(args) as runtime:
        call = api.get_node_histories if args.full or args.json else api.get_node_short_histories
        entries = unwrap(await call(runtime, args.node_id, args.loop)) or []
    if args.json:
        print_json(entries)
        return EXIT_OK
    if not entries:
        print(f"node {args.node_id} has no earlier attempts")
        return EXIT_OK
    rows = [
        [
            str(e["loop"]),
            str(e["retry"]),
            "yes" if e["skip"] else "",
            local_time(e["started_time"], date=True),
            duration(e["started_time"], e["archived_time"]),
            e["version"],
        ]
        for e in entries
    ]
    print(table(rows, ["LOOP", "RETRY", "SKIPPED", "STARTED", "TOOK", "VERSION"]))
    if args.full:
        for e in entries:
            print(f"\n{e['version']}: inputs {e['inputs']!r}\n  outputs {e['outputs']!r}")
    return EXIT_OK


async def handle_explain(args: argparse.Namespace) -> int:
    async with session(args) as runtime:
        found = unwrap(await api.explain(runtime, args.pipeline_id)) or {}
    if args.json:
        print_json(found)
        return EXIT_OK
    print(found.get("summary", ""))
    for wait in found.get("waits", []):
        since = f" since {local_time(wait['since'], date=True)}" if wait.get("since") else ""
        print(f"\n- {wait['kind'].replace('_', ' ')} at {wait['node_id']}{since}")
        if wait.get("detail"):
            print(f"  {wait['detail']}")
        for way in wait.get("unblock", []):
            print(f"  unblock: {way['call']}")
    return EXIT_OK
