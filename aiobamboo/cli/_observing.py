"""Logging and metrics options of the long-running commands (``worker``, ``serve``)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ._common import EXIT_USAGE, LOG_ENV, CliError

LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]


def add_observing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--log-level",
        default=None,
        type=str.upper,
        choices=LEVELS,
        help=f"log records at this level and above (default: ${LOG_ENV}, else INFO)",
    )
    parser.add_argument(
        "--log-format",
        default="text",
        choices=["text", "json"],
        help="one text or JSON line per record, on stderr (default: %(default)s)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics at http://ADDR:PORT/metrics (needs the metrics extra)",
    )
    parser.add_argument(
        "--metrics-addr",
        default="0.0.0.0",
        metavar="ADDR",
        help="address the metrics server listens on (default: %(default)s)",
    )


def configure_observing(args: argparse.Namespace) -> Any:
    """Set up logging as asked; start the metrics server if asked, and return its observer."""
    from ..observe.logs import configure_logging

    level = args.log_level or os.environ.get(LOG_ENV, "").upper()
    configure_logging(level if level in LEVELS else "INFO", args.log_format)
    if args.metrics_port is None:
        return None
    try:
        from ..observe.metrics import PrometheusObserver, serve_metrics
    except ImportError as exc:
        raise CliError(
            f"--metrics-port needs the metrics extra (pip install 'aiobamboo[metrics]'): {exc}",
            EXIT_USAGE,
        ) from exc
    try:
        serve_metrics(args.metrics_port, args.metrics_addr)
    except OSError as exc:
        raise CliError(
            f"cannot serve metrics on {args.metrics_addr}:{args.metrics_port}: {exc}", EXIT_USAGE
        ) from exc
    return PrometheusObserver()
