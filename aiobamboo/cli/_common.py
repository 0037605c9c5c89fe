"""What every command shares: the database, opening a runtime, output, exit codes."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

from .._gc import ENGINE_GC_THRESHOLD
from .._gc import tune_gc as tune_process_gc
from ..api import EngineAPIResult
from ..component import ComponentLibrary
from ..engine import Settings
from ..exceptions import (
    AiobambooError,
    ConfigurationError,
    NotFoundError,
    StorageError,
    WaitTimeoutError,
)
from ..host import Engine, open_url, scheme_of

T = TypeVar("T")

#: The environment variable naming the database when ``--db`` is not given.
DB_ENV = "AIOBAMBOO_DB"
#: The database when neither ``--db`` nor the environment names one: a file here.
DEFAULT_DB = "aiobamboo.db"

# Exit codes (docs/cli.md lists them for users).
#: The environment variable with the level of the engine's logs on stderr.
LOG_ENV = "AIOBAMBOO_LOG"
#: Set to ``default`` to keep Python's garbage collector settings in ``worker`` and ``serve``.
GC_ENV = "AIOBAMBOO_GC"
#: The youngest generation's threshold in ``worker`` and ``serve`` (Python's default: 700).
WORKER_GC_THRESHOLD = ENGINE_GC_THRESHOLD


def tune_gc() -> None:
    """:func:`aiobamboo.tune_gc` for the commands that own their process,
    unless ``AIOBAMBOO_GC=default`` keeps Python's settings."""
    if os.environ.get(GC_ENV, "").strip().lower() == "default":
        return
    tune_process_gc(WORKER_GC_THRESHOLD)


EXIT_OK = 0
EXIT_REFUSED = 1  # an operation was refused, or run --wait ended otherwise than FINISHED
EXIT_USAGE = 2  # bad arguments or input files (argparse uses 2 as well)
EXIT_NOT_FOUND = 3  # no such pipeline or node
EXIT_TIMEOUT = 4  # --timeout ran out
EXIT_DATABASE = 5  # the database cannot be opened or used
EXIT_INTERRUPTED = 130  # Ctrl-C
EXIT_CLOSED_PIPE = 141  # the output was closed (as for a process ended by SIGPIPE)


class CliError(Exception):
    """A failure the command reports as one line on stderr, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_REFUSED) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(exc: BaseException | None) -> int:
    if isinstance(exc, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(exc, WaitTimeoutError):
        return EXIT_TIMEOUT
    if isinstance(exc, StorageError | ConfigurationError):
        return EXIT_DATABASE
    return EXIT_REFUSED


def unwrap(res: EngineAPIResult[T]) -> T | None:
    """The result's data, or a CliError with its message and the matching exit code."""
    if not res.result:
        raise CliError(res.message, exit_code_for(res.exc))
    return res.data


def add_database_options(
    parser: argparse.ArgumentParser, *, json_output: bool = True, schema: str = "aiobamboo"
) -> None:
    parser.add_argument(
        "--db",
        default=None,
        help=f"a SQLite file or a postgresql:// DSN (default: ${DB_ENV}, else ./{DEFAULT_DB})",
    )
    parser.add_argument("--schema", default=schema, help="Postgres schema (default: %(default)s)")
    if json_output:
        parser.add_argument(
            "--json", action="store_true", help="print JSON for scripts instead of text"
        )


def add_import_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="module that defines the components (repeatable; the current directory is importable)",
    )


def database(args: argparse.Namespace) -> str:
    return str(args.db or os.environ.get(DB_ENV) or DEFAULT_DB)


