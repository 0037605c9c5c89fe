"""JSON for the HTTP API: datetimes as ISO 8601, everything else as the codec stored it."""

from __future__ import annotations

import datetime as dt
import json
import math
from typing import Any

__all__ = ["dumps", "json_default", "json_dumps"]


def json_default(value: Any) -> Any:
    """For ``json.dumps(default=...)``: datetimes and dates in ISO 8601, others as text."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; a NaN or infinity (JSON has none) is written as null."""
    try:
        text = json.dumps(
            value, default=json_default, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
    except ValueError:
        text = json.dumps(
            _no_nan(value), default=json_default, ensure_ascii=False, separators=(",", ":")
        )
    return text.encode("utf-8")


def _no_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(v) for v in value]
    return value


def json_dumps(value: Any) -> str:
    """JSON text with datetimes in ISO 8601: ``web.json_response(data, dumps=json_dumps)``."""
    return dumps(value).decode("utf-8")
