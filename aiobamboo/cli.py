"""The ``aiobamboo`` command: ``demo`` and ``worker``."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from . import __version__


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aiobamboo", description=__doc__)
    parser.add_argument("--version", action="version", version=f"aiobamboo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="run a demo pipeline on an embedded SQLite file")
    demo.add_argument(
        "--db", default="aiobamboo-demo.db", help="SQLite file (default: %(default)s)"
    )

    worker = commands.add_parser("worker", help="run pipelines stored in a database")
    worker.add_argument("--db", required=True, help="postgresql://... DSN or a SQLite path")
    worker.add_argument(
        "--schema", default="aiobamboo", help="Postgres schema (default: %(default)s)"
    )
    worker.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="module that defines the components (repeatable)",
    )
    worker.add_argument(
        "--concurrency",
        type=int,
        default=10_000,
        help="pipelines held at once, waiting ones included (default: %(default)s)",
    )
    worker.add_argument(
        "--lease-seconds",
        type=float,
        default=15.0,
        help="how long a dead worker's pipelines wait before another takes them (Postgres)",
    )

    worker.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"],
        help="log records at this level and above (default: %(default)s)",
    )
    worker.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="one text or JSON line per record, on stderr (default: %(default)s)",
    )
    worker.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://ADDR:PORT/metrics (needs the metrics extra)",
    )
    worker.add_argument(
        "--metrics-addr",
        default="0.0.0.0",
        metavar="ADDR",
        help="address the metrics server listens on (default: %(default)s)",
    )

    args = parser.parse_args(argv)
    if args.command == "demo":
        from .demo import run_demo

        anyio.run(run_demo, args.db)
        return 0
    from .observe.logs import configure_logging

    configure_logging(args.log_level, args.log_format)
    args.observer = None
    if args.metrics_port is not None:
        try:
            from .observe.metrics import PrometheusObserver, serve_metrics
        except ImportError as exc:
            parser.error(f"--metrics-port needs the metrics extra (prometheus_client): {exc}")
        try:
            serve_metrics(args.metrics_port, args.metrics_addr)
        except OSError as exc:
            parser.error(f"cannot serve metrics on {args.metrics_addr}:{args.metrics_port}: {exc}")
        args.observer = PrometheusObserver()
    for module in args.imports:
        importlib.import_module(module)
    return anyio.run(_worker, args)


async def _worker(args: Any) -> int:
    from .worker import run_worker

    return await run_worker(
        args.db,
        schema=args.schema,
        concurrency=args.concurrency,
        lease_seconds=args.lease_seconds,
        observer=args.observer,
    )


if __name__ == "__main__":
    sys.exit(main())
