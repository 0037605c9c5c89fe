"""Signed callback URLs: delivered to the attempt they name, refused otherwise."""

from __future__ import annotations

from typing import Any

import pytest

from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, ServiceActivity, Var, build_tree
from aiobamboo.exceptions import ConfigurationError
from aiobamboo.web import CallbackSigner, InvalidCallbackToken

from .components_web import SIGNER
from .conftest import Http, http_client, poll

TOKEN = "api-token-for-signed-callback-tests"


def signed_tree(expires_in: float | None = None) -> tuple[dict[str, Any], str]:
    start = EmptyStartEvent()
    node = ServiceActivity(component_code="web_signed_callback")
    node.component.inputs.expires_in = Var(type=Var.PLAIN, value=expires_in)
    start.extend(node).extend(EmptyEndEvent())
    return build_tree(start), node.id


async def callback_url(http: Http, node_id: str, state: str = "RUNNING") -> str:
    async def ready() -> Any:
        node = await http.get(f"/api/nodes/{node_id}")
        running = node["state"] and node["state"]["state"] == state
        return running and node["outputs"].get("callback_url")

    return str(await poll(ready))


async def pipeline_state(http: Http, pipeline_id: str) -> str:
    return str((await http.get(f"/api/pipelines/{pipeline_id}"))["state"])


async def test_a_signed_url_delivers_its_body_once(framework: str, web_runtime: Any) -> None:
    async with http_client(framework, web_runtime, token=TOKEN, callback_signer=SIGNER) as http:
        tree, node_id = signed_tree(expires_in=600)
        await http.post(
            "/api/pipelines", {"pipeline": tree}, 201, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        url = await callback_url(http, node_id)
        assert url.startswith("/api/callbacks/")

        forged = url[:-2] + ("AA" if not url.endswith("AA") else "BB")
        refused = await http.post(forged, {"approved": True}, 403)
        assert "signature" in refused["error"]
        status, answer = await http.request("POST", url, content=b"{not json")
        assert status == 422
        assert answer["field"] == "body"
        # No API token needed: the signature is the credential.
        await http.post(url, {"approved": True})

        async def finished() -> bool:
            return await pipeline_state(http, tree["id"]) == "FINISHED"

        await poll(finished)
        node = await http.get(f"/api/nodes/{node_id}")
        assert node["outputs"]["callback_data"] == {"approved": True}
        replayed = await http.post(url, {"approved": False}, 409)
        assert any(
            words in replayed["error"] for words in ("already", "not RUNNING", "does not exist")
        ), replayed
        node = await http.get(f"/api/nodes/{node_id}")
        assert node["outputs"]["callback_data"] == {"approved": True}


async def test_a_url_of_an_earlier_attempt_is_refused(framework: str, web_runtime: Any) -> None:
    async with http_client(framework, web_runtime, callback_signer=SIGNER) as http:
        tree, node_id = signed_tree()
        await http.post("/api/pipelines", {"pipeline": tree}, 201)
        first = await callback_url(http, node_id)
        await http.post(first, {"fail": True})

        async def failed() -> bool:
            node = await http.get(f"/api/nodes/{node_id}")
            return bool(node["state"]) and node["state"]["state"] == "FAILED"

        await poll(failed)
        await http.post(f"/api/nodes/{node_id}/retry")

        async def second_url() -> Any:
            node = await http.get(f"/api/nodes/{node_id}")
            url = node["outputs"].get("callback_url")
            return node["state"]["state"] == "RUNNING" and url != first and url

        second = await poll(second_url)
        gone = await http.post(first, {"from": "the first attempt"}, 410)
        assert "that is over" in gone["error"]
        await http.post(second, {"from": "the second attempt"})

        async def finished() -> bool:
            return await pipeline_state(http, tree["id"]) == "FINISHED"

        await poll(finished)
        node = await http.get(f"/api/nodes/{node_id}")
        assert node["outputs"]["callback_data"] == {"from": "the second attempt"}


async def test_expired_and_disabled(framework: str) -> None:
    from aiobamboo.testing import MemoryRuntime

    async with MemoryRuntime() as runtime:
        async with http_client(framework, runtime, callback_signer=SIGNER) as http:
            tree, node_id = signed_tree(expires_in=-5)
            await http.post("/api/pipelines", {"pipeline": tree}, 201)
            url = await callback_url(http, node_id)
            expired = await http.post(url, {"late": True}, 403)
            assert "expired" in expired["error"]
            malformed = await http.post("/api/callbacks/not-a-token", {}, 403)
            assert "malformed" in malformed["error"]
            assert await pipeline_state(http, tree["id"]) == "RUNNING"
        async with http_client(framework, runtime) as http:
            disabled = await http.post(url, {}, 404)
            assert "not enabled" in disabled["error"]


def test_tokens_name_the_attempt_and_refuse_tampering() -> None:
    signer = CallbackSigner(b"0123456789abcdef-secret")
    token = signer.token("n1", "v1", expires_in=60)
    target = signer.verify(token)
    assert (target.node_id, target.version) == ("n1", "v1")
    assert target.expires is not None
    with pytest.raises(InvalidCallbackToken, match="expired"):
        signer.verify(token, now=target.expires)
    other = CallbackSigner(b"another-secret-of-16-bytes")
    with pytest.raises(InvalidCallbackToken, match="signature"):
        other.verify(token)
    payload, _, signature = token.partition(".")
    forged_payload = signer.token("n2", "v1").partition(".")[0]
    with pytest.raises(InvalidCallbackToken, match="signature"):
        signer.verify(f"{forged_payload}.{signature}")
    for bad in ("", ".", "abc", f"{payload}.", "é.é", "x" * 5000):
        with pytest.raises(InvalidCallbackToken):
            signer.verify(bad)
    assert signer.verify(signer.token("n1", "v1")).expires is None
    with pytest.raises(ConfigurationError):
        CallbackSigner("short")
    assert "secret" not in repr(CallbackSigner("x" * 20, "https://flows.example"))
    assert "0123456789abcdef" not in repr(signer)
    url = CallbackSigner("x" * 20, "https://flows.example/bamboo/").url_for(
        type("Attempt", (), {"id": "n1", "version": "v1"})()
    )
    assert url.startswith("https://flows.example/bamboo/api/callbacks/")
