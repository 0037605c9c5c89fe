"""aiobamboo inside a FastAPI service.

The runtime is opened in the application's lifespan and the HTTP API is
mounted under /bamboo; the service's own endpoint starts pipelines with the
engine API. Run it from this folder::

    pip install 'aiobamboo[web]' fastapi
    uvicorn fastapi_app:app            # then POST /orders, see /bamboo/api/pipelines
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException
from orders import build_order
from pydantic import BaseModel

from aiobamboo import api
from aiobamboo.web import create_asgi_app
from aiobamboo_sqlite import SQLiteRuntime

logging.getLogger("aiobamboo").setLevel(logging.INFO)

runtime = SQLiteRuntime(os.environ.get("ORDERS_DB", "orders.db"))


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Open before the first request, close (handing running work back) at shutdown.
    async with runtime:
        yield


app = FastAPI(title="orders", lifespan=lifespan)
# Mutating requests under /bamboo need this bearer token when it is set.
app.mount("/bamboo", create_asgi_app(runtime, token=os.environ.get("AIOBAMBOO_TOKEN")))


class Order(BaseModel):
    item: str
    quantity: int


@app.post("/orders", status_code=201)
async def place_order(order: Order) -> dict[str, Any]:
    tree, approval_id = build_order(order.item, order.quantity)
    started = await api.run_pipeline(runtime, tree)
    if not started.result:
        raise HTTPException(409, started.message)
    return {"pipeline_id": tree["id"], "approval_node_id": approval_id}


@app.get("/orders/{pipeline_id}")
async def order_status(pipeline_id: str) -> dict[str, Any]:
    # State trees hold datetimes: FastAPI's encoder writes them in ISO 8601.
    states = await api.get_pipeline_states(runtime, pipeline_id, with_names=True)
    if not states.result or not states.data:
        raise HTTPException(404, f"no order {pipeline_id}")
    return dict(states.data[pipeline_id])
