"""``aiobamboo purge``, ``migrate``, ``worker`` and ``demo``."""

from __future__ import annotations

import argparse
import os
import tempfile
from typing import Any

from .. import api
from ._common import (
    EXIT_OK,
    add_database_options,
    add_import_option,
    database,
    import_modules,
    parse_when,
    print_json,
    session,
    tune_gc,
    unwrap,
)
from ._observing import add_observing_options, configure_observing


def add_parsers(commands: Any) -> None:
    purge = commands.add_parser(
        "purge",
        help="delete pipelines that ended before a date",
        description=(
            "Delete the pipelines that finished or were revoked before WHEN, with all "
            "their data. Running, waiting and parked pipelines are never touched."
        ),
    )
    purge.add_argument(
        "--finished-before",
        required=True,
        metavar="WHEN",
        help="an age (7d, 12h, 30m), an ISO 8601 date (local time unless it names a zone) or now",
    )
    add_database_options(purge)
    purge.set_defaults(handler=handle_purge)

    migrate = commands.add_parser(
        "migrate",
        help="create or upgrade the database schema",
        description="Create the schema, or apply the migrations it lacks, and exit.",
    )
    add_database_options(migrate)
    migrate.set_defaults(handler=handle_migrate)

    worker = commands.add_parser(
        "worker",
        help="run the pipelines stored in a database",
        description="Run the pipelines stored in a database until SIGTERM or SIGINT.",
    )
    add_database_options(worker, json_output=False)
    add_import_option(worker)
    worker.add_argument(
        "--concurrency",
        type=int,
        default=10_000,
        help="pipelines held in memory at once (default: %(default)s)",
    )
    worker.add_argument(
        "--lease-seconds",
        type=float,
        default=15.0,
        help="how long a dead worker's pipelines wait before another takes them (Postgres)",
    )
    add_observing_options(worker)
    worker.set_defaults(handler=handle_worker)

    demo = commands.add_parser(
        "demo",
        help="run a demo pipeline on an embedded SQLite file",
        description=(
            "Run a pipeline with every kind of step. Without --db it uses a "
            "temporary file, removed at the end."
        ),
    )
    demo.add_argument("--db", default=None, help="keep the demo's SQLite file here")
    demo.set_defaults(handler=handle_demo)


async def handle_purge(args: argparse.Namespace) -> int:
    before = parse_when(args.finished_before, "--finished-before")
    async with session(args) as runtime:
        purged = unwrap(await api.purge_pipelines(runtime, before))
    if args.json:
        print_json({"purged": purged, "finished_before": before})
    else:
        noun = "pipeline" if purged == 1 else "pipelines"
        when = before.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        print(f"purged {purged} {noun} that ended before {when}")
    return EXIT_OK


async def handle_migrate(args: argparse.Namespace) -> int:
    async with session(args, create=True):
        pass  # opening a runtime applies the migrations it lacks, under a lock
    if args.json:
        print_json({"database": database(args), "migrated": True})
    else:
        print(f"{database(args)}: the schema is up to date")
    return EXIT_OK


async def handle_worker(args: argparse.Namespace) -> int:
    from ..worker import run_worker

    observer = configure_observing(args)
    import_modules(args.imports)
    tune_gc()
    return await run_worker(
        database(args),
        schema=args.schema,
        concurrency=args.concurrency,
        lease_seconds=args.lease_seconds,
        observer=observer,
    )


async def handle_demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    if args.db:
        await run_demo(args.db)
        return EXIT_OK
    with tempfile.TemporaryDirectory(prefix="aiobamboo-demo-") as folder:
        await run_demo(os.path.join(folder, "demo.db"), kept=False)
    return EXIT_OK
