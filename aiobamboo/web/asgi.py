"""The HTTP API as a Starlette application, to serve or to mount in FastAPI or Starlette.

::

    app = FastAPI(lifespan=lifespan)           # the lifespan opens the runtime
    app.mount("/bamboo", create_asgi_app(runtime, token="..."))
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route as StarletteRoute

from ..host import Engine
from ._api import DEFAULT_MAX_BODY, Route, WebAPI
from ._http import EventStream, HttpError, WebRequest
from .signing import CallbackSigner

__all__ = ["create_asgi_app"]


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise HttpError(413, f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HttpError(413, f"the body is larger than {limit} bytes")
    return bytes(body)


def _endpoint(web: WebAPI, route: Route) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            body = await _read_body(request, web.max_body) if route.method == "POST" else b""
        except HttpError as refused:
            answer: Any = refused.response()
        else:
            answer = await web.handle(
                route,
                WebRequest(
                    method=request.method,
                    path_params={k: str(v) for k, v in request.path_params.items()},
                    query=dict(request.query_params),
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                ),
            )
        if isinstance(answer, EventStream):
            return StreamingResponse(
                answer.chunks(), headers=dict(answer.headers), media_type=answer.content_type
            )
        return Response(
            answer.body(),
            status_code=answer.status,
            headers=dict(answer.headers),
            media_type=answer.content_type,
        )

    endpoint.__name__ = route.name
    return endpoint


def create_asgi_app(
    runtime: Engine,
    *,
    token: str | None = None,
    callback_signer: CallbackSigner | None = None,
    manage_runtime: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    web: WebAPI | None = None,
) -> Starlette:
    """A Starlette application serving the API over ``runtime``.

    ``manage_runtime=True`` opens the runtime in the application's lifespan
    and closes it at shutdown; otherwise the caller keeps it open while the
    application serves (a mounted application's lifespan does not run, so
    open it in the lifespan of the application it is mounted in).
    """
    api = web or WebAPI(runtime, token=token, callback_signer=callback_signer, max_body=max_body)
    routes = [
        StarletteRoute(route.path, _endpoint(api, route), methods=[route.method], name=route.name)
        for route in api.routes
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if not manage_runtime:
            yield
            return
        async with api.runtime:
            yield

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.aiobamboo = api
    return app
