"""The HTTP API as an aiohttp application, to run or to add as a sub-application.

::

    app = web.Application()
    app.cleanup_ctx.append(runtime_ctx)        # opens and closes the runtime
    app.add_subapp("/bamboo", create_aiohttp_app(runtime, token="..."))
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web as aioweb

from ..host import Engine
from ._api import DEFAULT_MAX_BODY, Route, WebAPI
from ._http import EventStream, HttpError, WebRequest
from .signing import CallbackSigner

__all__ = ["WEB_API_KEY", "create_aiohttp_app"]

#: Where the application keeps its :class:`WebAPI` (``app[WEB_API_KEY]``).
WEB_API_KEY = aioweb.AppKey("aiobamboo", WebAPI)


async def _read_body(request: aioweb.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise HttpError(413, f"the body is larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            raise HttpError(413, f"the body is larger than {limit} bytes")
    return bytes(body)


def _handler(web: WebAPI, route: Route) -> Any:
    async def handler(request: aioweb.Request) -> aioweb.StreamResponse:
        try:
            body = await _read_body(request, web.max_body) if route.method == "POST" else b""
        except HttpError as refused:
            answer: Any = refused.response()
        else:
            answer = await web.handle(
                route,
                WebRequest(
                    method=request.method,
                    path_params=dict(request.match_info),
                    query=dict(request.query),
                    headers={k.lower(): v for k, v in request.headers.items()},
                    body=body,
                ),
            )
        if isinstance(answer, EventStream):
            stream = aioweb.StreamResponse(headers=dict(answer.headers))
            stream.content_type = answer.content_type
            await stream.prepare(request)
            try:
                async for chunk in answer.chunks():
                    await stream.write(chunk)
            except ConnectionResetError:
                return stream  # the client went away
            await stream.write_eof()
            return stream
        content_type, _, parameters = answer.content_type.partition(";")
        charset = parameters.partition("charset=")[2].strip() or None
        return aioweb.Response(
            body=answer.body(),
            status=answer.status,
            headers=dict(answer.headers),
            content_type=content_type.strip(),
            charset=charset,
        )

    return handler


def create_aiohttp_app(
    runtime: Engine,
    *,
    token: str | None = None,
    callback_signer: CallbackSigner | None = None,
    manage_runtime: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    web: WebAPI | None = None,
) -> aioweb.Application:
    """An aiohttp application serving the API over ``runtime``.

    ``manage_runtime=True`` opens the runtime in the application's
    ``cleanup_ctx``; otherwise the caller keeps it open while it serves.
    """
    api = web or WebAPI(runtime, token=token, callback_signer=callback_signer, max_body=max_body)
    app = aioweb.Application(client_max_size=max_body)
    for route in api.routes:
        app.router.add_route(route.method, route.path, _handler(api, route), name=route.name)

    if manage_runtime:

        async def runtime_ctx(app: aioweb.Application) -> AsyncIterator[None]:
            async with api.runtime:
                yield

        app.cleanup_ctx.append(runtime_ctx)
    app[WEB_API_KEY] = api
    return app
