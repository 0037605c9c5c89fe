"""``aiobamboo pause|resume|revoke ID`` and ``retry|skip|forced-fail|callback NODE_ID``."""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from .. import api
from ..host import Engine
from ._common import (
    EXIT_OK,
    add_database_options,
    add_import_option,
    import_modules,
    parse_json_argument,
    print_json,
    session,
    settle,
    unwrap,
)

Operation = Callable[[Engine, argparse.Namespace], Awaitable[api.EngineAPIResult[Any]]]

_PIPELINE_OPERATIONS: dict[str, tuple[str, Operation]] = {
    "pause": (
        "pause a pipeline: running nodes finish, nothing new starts",
        lambda rt, a: api.pause_pipeline(rt, a.target),
    ),
    "resume": ("resume a paused pipeline", lambda rt, a: api.resume_pipeline(rt, a.target)),
    "revoke": (
        "revoke a pipeline: nothing of it runs again",
        lambda rt, a: api.revoke_pipeline(rt, a.target),
    ),
}

_NODE_OPERATIONS: dict[str, tuple[str, Operation]] = {
    "retry": (
        "run a FAILED node again",
        lambda rt, a: api.retry_node(rt, a.target, parse_json_argument(a.data, "--data")),
    ),
    "skip": ("mark a FAILED node FINISHED and go on", lambda rt, a: api.skip_node(rt, a.target)),
    "forced-fail": (
        "fail a RUNNING node now",
        lambda rt, a: api.forced_fail_activity(rt, a.target, a.message),
    ),
    "callback": (
        "send a callback to a node that waits for one",
        lambda rt, a: api.callback(
            rt, a.target, a.version, parse_json_argument(a.data, "callback data")
        ),
    ),
}


def add_parsers(commands: Any) -> None:
    for name, (text, _) in _PIPELINE_OPERATIONS.items():
        parser = commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        parser.add_argument("target", metavar="ID", help="the pipeline id")
        _common_options(parser)
    for name, (text, _) in _NODE_OPERATIONS.items():
        parser = commands.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        parser.add_argument("target", metavar="NODE_ID", help="the node id (see status)")
        if name == "retry":
            parser.add_argument(
                "--data", metavar="JSON", help="new inputs of the node, as a JSON object"
            )
        elif name == "forced-fail":
            parser.add_argument(
                "--message", default="forced fail from the command line", help="the failure text"
            )
        elif name == "callback":
            parser.add_argument(
                "--data",
                metavar="JSON",
                help="the callback data as JSON, or @FILE to read it (default: null)",
            )
            parser.add_argument(
                "--version", help="the attempt to call back (default: the current one)"
            )
        _common_options(parser)


def _common_options(parser: argparse.ArgumentParser) -> None:
    add_import_option(parser)
    parser.add_argument(
        "--embedded",
        action="store_true",
        help="carry the pipeline on in this process on Postgres too",
    )
    add_database_options(parser)
    parser.set_defaults(handler=handle_operation)


async def handle_operation(args: argparse.Namespace) -> int:
    operations = {**_PIPELINE_OPERATIONS, **_NODE_OPERATIONS}
    _, operate = operations[args.command]
    import_modules(args.imports)
    async with session(args, execute=True) as runtime:
        unwrap(await operate(runtime, args))
        # Without a worker, this process is one: it carries the pipeline on until it waits.
        await settle(runtime)
    if args.json:
        print_json({"command": args.command, "target": args.target, "result": True})
    else:
        print(f"{args.command} {args.target}: done")
    return EXIT_OK
