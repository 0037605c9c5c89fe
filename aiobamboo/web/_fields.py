"""Request bodies and query parameters: one declaration checks them and describes them.

A :class:`Field` list is both the check of a JSON body (a malformed one is
refused with 422 naming the field) and its schema in the OpenAPI description,
so the two cannot drift apart.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ._http import HttpError

__all__ = ["Field", "Param", "body_schema", "parse_body", "parse_query"]

_SCHEMAS: dict[str, dict[str, Any]] = {
    "object": {"type": "object", "additionalProperties": True},
    "string": {"type": "string"},
    "boolean": {"type": "boolean"},
    "integer": {"type": "integer"},
    "strings": {"type": "array", "items": {"type": "string"}},
    "any": {},
    "time": {"type": "string", "format": "date-time"},
}

_NAMES = {
    "object": "a JSON object",
    "string": "a string",
    "boolean": "true or false",
    "integer": "an integer",
    "strings": "a list of strings",
    "time": "an ISO 8601 date and time with a zone, or POSIX seconds",
}


@attrs.frozen
class Field:
    """A member of a JSON request body."""

    name: str
    kind: str
    required: bool = False
    description: str = ""


@attrs.frozen
class Param:
    """A query parameter."""

    name: str
    kind: str
    description: str = ""


def _fits(kind: str, value: Any) -> bool:
    if kind == "any":
        return True
    if kind == "object":
        return isinstance(value, dict)
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "strings":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    raise AssertionError(kind)


def decode_json(body: bytes) -> Any:
    """The body's JSON value (None for an empty body); 422 when it is not JSON."""
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise HttpError(422, f"the body is not valid JSON: {exc}", field="body") from None


def parse_body(body: bytes, fields: Sequence[Field]) -> dict[str, Any]:
    """The body's members named by ``fields``; unknown members and wrong types are 422."""
    value = decode_json(body)
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise HttpError(422, "the body must be a JSON object", field="body")
    known = {f.name: f for f in fields}
    for name in value:
        if name not in known:
            raise HttpError(422, f"unknown field {name!r:.100}", field=name[:100])
    for field in fields:
        if field.name not in value:
            if field.required:
                raise HttpError(422, f"{field.name} is required", field=field.name)
            continue
        if field.kind != "any" and value[field.name] is None and not field.required:
            continue  # null stands for "not given"
        if not _fits(field.kind, value[field.name]):
            raise HttpError(422, f"{field.name} must be {_NAMES[field.kind]}", field=field.name)
    return {k: v for k, v in value.items() if v is not None or known[k].kind == "any"}


def _parse_time(name: str, text: str) -> dt.datetime:
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            try:
                return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
            except (OverflowError, OSError, ValueError):
                pass
        raise HttpError(422, f"{name} is out of range", field=name)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise HttpError(422, f"{name} must be {_NAMES['time']}", field=name) from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise HttpError(
            422, f"{name} must name its time zone (for example 2026-01-31T12:00:00Z)", field=name
        )
    return when


def parse_query(query: Mapping[str, str], params: Sequence[Param]) -> dict[str, Any]:
    """The query's parameters named by ``params``, converted; a malformed one is 422."""
    parsed: dict[str, Any] = {}
    for param in params:
        text = query.get(param.name)
        if text is None or text == "":
            continue
        if param.kind == "time":
            parsed[param.name] = _parse_time(param.name, text)
        elif param.kind == "integer":
            try:
                parsed[param.name] = int(text)
            except ValueError:
                raise HttpError(422, f"{param.name} must be an integer", field=param.name) from None
        else:
            parsed[param.name] = text
    return parsed


def body_schema(fields: Sequence[Field]) -> dict[str, Any]:
    properties = {}
    for field in fields:
        schema = dict(_SCHEMAS[field.kind])
        if field.description:
            schema["description"] = field.description
        properties[field.name] = schema
    schema_: dict[str, Any] = {
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    required = [f.name for f in fields if f.required]
    if required:
        schema_["required"] = required
    return schema_


def param_schema(param: Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": "query",
        "required": False,
        "description": param.description,
        "schema": _SCHEMAS[param.kind],
    }
