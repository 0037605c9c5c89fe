"""The aiobamboo command: run, inspect and operate pipelines from a shell.

Every command takes --db (a SQLite file or a postgresql:// DSN; default: the
AIOBAMBOO_DB environment variable, else ./aiobamboo.db) and most take --json.
Exit codes: 0 success, 1 refused (or run --wait ended otherwise than FINISHED),
2 bad arguments, 3 no such pipeline or node, 4 timed out, 5 database error,
130 interrupted, 141 the output was closed. AIOBAMBOO_LOG sets the level of
the engine's logs on stderr (default: ERROR; INFO for worker).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from .. import __version__
from ._common import (
    EXIT_CLOSED_PIPE,
    EXIT_INTERRUPTED,
    LOG_ENV,
    CliError,
)

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    from . import _admin, _bench, _inspect, _operate, _run, _serve

    parser = argparse.ArgumentParser(
        prog="aiobamboo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"aiobamboo {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _run.add_parser(commands)
    _inspect.add_parsers(commands)
    _operate.add_parsers(commands)
    _admin.add_parsers(commands)
    _bench.add_parser(commands)
    _serve.add_parser(commands)
    return parser


def _single(exc: BaseException) -> BaseException:
    """The one exception inside nested exception groups (task groups wrap what they raise)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _quiet_stdout() -> None:
    """After the reader of stdout went away: nothing more is written, not even at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def _configure_logging(command: str) -> None:
    """Engine logs on stderr from AIOBAMBOO_LOG's level (default: errors only; a worker: info)."""
    default = "INFO" if command in ("worker", "serve") else "ERROR"
    level = os.environ.get(LOG_ENV, default).upper()
    if level not in logging.getLevelNamesMapping():
        level = default
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Any = args.handler
    _configure_logging(args.command)
    try:
        return int(anyio.run(handler, args))
    except BaseException as raised:
        exc = _single(raised)
        if isinstance(exc, CliError):
            print(f"aiobamboo {args.command}: {exc}", file=sys.stderr)
            return exc.code
        if isinstance(exc, BrokenPipeError):
            _quiet_stdout()
            return EXIT_CLOSED_PIPE
        if isinstance(exc, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        raise


if __name__ == "__main__":
    sys.exit(main())
