"""A payment provider calls a pipeline back through a signed URL.

The ``charge`` activity asks the provider for a payment and hands it a
callback URL signed for its current attempt; the provider, another HTTP
service that knows neither the node's version nor the API token, POSTs the
outcome to that URL, and the pipeline goes on. Both services run here on
127.0.0.1; in real life the provider is someone else's server::

    pip install 'aiobamboo[web]'
    python signed_callback.py
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import secrets
import socket
import tempfile
from typing import Any

import aiohttp
from aiohttp import web

from aiobamboo import api
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, Var, build_tree
from aiobamboo.component import Component, Service
from aiobamboo.web import CallbackSigner, create_aiohttp_app
from aiobamboo_sqlite import SQLiteRuntime

# The same signer makes the URLs (in the component) and checks them (in the
# web application). Its secret stays in this service; base_url is where the
# provider reaches the API (set in main once the port is known).
SIGNER = CallbackSigner(
    os.environ.get("AIOBAMBOO_CALLBACK_SECRET") or secrets.token_urlsafe(32),
    base_url="http://127.0.0.1:8080",
)
PROVIDER = {"url": "http://127.0.0.1:8081"}


class ChargeService(Service):
    __need_schedule__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        notify_url = SIGNER.url_for(self, expires_in=3600)  # for this attempt only
        async with aiohttp.ClientSession() as session:
            charge = {"amount": data.get_one_of_inputs("amount"), "notify_url": notify_url}
            async with session.post(f"{PROVIDER['url']}/charges", json=charge) as response:
                response.raise_for_status()
                data.outputs.charge_id = (await response.json())["id"]
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.payment = callback_data
        return isinstance(callback_data, dict) and callback_data.get("status") == "paid"


class ChargeComponent(Component):
    code = "example_charge"
    name = "Charge the customer"
    bound_service = ChargeService


def provider_app() -> web.Application:
    """The outside service: accepts a charge, later POSTs its outcome to notify_url."""
    pending: set[asyncio.Task[None]] = set()

    async def notify(charge_id: str, url: str) -> None:
        await asyncio.sleep(0.2)  # the customer pays
        async with aiohttp.ClientSession() as session:
            async with session.post(url, json={"status": "paid", "charge": charge_id}) as answer:
                print(f"provider: called back, the pipeline's API answered {answer.status}")

    async def create_charge(request: web.Request) -> web.Response:
        body = await request.json()
        charge_id = f"ch_{secrets.token_hex(4)}"
        task = asyncio.create_task(notify(charge_id, body["notify_url"]))
        pending.add(task)
        task.add_done_callback(pending.discard)
        return web.json_response({"id": charge_id}, status=201)

    app = web.Application()
    app.router.add_post("/charges", create_charge)
    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def main(db: str) -> int:
    api_port, provider_port = free_port(), free_port()
    SIGNER.base_url = f"http://127.0.0.1:{api_port}"
    PROVIDER["url"] = f"http://127.0.0.1:{provider_port}"
    runtime = SQLiteRuntime(db)
    # The API token guards the operator endpoints; the signed URL needs none.
    app = create_aiohttp_app(runtime, token=secrets.token_urlsafe(16), callback_signer=SIGNER)
    runners = [web.AppRunner(app), web.AppRunner(provider_app())]
    async with runtime:
        try:
            for runner, port in zip(runners, (api_port, provider_port), strict=True):
                await runner.setup()
                await web.TCPSite(runner, "127.0.0.1", port).start()

            start = EmptyStartEvent()
            charge = ServiceActivity(component_code="example_charge", name="charge")
            charge.component.inputs.amount = Var(type=Var.PLAIN, value=42)
            start.extend(charge).extend(EmptyEndEvent())
            tree = build_tree(start)
            (await api.run_pipeline(runtime, tree)).unwrap()
            state = (await api.wait_pipeline(runtime, tree["id"], timeout=30)).unwrap()
            outputs = (await api.get_execution_data_outputs(runtime, charge.id)).unwrap()
            print(f"pipeline {tree['id']}: {state}; payment {outputs['payment']}")
            return 0 if state == "FINISHED" else 1
        finally:
            for runner in runners:
                await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", help="the SQLite file (default: a temporary one)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as folder:
        raise SystemExit(asyncio.run(main(args.db or os.path.join(folder, "payments.db"))))
