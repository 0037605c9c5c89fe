"""The framework-neutral request and response the handlers work on.

Each framework adapter turns its request into a :class:`WebRequest` and the
handler's :class:`WebResponse` or :class:`EventStream` into its own response,
so every rule of the API (status codes, JSON, tokens) lives in one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import attrs

from ._json import dumps

__all__ = ["EventStream", "HttpError", "WebRequest", "WebResponse"]

JSON_TYPE = "application/json"


@attrs.frozen
class WebRequest:
    method: str
    path_params: Mapping[str, str]
    #: Query parameters; a repeated one keeps its last value.
    query: Mapping[str, str]
    #: Header names in lower case.
    headers: Mapping[str, str]
    body: bytes = b""


@attrs.frozen
class WebResponse:
    status: int
    payload: Any
    headers: Mapping[str, str] = attrs.field(factory=dict)
    content_type: str = JSON_TYPE

    def body(self) -> bytes:
        if isinstance(self.payload, bytes):
            return self.payload
        if isinstance(self.payload, str):
            return self.payload.encode("utf-8")
        return dumps(self.payload)


@attrs.frozen
class EventStream:
    """A ``text/event-stream`` response: ``chunks()`` yields its encoded pieces."""

    chunks: Callable[[], AsyncIterator[bytes]]
    headers: Mapping[str, str] = attrs.field(
        factory=lambda: {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    )
    content_type: str = "text/event-stream"


class HttpError(Exception):
    """A request refused with ``status``: the response is ``{"error": message, "field": ...}``."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def response(self) -> WebResponse:
        payload: dict[str, Any] = {"error": self.message}
        if self.field is not None:
            payload["field"] = self.field
        return WebResponse(self.status, payload, self.headers)
