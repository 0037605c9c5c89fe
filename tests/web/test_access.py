"""With a token configured, every mutating endpoint refuses a request without it."""

from __future__ import annotations

from typing import Any

from aiobamboo.web import ROUTES

from .conftest import Http, http_client, poll
from .test_api import callback_tree, wait_waiting

TOKEN = "s3cret-token-for-tests"
MUTATING = [r for r in ROUTES if r.mutating]


def sample_body(route: Any, tree: dict[str, Any], node_id: str) -> dict[str, Any]:
    """A body that the endpoint would accept with the token."""
    if route.name == "run_pipeline":
        other, _ = callback_tree()
        return {"pipeline": other}
    if route.name == "callback":
        return {"data": {"sneaky": True}}
    if route.name == "skip_exclusive_gateway":
        return {"flow_id": next(iter(tree["flows"]))}
    if route.name == "skip_conditional_parallel_gateway":
        return {"flow_ids": [next(iter(tree["flows"]))], "converge_gateway_id": node_id}
    return {}


async def snapshot(http: Http, pipeline_id: str, node_id: str) -> Any:
    listed = await http.get("/api/pipelines")
    tree = await http.get(f"/api/pipelines/{pipeline_id}")
    node = await http.get(f"/api/nodes/{node_id}")
    return listed, tree, node


async def test_mutating_endpoints_need_the_token(framework: str, web_runtime: Any) -> None:
    assert {r.name for r in MUTATING} >= {
        "run_pipeline",
        "pause_pipeline",
        "resume_pipeline",
        "revoke_pipeline",
        "callback",
        "retry",
        "skip",
        "forced_fail",
        "pause",
        "resume",
        "skip_exclusive_gateway",
        "skip_conditional_parallel_gateway",
    }
    async with http_client(framework, web_runtime, token=TOKEN) as http:
        tree, node_id = callback_tree()
        auth = {"Authorization": f"Bearer {TOKEN}"}
        await http.post("/api/pipelines", {"pipeline": tree}, 201, headers=auth)

        await wait_waiting(http, node_id)
        before = await snapshot(http, tree["id"], node_id)
        for route in MUTATING:
            target = tree["id"] if "/pipelines/" in route.path else node_id
            path = route.path.replace("{id}", target)
            body = sample_body(route, tree, node_id)
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                status, answer = await http.request("POST", path, json_body=body, headers=headers)
                assert status == 401, (route.name, headers, answer)
                assert "token" in answer["error"]
        assert await snapshot(http, tree["id"], node_id) == before
        # Reads need no token; the right token is accepted.
        await http.post(f"/api/nodes/{node_id}/callback", {"data": 1}, headers=auth)

        async def finished() -> bool:
            return (await http.get(f"/api/pipelines/{tree['id']}"))["state"] == "FINISHED"

        await poll(finished)