def import_modules(names: Iterable[str]) -> None:
    """Import the user's modules, with the current directory importable (as uvicorn does)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    import importlib

    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise CliError(f"cannot import {name}: {exc}", EXIT_USAGE) from exc


def _missing_file(db: str) -> str | None:
    """The path of a SQLite database ``db`` names that does not exist, else None."""
    if scheme_of(db) != "sqlite":
        return None
    path = db.removeprefix("sqlite://")
    if path == ":memory:" or path.startswith("file:") or os.path.exists(path):
        return None
    return path


@asynccontextmanager
async def session(
    args: argparse.Namespace, *, execute: bool = False, create: bool = False
) -> AsyncIterator[Engine]:
    """An open runtime on the command's database.

    ``execute``: the command may run pipelines here. On a SQLite file that no
    worker holds, the runtime is then a worker (``runtime.worker`` is True)
    and the command carries the pipelines it touches on until they wait;
    otherwise (a worker holds the file, or Postgres without ``--embedded``)
    it is a client and the workers do the work. A SQLite file that does not
    exist is created only by commands that may run pipelines, or with ``create``.
    """
    db = database(args)
    missing = _missing_file(db)
    if missing is not None and not (execute or create):
        # A command that only reads or deletes does not make an empty database.
        raise CliError(
            f"there is no database at {missing} (name one with --db or ${DB_ENV})",
            EXIT_DATABASE,
        )
    library = ComponentLibrary.default
    embedded = execute and (getattr(args, "embedded", False) or scheme_of(db) == "sqlite")
    try:
        if embedded:
            # It drives only the pipelines this command starts or operates on:
            # the others may need components this process did not import.
            settings = Settings(claim_runs=False, park_after=None)
            runtime = open_url(
                db, worker=True, components=library, schema=args.schema, settings=settings
            )
            try:
                await runtime.__aenter__()
            except StorageError as exc:
                # The file's lock is held: a worker process runs its pipelines.
                if "in use by another worker" not in str(exc):
                    raise
            else:
                try:
                    yield runtime
                finally:
                    with anyio.CancelScope(shield=True):
                        await runtime.__aexit__(None, None, None)
                return
        async with open_url(db, worker=False, components=library, schema=args.schema) as client:
            yield client
    except (StorageError, ConfigurationError) as exc:
        raise CliError(f"{db}: {exc}", EXIT_DATABASE) from exc


async def settle(runtime: Engine, quiet: float = 0.5) -> None:
    """In a worker runtime, return once every pipeline it holds has rested ``quiet`` seconds.

    Then every pipeline this process took waits (for a callback, an operator,
    a later poll) or has ended.
    """
    scheduler = runtime.scheduler
    if not runtime.worker or scheduler is None:
        return
    quiet_since: float | None = None
    while True:
        now = anyio.current_time()
        if not scheduler.at_rest():
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= quiet:
            return
        await anyio.sleep(0.05)


# -- output -------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return str(value)


def print_json(value: Any) -> None:
    print(json.dumps(value, default=_json_default, ensure_ascii=False, indent=2))


def local_time(value: dt.datetime | None, *, date: bool = False) -> str:
    if value is None:
        return "-"
    shown = value.astimezone()
    return shown.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S")


def duration(start: dt.datetime | None, end: dt.datetime | None) -> str:
    if start is None:
        return ""
    seconds = ((end or dt.datetime.now(dt.UTC)) - start).total_seconds()
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def table(rows: list[list[str]], header: list[str]) -> str:
    """Columns padded to their widest cell; the last column is not padded."""
    every = [header, *rows]
    widths = [max(len(r[i]) for r in every) for i in range(len(header) - 1)]
    lines = []
    for row in every:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


# -- input --------------------------------------------------------------------------

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_when(text: str, what: str) -> dt.datetime:
    """``now``, an age (``30m``, ``12h``, ``7d``, ``2w``: that long ago) or an ISO 8601 date.

    A date or time without a zone is local time.
    """
    now = dt.datetime.now(dt.UTC)
    if text.strip().lower() == "now":
        return now
    match = _RELATIVE.match(text)
    if match:
        return now - dt.timedelta(seconds=float(match[1]) * _UNITS[match[2]])
    try:
        value = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise CliError(
            f"{what}: {text!r} is neither 'now', an age such as 7d, 12h or 30m, "
            "nor an ISO 8601 date such as 2024-05-01 or 2024-05-01T12:00:00+00:00",
            EXIT_USAGE,
        ) from None
    return value if value.tzinfo is not None else value.astimezone()


def parse_json_argument(text: str | None, what: str) -> Any:
    """A JSON value given inline, or read from a file as ``@path`` (``@-``: stdin)."""
    if text is None:
        return None
    source = text
    if text.startswith("@"):
        path = text[1:]
        try:
            source = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()
        except OSError as exc:
            raise CliError(f"{what}: cannot read {path}: {exc}", EXIT_USAGE) from exc
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise CliError(f"{what} is not valid JSON: {exc}", EXIT_USAGE) from exc


def describe(exc: AiobambooError) -> str:
    return f"{type(exc).__name__}: {exc}"
