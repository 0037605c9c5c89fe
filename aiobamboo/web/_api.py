"""The handlers of the HTTP API, shared by every framework adapter.

:class:`WebAPI` holds the runtime and the access settings; :data:`ROUTES`
lists every endpoint once, with its method, path, body fields and query
parameters, which the adapters mount and :mod:`._openapi` describes.
Refusals map to statuses here: 404 for an unknown id, 409 for an operation
the engine refuses (with its message), 422 for a malformed request (naming
the field), 401 for a mutating request without the configured token.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import anyio
import attrs

from .. import api
from ..api import EngineAPIResult
from ..exceptions import (
    AiobambooError,
    InvalidTreeError,
    NotFoundError,
    StorageError,
    TemplateError,
    ValueCodecError,
)
from ..host import Engine
from . import _json
from ._fields import Field, Param, decode_json, parse_body, parse_query
from ._http import EventStream, HttpError, WebRequest, WebResponse
from .signing import CallbackSigner, InvalidCallbackToken

__all__ = ["ROUTES", "Route", "WebAPI"]

logger = logging.getLogger("aiobamboo.web")

#: The largest request body accepted, in bytes.
DEFAULT_MAX_BODY = 16 * 1024 * 1024
#: Seconds between the comments that keep an idle event stream open through proxies.
HEARTBEAT_SECONDS = 15.0

Handler = Callable[["WebAPI", WebRequest], Awaitable[WebResponse | EventStream]]


@attrs.frozen
class Route:
    method: str
    #: With ``{name}`` placeholders, as both Starlette and aiohttp write them.
    path: str
    name: str
    handler: Handler
    summary: str
    #: Needs the bearer token when one is configured.
    mutating: bool = False
    body: Sequence[Field] | None = None
    params: Sequence[Param] = ()
    #: Extra statuses this endpoint answers, with what they mean.
    responses: dict[int, str] = attrs.field(factory=dict)
    #: The status of success.
    success: int = 200
    tag: str = "pipelines"
    #: Part of the OpenAPI description (the pages are not).
    in_schema: bool = True


def _refusal(res: EngineAPIResult[Any], field: str | None = None) -> HttpError:
    """The HTTP error for a refused API call."""
    exc = res.exc
    if isinstance(exc, NotFoundError):
        return HttpError(404, res.message)
    if isinstance(exc, InvalidTreeError | TemplateError | ValueCodecError):
        return HttpError(422, res.message, field=field)
    if isinstance(exc, StorageError):
        return HttpError(503, res.message)
    if isinstance(exc, AiobambooError):
        return HttpError(409, res.message)
    return HttpError(500, "internal error: see the server's log")


def _data(res: EngineAPIResult[Any], field: str | None = None) -> Any:
    if not res.result:
        raise _refusal(res, field)
    return res.data


class WebAPI:
    """The API over ``runtime`` (a worker or a client runtime, open while requests come).

    ``token``: mutating requests need ``Authorization: Bearer <token>``
    (reads and signed callbacks do not); None accepts them all.
    ``callback_signer``: enables ``POST /api/callbacks/{token}``.
    """

    def __init__(
        self,
        runtime: Engine,
        *,
        token: str | None = None,
        callback_signer: CallbackSigner | None = None,
        max_body: int = DEFAULT_MAX_BODY,
    ) -> None:
        if token is not None and not token:
            raise ValueError("token must be a non-empty string or None")
        self.runtime = runtime
        self.token = token
        self.callback_signer = callback_signer
        self.max_body = max_body
        self.routes: tuple[Route, ...] = ROUTES

    async def handle(self, route: Route, request: WebRequest) -> WebResponse | EventStream:
        """Answer ``request`` for ``route``; never raises for a bad request."""
        try:
            if route.mutating:
                self._authorize(request)
            return await route.handler(self, request)
        except HttpError as refused:
            return refused.response()
        except Exception:
            logger.exception("%s %s failed", route.method, route.path)
            return HttpError(500, "internal error: see the server's log").response()

    def _authorize(self, request: WebRequest) -> None:
        if self.token is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode("utf-8", "replace"), self.token.encode("utf-8")
        ):
            raise HttpError(
                401,
                "this request needs the API token: Authorization: Bearer <token>",
                headers={"WWW-Authenticate": "Bearer"},
            )


# -- pipelines -------------------------------------------------------------------------

_RUN_FIELDS = (
    Field("pipeline", "object", True, "the pipeline tree, as build_tree returns it"),
    Field("root_pipeline_data", "object", description="the root pipeline's data"),
    Field("root_pipeline_context", "object", description="the root pipeline's context values"),
    Field("subprocess_context", "object", description="values for every sub-process"),
    Field("cycle_tolerate", "boolean", description="allow back edges (loops)"),
    Field("start_node_id", "string", description="start at this node instead"),
    Field("queue", "string", description="accepted for compatibility, unused"),
    Field("priority", "integer", description="accepted for compatibility, unused"),
)


async def _run_pipeline(web: WebAPI, request: WebRequest) -> WebResponse:
    body = parse_body(request.body, _RUN_FIELDS)
    tree = body.pop("pipeline")
    pipeline_id = tree.get("id")
    if not isinstance(pipeline_id, str) or not pipeline_id:
        raise HttpError(422, "pipeline.id must be a non-empty string", field="pipeline.id")
    _data(await api.run_pipeline(web.runtime, tree, **body), "pipeline")
    return WebResponse(201, {"id": pipeline_id}, {"Location": f"pipelines/{pipeline_id}"})


_LIST_PARAMS = (
    Param("state", "string", "only pipelines whose root is in this state (RUNNING, FINISHED, ...)"),
    Param("created_after", "time", "created at or after this time"),
    Param("created_before", "time", "created before this time"),
    Param("limit", "integer", "pipelines per page, 1 to 1000 (default 100)"),
    Param("cursor", "string", "the cursor of the previous page"),
)


async def _list_pipelines(web: WebAPI, request: WebRequest) -> WebResponse:
    query = parse_query(request.query, _LIST_PARAMS)
    res = await api.list_pipelines(web.runtime, **query)
    if not res.result and not isinstance(res.exc, StorageError):
        # Every refusal of list_pipelines is about one of its arguments.
        field = next((p.name for p in _LIST_PARAMS if res.message.startswith(p.name)), None)
        raise HttpError(422, res.message, field=field)
    return WebResponse(200, _data(res))


async def _pipeline_tree(web: WebAPI, pipeline_id: str) -> dict[str, Any]:
    tree = _data(await api.get_pipeline_states(web.runtime, pipeline_id, False, with_names=True))
    if tree:
        return dict(tree[pipeline_id])
    # No state yet: stored and waiting for a worker to start it, or unknown.
    stored = await api.get_data(web.runtime, pipeline_id)
    if not stored.result:
        raise HttpError(404, f"pipeline {pipeline_id} does not exist")
    return {"id": pipeline_id, "state": None, "children": {}}


async def _get_pipeline(web: WebAPI, request: WebRequest) -> WebResponse:
    return WebResponse(200, await _pipeline_tree(web, request.path_params["id"]))


def _pipeline_operation(
    call: Callable[[Engine, str], Awaitable[EngineAPIResult[None]]],
) -> Handler:
    async def handler(web: WebAPI, request: WebRequest) -> WebResponse:
        parse_body(request.body, ())
        pipeline_id = request.path_params["id"]
        _data(await call(web.runtime, pipeline_id))
        return WebResponse(200, {"id": pipeline_id, "result": True})

    return handler


# -- nodes -------------------------------------------------------------------------------


async def _get_node(web: WebAPI, request: WebRequest) -> WebResponse:
    node_id = request.path_params["id"]
    states = _data(await api.get_children_states(web.runtime, node_id, with_names=True))
    entry = states.get(node_id)
    if entry is None:
        # Not reached yet (its data exists in the tree) or unknown.
        known = await api.get_data(web.runtime, node_id)
        if not known.result and isinstance(known.exc, NotFoundError):
            raise HttpError(404, known.message)
    inputs = _data(await api.get_execution_data_inputs(web.runtime, node_id))
    outputs = _data(await api.get_execution_data_outputs(web.runtime, node_id))
    histories = _data(await api.get_node_histories(web.runtime, node_id))
    return WebResponse(
        200,
        {
            "id": node_id,
            "state": entry,
            "inputs": inputs,
            "outputs": outputs,
            "histories": histories,
        },
    )


@attrs.frozen
class _NodeOperation:
    path: str
    summary: str
    fields: tuple[Field, ...]
    #: Calls the engine API with the runtime, the node id and the parsed body.
    call: Callable[[Engine, str, dict[str, Any]], Awaitable[EngineAPIResult[None]]]
    #: The body field a codec refusal is about.
    data_field: str | None = None


_NODE_OPERATIONS = (
    _NodeOperation(
        "callback",
        "Deliver callback data to a waiting activity",
        (
            Field("data", "any", description="the callback's data (any JSON value)"),
            Field(
                "version",
                "string",
                description="the attempt to reach; without it, the node's current attempt",
            ),
        ),
        lambda rt, node, b: api.callback(rt, node, b.get("version"), b.get("data")),
        "data",
    ),
    _NodeOperation(
        "retry",
        "Run a FAILED node again",
        (Field("data", "object", description="new inputs for the node"),),
        lambda rt, node, b: api.retry_node(rt, node, b.get("data")),
        "data",
    ),
    _NodeOperation(
        "retry-subprocess",
        "Run a FAILED sub-process again",
        (),
        lambda rt, node, b: api.retry_subprocess(rt, node),
    ),
    _NodeOperation(
        "skip",
        "Mark a FAILED node FINISHED and go on after it",
        (),
        lambda rt, node, b: api.skip_node(rt, node),
    ),
    _NodeOperation(
        "forced-fail",
        "Fail a RUNNING activity now",
        (
            Field("ex_data", "string", description="the failure's message"),
            Field(
                "send_post_set_state_signal",
                "boolean",
                description="emit the state event (default true)",
            ),
        ),
        lambda rt, node, b: api.forced_fail_activity(
            rt,
            node,
            b.get("ex_data", "forced fail by operator"),
            b.get("send_post_set_state_signal", True),
        ),
    ),
    _NodeOperation(
        "pause",
        "Stop the pipeline before this node",
        (),
        lambda rt, node, b: api.pause_node_appoint(rt, node),
    ),
    _NodeOperation(
        "resume",
        "Let a pipeline paused before this node go on",
        (),
        lambda rt, node, b: api.resume_node_appoint(rt, node),
    ),
    _NodeOperation(
        "skip-exclusive-gateway",
        "Take one outgoing flow of a FAILED exclusive gateway",
        (Field("flow_id", "string", True, "the outgoing flow to take"),),
        lambda rt, node, b: api.skip_exclusive_gateway(rt, node, b["flow_id"]),
    ),
    _NodeOperation(
        "skip-conditional-parallel-gateway",
        "Fork some outgoing flows of a FAILED conditional parallel gateway",
        (
            Field("flow_ids", "strings", True, "the outgoing flows to fork"),
            Field("converge_gateway_id", "string", True, "the gateway where they converge"),
        ),
        lambda rt, node, b: api.skip_conditional_parallel_gateway(
            rt, node, b["flow_ids"], b["converge_gateway_id"]
        ),
    ),
)


def _node_operation(operation: _NodeOperation) -> Handler:
    async def handler(web: WebAPI, request: WebRequest) -> WebResponse:
        body = parse_body(request.body, operation.fields)
        node_id = request.path_params["id"]
        _data(await operation.call(web.runtime, node_id, body), operation.data_field)
        return WebResponse(200, {"id": node_id, "result": True})

    return handler


# -- signed callbacks ----------------------------------------------------------------------


async def _signed_callback(web: WebAPI, request: WebRequest) -> WebResponse:
    signer = web.callback_signer
    if signer is None:
        raise HttpError(404, "signed callbacks are not enabled on this server")
    try:
        target = signer.verify(request.path_params["token"])
    except InvalidCallbackToken as exc:
        raise HttpError(403, str(exc)) from None
    data = decode_json(request.body)
    gone = HttpError(
        410, f"this callback URL is for an attempt of node {target.node_id} that is over"
    )
    states = _data(await api.get_children_states(web.runtime, target.node_id))
    current = states.get(target.node_id)
    if current is None or current["version"] != target.version:
        # The node was retried, skipped or looped since the URL was made.
        raise gone
    res = await api.callback(web.runtime, target.node_id, target.version, data)
    if not res.result and isinstance(res.exc, NotFoundError):
        raise gone  # it moved on between the check and the callback
    _data(res, "body")
    return WebResponse(200, {"id": target.node_id, "result": True})


# -- events ----------------------------------------------------------------------------------

_EVENT_PARAMS = (
    Param("pipeline_id", "string", "only this pipeline's events"),
    Param("after", "integer", "resume after this event id (the Last-Event-ID header wins)"),
    Param("limit", "integer", "end the stream after this many events (default: never)"),
)


def _event_chunk(event: Any) -> bytes:
    payload = {
        "id": event.id,
        "kind": event.kind,
        "root_id": event.root_id,
        "node_id": event.node_id,
        "state": event.state,
        "data": event.data,
        "time": api._time(event.time),
    }
    data = _json.dumps(payload).decode("utf-8")
    return f"id: {event.id}\nevent: {event.kind}\ndata: {data}\n\n".encode()


async def _events(web: WebAPI, request: WebRequest) -> EventStream:
    query = parse_query(request.query, _EVENT_PARAMS)
    after = query.get("after")
    last_id = request.headers.get("last-event-id", "").strip()
    if last_id:
        try:
            after = int(last_id)
        except ValueError:
            raise HttpError(
                422, "Last-Event-ID must be an event id", field="Last-Event-ID"
            ) from None
    if after is not None and after < 0:
        raise HttpError(422, "after must be an event id (0 or more)", field="after")
    limit = query.get("limit")
    if limit is not None and limit < 1:
        raise HttpError(422, "limit must be 1 or more", field="limit")
    try:
        subscription = api.subscribe(web.runtime, query.get("pipeline_id"), after=after)
    except AiobambooError as exc:
        raise HttpError(409, str(exc)) from None

    async def chunks() -> AsyncIterator[bytes]:
        sent = 0
        try:
            async with subscription as events:
                # Sent once the cursor is set: a client that reads the states when the
                # stream opens misses no change after them.
                yield b"retry: 2000\n\n"
                while limit is None or sent < limit:
                    event = None
                    with anyio.move_on_after(HEARTBEAT_SECONDS):
                        event = await events.__anext__()
                    if event is None:
                        yield b": keep-alive\n\n"
                        continue
                    yield _event_chunk(event)
                    sent += 1
        except AiobambooError as exc:
            # The runtime closed (the server stops) or the database failed: the client
            # reconnects with Last-Event-ID and misses nothing.
            logger.info("event stream ended: %s", exc)

    return EventStream(chunks)


# -- the live page ---------------------------------------------------------------------------


async def _graph(web: WebAPI, request: WebRequest) -> WebResponse:
    from ._graph import pipeline_graph

    pipeline_id = request.path_params["id"]
    try:
        return WebResponse(200, await pipeline_graph(web.runtime, pipeline_id))
    except NotFoundError as exc:
        raise HttpError(404, str(exc)) from None


async def _explain(web: WebAPI, request: WebRequest) -> WebResponse:
    return WebResponse(200, _data(await api.explain(web.runtime, request.path_params["id"])))


HTML_TYPE = "text/html; charset=utf-8"


async def _list_page(web: WebAPI, request: WebRequest) -> WebResponse:
    from ._page import list_page

    return WebResponse(200, list_page(), content_type=HTML_TYPE)


async def _pipeline_page(web: WebAPI, request: WebRequest) -> WebResponse:
    from ._page import pipeline_page

    return WebResponse(200, pipeline_page(), content_type=HTML_TYPE)


# -- the description -----------------------------------------------------------------------


async def _openapi(web: WebAPI, request: WebRequest) -> WebResponse:
    from ._openapi import describe

    return WebResponse(200, describe(web.routes))


def _routes() -> tuple[Route, ...]:
    routes = [
        Route(
            "POST",
            "/api/pipelines",
            "run_pipeline",
            _run_pipeline,
            "Store and start a pipeline",
            mutating=True,
            body=_RUN_FIELDS,
            success=201,
            responses={409: "the pipeline exists already"},
        ),
        Route(
            "GET",
            "/api/pipelines",
            "list_pipelines",
            _list_pipelines,
            "Root pipelines, newest first, a page at a time",
            params=_LIST_PARAMS,
        ),
        Route(
            "GET",
            "/api/pipelines/{id}",
            "get_pipeline",
            _get_pipeline,
            "The pipeline's state tree, with node names and types",
            responses={404: "no such pipeline"},
        ),
        Route(
            "GET",
            "/api/pipelines/{id}/graph",
            "get_pipeline_graph",
            _graph,
            "The pipeline's nodes and flows, sub-processes nested, for drawing",
            responses={404: "no such pipeline"},
        ),
        Route(
            "GET",
            "/api/pipelines/{id}/explain",
            "explain_pipeline",
            _explain,
            "Why the pipeline is not moving: what each process waits on, and what unblocks it",
            responses={404: "no such pipeline"},
        ),
    ]
    for verb, call, summary in (
        ("pause", api.pause_pipeline, "Pause a pipeline or sub-process"),
        ("resume", api.resume_pipeline, "Resume a paused pipeline or sub-process"),
        ("revoke", api.revoke_pipeline, "Revoke a pipeline"),
    ):
        routes.append(
            Route(
                "POST",
                f"/api/pipelines/{{id}}/{verb}",
                f"{verb}_pipeline",
                _pipeline_operation(call),
                summary,
                mutating=True,
                body=(),
                responses={404: "no such pipeline", 409: "refused by the engine"},
            )
        )
    routes.append(
        Route(
            "GET",
            "/api/nodes/{id}",
            "get_node",
            _get_node,
            "A node's state, inputs, outputs and earlier attempts",
            responses={404: "no such node"},
            tag="nodes",
        )
    )
    routes.extend(
        Route(
            "POST",
            f"/api/nodes/{{id}}/{operation.path}",
            operation.path.replace("-", "_"),
            _node_operation(operation),
            operation.summary,
            mutating=True,
            body=operation.fields,
            responses={404: "no such node", 409: "refused by the engine"},
            tag="nodes",
        )
        for operation in _NODE_OPERATIONS
    )
    routes += [
        Route(
            "POST",
            "/api/callbacks/{token}",
            "signed_callback",
            _signed_callback,
            "Deliver the body as the callback data of the attempt a signed URL names",
            responses={
                403: "the token is forged, malformed or expired",
                404: "signed callbacks are not enabled",
                409: "refused by the engine (the node waits for no callback)",
                410: "the attempt the URL was made for is over",
            },
            tag="callbacks",
        ),
        Route(
            "GET",
            "/api/events",
            "events",
            _events,
            "Committed state changes as server-sent events, resumable with Last-Event-ID",
            params=_EVENT_PARAMS,
            tag="events",
        ),
        Route(
            "GET",
            "/api/openapi.json",
            "openapi",
            _openapi,
            "This description",
            tag="meta",
        ),
        Route("GET", "/", "list_page", _list_page, "The live list of pipelines", in_schema=False),
        Route(
            "GET",
            "/pipelines/{id}",
            "pipeline_page",
            _pipeline_page,
            "The live drawing of a pipeline",
            in_schema=False,
        ),
    ]
    return tuple(routes)


ROUTES = _routes()
