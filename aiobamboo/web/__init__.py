"""The HTTP API of aiobamboo, for ASGI (Starlette, FastAPI) and aiohttp applications.

Install with the ``web`` extra. :func:`create_asgi_app` and
:func:`create_aiohttp_app` build the same API (one set of handlers, a thin
adapter each) over an open runtime, worker or client; :class:`CallbackSigner`
makes the signed callback URLs that outside systems call back on.
See docs/web.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._api import ROUTES, Route, WebAPI
from ._json import json_default, json_dumps
from .signing import CallbackSigner, InvalidCallbackToken

if TYPE_CHECKING:
    from .aiohttp_app import create_aiohttp_app
    from .asgi import create_asgi_app

__all__ = [
    "ROUTES",
    "CallbackSigner",
    "InvalidCallbackToken",
    "Route",
    "WebAPI",
    "create_aiohttp_app",
    "create_asgi_app",
    "json_default",
    "json_dumps",
]


def __getattr__(name: str) -> Any:
    # Each adapter imports its framework: an application uses one of them.
    if name == "create_asgi_app":
        from .asgi import create_asgi_app

        return create_asgi_app
    if name == "create_aiohttp_app":
        from .aiohttp_app import create_aiohttp_app

        return create_aiohttp_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
