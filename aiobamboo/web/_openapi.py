"""The OpenAPI 3.1 description of the HTTP API, made from the route table."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from .. import __version__
from ._fields import body_schema, param_schema

__all__ = ["describe"]

_ERROR = {
    "description": "",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "error": {"type": "string", "description": "why, in words"},
                    "field": {"type": "string", "description": "the malformed field (422)"},
                },
                "required": ["error"],
            }
        }
    },
}


def _error(description: str) -> dict[str, Any]:
    return {**_ERROR, "description": description}


def describe(routes: Sequence[Any]) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for route in routes:
        if not route.in_schema:
            continue
        operation: dict[str, Any] = {
            "operationId": route.name,
            "summary": route.summary,
            "tags": [route.tag],
        }
        parameters = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"{(\w+)}", route.path)
        ]
        parameters += [param_schema(p) for p in route.params]
        if route.name == "events":
            parameters.append(
                {
                    "name": "Last-Event-ID",
                    "in": "header",
                    "required": False,
                    "description": "resume after this event id",
                    "schema": {"type": "string"},
                }
            )
        if parameters:
            operation["parameters"] = parameters
        if route.body is not None:
            operation["requestBody"] = {
                "required": any(f.required for f in route.body),
                "content": {"application/json": {"schema": body_schema(route.body)}},
            }
        elif route.name == "signed_callback":
            operation["requestBody"] = {
                "required": False,
                "description": "the callback's data: any JSON value",
                "content": {"application/json": {"schema": {}}},
            }
        success: dict[str, Any] = {"description": "success"}
        if route.name == "events":
            success["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
        else:
            success["content"] = {"application/json": {"schema": {"type": "object"}}}
        responses: dict[str, Any] = {str(route.success): success}
        for status, description in route.responses.items():
            responses[str(status)] = _error(description)
        if route.body is not None or route.params:
            responses["422"] = _error("a malformed request; `field` names what is wrong")
        if route.mutating:
            responses["401"] = _error("the API token is missing or wrong")
            operation["security"] = [{"bearer": []}]
        operation["responses"] = responses
        paths.setdefault(route.path, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "aiobamboo",
            "version": __version__,
            "description": (
                "Run and operate aiobamboo pipelines. Times are ISO 8601. Mutating "
                "requests need `Authorization: Bearer <token>` when the server has one."
            ),
        },
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }
