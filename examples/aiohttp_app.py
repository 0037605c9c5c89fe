"""aiobamboo inside an aiohttp service.

The runtime is opened in a ``cleanup_ctx`` and the HTTP API is a
sub-application under /bamboo; the service's own handler starts pipelines
with the engine API. Run it from this folder::

    pip install 'aiobamboo[web]'
    python aiohttp_app.py              # http://127.0.0.1:8080: POST /orders
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator

from aiohttp import web
from orders import build_order

from aiobamboo import api
from aiobamboo.host import Engine
from aiobamboo.web import create_aiohttp_app, json_dumps
from aiobamboo_sqlite import SQLiteRuntime

RUNTIME = web.AppKey("runtime", Engine)


async def place_order(request: web.Request) -> web.Response:
    body = await request.json()
    tree, approval_id = build_order(str(body["item"]), int(body["quantity"]))
    started = await api.run_pipeline(request.app[RUNTIME], tree)
    if not started.result:
        return web.json_response({"error": started.message}, status=409)
    return web.json_response(
        {"pipeline_id": tree["id"], "approval_node_id": approval_id}, status=201
    )


async def order_status(request: web.Request) -> web.Response:
    pipeline_id = request.match_info["id"]
    states = await api.get_pipeline_states(request.app[RUNTIME], pipeline_id, with_names=True)
    if not states.result or not states.data:
        return web.json_response({"error": f"no order {pipeline_id}"}, status=404)
    # State trees hold datetimes: json_dumps writes them in ISO 8601.
    return web.json_response(states.data[pipeline_id], dumps=json_dumps)


def create_app(db: str = "orders.db", token: str | None = None) -> web.Application:
    runtime = SQLiteRuntime(db)

    async def runtime_ctx(app: web.Application) -> AsyncIterator[None]:
        # Open at startup, close (handing running work back) at cleanup.
        async with runtime:
            yield

    app = web.Application()
    app[RUNTIME] = runtime
    app.cleanup_ctx.append(runtime_ctx)
    app.router.add_post("/orders", place_order)
    app.router.add_get("/orders/{id}", order_status)
    app.add_subapp("/bamboo", create_aiohttp_app(runtime, token=token))
    return app


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    web.run_app(
        create_app(os.environ.get("ORDERS_DB", "orders.db"), os.environ.get("AIOBAMBOO_TOKEN")),
        host="127.0.0.1",
        port=int(os.environ.get("PORT", "8080")),
    )
