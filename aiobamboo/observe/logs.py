"""Logging set-up for programs that run the engine (``aiobamboo worker``).

The engine's loggers (``docs/observability.md`` lists them) are plain
:mod:`logging` loggers under ``aiobamboo``: a program that configures logging
its own way needs nothing from here.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import sys
from typing import Any, Literal, TextIO

__all__ = ["LOG_FORMATS", "JSONFormatter", "configure_logging"]

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"

# What every LogRecord has; whatever else a record carries came through ``extra=``.
_STANDARD = frozenset(logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``message``, the
    fields passed with ``extra=`` (``pipeline_id``, ``node_id``, ...) and
    ``exc_info`` when there is an exception. Values JSON cannot hold are written
    as their ``repr``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _dt.datetime.fromtimestamp(record.created, tz=_dt.UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and key not in entry:
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=repr, ensure_ascii=False)


def configure_logging(
    level: int | str = "INFO", fmt: LogFormat = "text", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record at ``level`` or above to ``stream`` (stderr), as text or JSON.

    Replaces the root logger's handlers, so calling it again reconfigures;
    returns the handler installed. ``level`` is a name (``DEBUG``, ...) or a
    number; an unknown name or format raises :class:`ValueError`.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, got {fmt!r}")
    if isinstance(level, str):
        named = logging.getLevelName(level.upper())
        if not isinstance(named, int):
            raise ValueError(f"unknown log level {level!r}")
        level = named
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
