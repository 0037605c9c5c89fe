"""The value codec: what inputs, outputs and context values may hold, and how they are stored.

Values are JSON types plus ``datetime``, ``date``, ``Decimal`` and ``tuple``, at
any depth. They are stored as JSON text; the four extra types, dicts with
non-string keys, and dicts that happen to use the tag key are wrapped in a
one-key object ``{"__aiobamboo__": [kind, payload]}``:

- ``datetime``: ISO 8601; a naive datetime stays naive, an aware one keeps its offset;
- ``date``: ISO 8601;
- ``Decimal``: its exact digits as a string;
- ``tuple``: a list of encoded items;
- a dict with non-string keys (int, float, bool, None): a list of ``[key, value]`` pairs.

Anything else (sets, objects, bytes) raises :class:`ValueCodecError` naming the
path of the offending value. The original pickles such values; aiobamboo never does.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from decimal import Decimal
from typing import Any

from .exceptions import ValueCodecError

__all__ = ["check", "decode", "dumps", "encode", "loads"]

TAG = "__aiobamboo__"
_SCALARS = (str, int, float, bool, type(None))


def encode(value: Any, path: str = "value") -> Any:
    """Turn ``value`` into plain JSON data, or raise :class:`ValueCodecError`."""
    if isinstance(value, _SCALARS):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueCodecError(f"{path}: {value!r} is not a finite number")
        return value
    if isinstance(value, dict):
        if all(type(k) is str for k in value) and TAG not in value:
            return {k: encode(v, f"{path}.{k}") for k, v in value.items()}
        items = []
        for k, v in value.items():
            if not isinstance(k, _SCALARS):
                raise ValueCodecError(f"{path}: dict key {k!r} of type {type(k).__name__}")
            items.append([k, encode(v, f"{path}[{k!r}]")])
        return {TAG: ["dict", items]}
    if isinstance(value, list):
        return [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return {TAG: ["tuple", [encode(v, f"{path}[{i}]") for i, v in enumerate(value)]]}
    if isinstance(value, _dt.datetime):
        return {TAG: ["datetime", value.isoformat()]}
    if isinstance(value, _dt.date):
        return {TAG: ["date", value.isoformat()]}
    if isinstance(value, Decimal):
        return {TAG: ["decimal", str(value)]}
    raise ValueCodecError(
        f"{path}: values of type {type(value).__name__} cannot be stored "
        "(allowed: JSON types, datetime, date, Decimal, tuple)"
    )


def decode(data: Any) -> Any:
    """Invert :func:`encode`."""
    if isinstance(data, list):
        return [decode(v) for v in data]
    if not isinstance(data, dict):
        return data
    tagged = data.get(TAG) if len(data) == 1 else None
    if tagged is None:
        return {k: decode(v) for k, v in data.items()}
    kind, payload = tagged
    if kind == "tuple":
        return tuple(decode(v) for v in payload)
    if kind == "datetime":
        return _dt.datetime.fromisoformat(payload)
    if kind == "date":
        return _dt.date.fromisoformat(payload)
    if kind == "decimal":
        return Decimal(payload)
    if kind == "dict":
        return {k: decode(v) for k, v in payload}
    raise ValueCodecError(f"unknown codec tag {kind!r}")


def _plain(value: Any) -> bool:
    """Whether ``value`` is JSON as it is (no tags needed): the common case, checked fast."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is int or kind is bool or item is None:
            continue
        if kind is float:
            if not math.isfinite(item):
                return False
        elif kind is dict:
            if TAG in item:
                return False
            for key in item:
                if type(key) is not str:
                    return False
            stack.extend(item.values())
        elif kind is list:
            stack.extend(item)
        else:
            return False
    return True


def dumps(value: Any, path: str = "value") -> str:
    """Encode to JSON text."""
    if _plain(value):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(encode(value, path), ensure_ascii=False, separators=(",", ":"))


def loads(text: str | None) -> Any:
    """Decode JSON text written by :func:`dumps` (``None`` stays ``None``)."""
    if text is None:
        return None
    data = json.loads(text)
    # Only tagged values need a walk; a text without the tag has none.
    return decode(data) if TAG in text else data


def check(value: Any, path: str = "value") -> None:
    """Raise :class:`ValueCodecError` if ``value`` cannot be stored."""
    encode(value, path)
