"""The HTTP API over every runtime kind, through both framework adapters."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from aiobamboo.builder import (
    ConvergeGateway,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    ServiceActivity,
    Var,
    build_tree,
)
from aiobamboo.builder import Data as TreeData

from .conftest import Http, poll


def callback_tree() -> tuple[dict[str, Any], str]:
    start = EmptyStartEvent()
    node = ServiceActivity(component_code="callback")
    start.extend(node).extend(EmptyEndEvent())
    return build_tree(start), node.id


def failing_tree() -> tuple[dict[str, Any], str]:
    start = EmptyStartEvent()
    node = ServiceActivity(component_code="fail")
    start.extend(node).extend(EmptyEndEvent())
    return build_tree(start), node.id


async def node_state(http: Http, node_id: str) -> str | None:
    node = await http.get(f"/api/nodes/{node_id}")
    return None if node["state"] is None else str(node["state"]["state"])


async def wait_node(http: Http, node_id: str, state: str) -> dict[str, Any]:
    async def reached() -> Any:
        node = await http.get(f"/api/nodes/{node_id}")
        return node if node["state"] and node["state"]["state"] == state else None

    return dict(await poll(reached, what=f"{node_id} {state}"))


async def wait_waiting(http: Http, node_id: str) -> dict[str, Any]:
    """Wait until a callback node ran its execute (it has stored its outputs) and waits."""

    async def reached() -> Any:
        node = await http.get(f"/api/nodes/{node_id}")
        running = node["state"] and node["state"]["state"] == "RUNNING"
        return node if running and node["outputs"].get("waiting") else None

    return dict(await poll(reached, what=f"{node_id} waiting"))


async def wait_pipeline(http: Http, pipeline_id: str, state: str) -> dict[str, Any]:
    async def reached() -> Any:
        tree = await http.get(f"/api/pipelines/{pipeline_id}")
        return tree if tree["state"] == state else None

    return dict(await poll(reached, what=f"pipeline {state}"))


def is_iso(value: Any) -> bool:
    return isinstance(value, str) and dt.datetime.fromisoformat(value).tzinfo is not None


async def test_run_call_back_and_read(http: Http) -> None:
    tree, node_id = callback_tree()
    created = await http.post(
        "/api/pipelines", {"pipeline": tree, "root_pipeline_data": {"who": "web"}}, 201
    )
    assert created == {"id": tree["id"]}
    waiting = await wait_waiting(http, node_id)
    assert waiting["state"]["type"] == "ServiceActivity"
    assert waiting["outputs"]["waiting"] is True

    explained = await http.get(f"/api/pipelines/{tree['id']}/explain")
    assert [(w["kind"], w["node_id"]) for w in explained["waits"]] == [("callback", node_id)]
    assert explained["waits"][0]["unblock"][0]["operation"] == "callback"

    await http.post(f"/api/nodes/{node_id}/callback", {"data": {"approved": True}})
    finished = await wait_pipeline(http, tree["id"], "FINISHED")
    assert finished["id"] == tree["id"]
    assert finished["children"][node_id]["state"] == "FINISHED"
    assert finished["children"][node_id]["type"] == "ServiceActivity"
    assert is_iso(finished["created_time"])
    assert is_iso(finished["archived_time"])

    node = await http.get(f"/api/nodes/{node_id}")
    assert node["outputs"]["callback_data"] == {"approved": True}
    assert node["histories"] == []
    listed = await http.get("/api/pipelines", state="FINISHED")
    assert [p["id"] for p in listed["pipelines"]] == [tree["id"]]
    assert is_iso(listed["pipelines"][0]["created_time"])
    assert (await http.get("/api/pipelines", state="RUNNING"))["pipelines"] == []


async def test_refusals_are_409_with_the_engine_message(http: Http) -> None:
    tree, node_id = callback_tree()
    await http.post("/api/pipelines", {"pipeline": tree}, 201)
    await wait_waiting(http, node_id)
    again = await http.post("/api/pipelines", {"pipeline": tree}, 409)
    assert "already exists" in again["error"]
    refused = await http.post(f"/api/pipelines/{tree['id']}/resume", None, 409)
    assert "RUNNING" in refused["error"]
    refused = await http.post(f"/api/nodes/{node_id}/skip", None, 409)
    assert refused["error"]
    # The refused operations changed nothing: the node still waits and takes its callback.
    await http.post(f"/api/nodes/{node_id}/callback", {"data": 1})
    await wait_pipeline(http, tree["id"], "FINISHED")
    refused = await http.post(f"/api/nodes/{node_id}/callback", {"data": 2}, 409)
    assert "not RUNNING" in refused["error"]


async def test_unknown_ids_are_404(http: Http) -> None:
    status, body = await http.request("GET", "/api/pipelines/p-unknown")
    assert status == 404
    assert "does not exist" in body["error"]
    status, body = await http.request("GET", "/api/nodes/n-unknown")
    assert status == 404
    assert "does not exist" in body["error"]
    status, body = await http.request("GET", "/api/pipelines/p-unknown/explain")
    assert status == 404
    for path in (
        "/api/pipelines/p-unknown/pause",
        "/api/pipelines/p-unknown/revoke",
        "/api/nodes/n-unknown/retry",
        "/api/nodes/n-unknown/callback",
    ):
        status, body = await http.request("POST", path, json_body={})
        assert status == 404, (path, status, body)


async def test_pipeline_and_node_operations(http: Http) -> None:
    tree, node_id = failing_tree()
    await http.post("/api/pipelines", {"pipeline": tree}, 201)
    failed = await wait_node(http, node_id, "FAILED")
    assert failed["outputs"]["ex_data"] == "refused by component"
    await http.post(f"/api/nodes/{node_id}/retry", {"data": {"ok": True}})
    await wait_pipeline(http, tree["id"], "FINISHED")
    node = await http.get(f"/api/nodes/{node_id}")
    assert len(node["histories"]) == 1
    assert is_iso(node["histories"][0]["started_time"])

    tree, node_id = callback_tree()
    await http.post("/api/pipelines", {"pipeline": tree}, 201)
    await wait_waiting(http, node_id)
    await http.post(f"/api/pipelines/{tree['id']}/pause")
    await wait_pipeline(http, tree["id"], "SUSPENDED")
    await http.post(f"/api/pipelines/{tree['id']}/resume")
    await wait_pipeline(http, tree["id"], "RUNNING")
    await http.post(f"/api/nodes/{node_id}/forced-fail", {"ex_data": "stopped by hand"})
    failed = await wait_node(http, node_id, "FAILED")
    assert "stopped by hand" in failed["outputs"]["ex_data"]
    await http.post(f"/api/nodes/{node_id}/skip")
    await wait_pipeline(http, tree["id"], "FINISHED")

    tree, node_id = callback_tree()
    await http.post("/api/pipelines", {"pipeline": tree}, 201)
    await wait_waiting(http, node_id)
    await http.post(f"/api/pipelines/{tree['id']}/revoke")
    await wait_pipeline(http, tree["id"], "REVOKED")


async def test_gateway_skips(http: Http) -> None:
    start = EmptyStartEvent()
    eg = ExclusiveGateway(conditions={0: "${x} == 1", 1: "${x} == 2"})
    a, b = ServiceActivity(component_code="echo"), ServiceActivity(component_code="echo")
    cg = ConvergeGateway()
    start.extend(eg).connect(a, b).to(eg).converge(cg).extend(EmptyEndEvent())
    tree = build_tree(start, data=TreeData(inputs={"${x}": Var(type=Var.PLAIN, value=3)}))
    await http.post("/api/pipelines", {"pipeline": tree}, 201)
    await wait_node(http, eg.id, "FAILED")
    flow = next(
        f for f, spec in tree["flows"].items() if spec["source"] == eg.id and spec["target"] == b.id
    )
    missing = await http.post(f"/api/nodes/{eg.id}/skip-exclusive-gateway", {}, 422)
    assert missing["field"] == "flow_id"
    await http.post(f"/api/nodes/{eg.id}/skip-exclusive-gateway", {"flow_id": flow})
    finished = await wait_pipeline(http, tree["id"], "FINISHED")
    assert finished["children"][b.id]["state"] == "FINISHED"
    assert a.id not in finished["children"]
    refused = await http.post(
        f"/api/nodes/{eg.id}/skip-conditional-parallel-gateway",
        {"flow_ids": [flow], "converge_gateway_id": cg.id},
        409,
    )
    assert refused["error"]


async def test_list_pages_with_a_cursor(http: Http) -> None:
    ids = []
    for _ in range(3):
        tree, _node_id = callback_tree()
        await http.post("/api/pipelines", {"pipeline": tree}, 201)
        ids.append(tree["id"])
    first = await http.get("/api/pipelines", limit="2")
    assert len(first["pipelines"]) == 2
    assert first["cursor"]
    second = await http.get("/api/pipelines", limit="2", cursor=first["cursor"])
    assert second["cursor"] is None
    seen = [p["id"] for p in first["pipelines"] + second["pipelines"]]
    assert sorted(seen) == sorted(ids)
    future = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    assert (await http.get("/api/pipelines", created_after=future))["pipelines"] == []
    assert len((await http.get("/api/pipelines", created_before=future))["pipelines"]) == 3


def parse_events(text: str) -> list[dict[str, Any]]:
    events = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and not line.startswith(":"):
                name, _, value = line.partition(": ")
                fields[name] = value
        if "data" in fields:
            events.append(
                {"id": int(fields["id"]), "event": fields["event"], **json.loads(fields["data"])}
            )
    return events


async def test_events_resume_after_the_last_event_id(http: Http) -> None:
    tree, node_id = callback_tree()
    await http.post("/api/pipelines", {"pipeline": tree}, 201)
    await wait_waiting(http, node_id)
    await http.post(f"/api/nodes/{node_id}/callback")
    await wait_pipeline(http, tree["id"], "FINISHED")

    status, content_type, text = await http.raw(
        f"/api/events?pipeline_id={tree['id']}&limit=3", {"Last-Event-ID": "0"}
    )
    assert status == 200
    assert content_type.startswith("text/event-stream")
    first = parse_events(text)
    assert len(first) == 3
    assert all(e["root_id"] == tree["id"] and is_iso(e["time"]) for e in first)
    assert first[0]["id"] < first[1]["id"] < first[2]["id"]
    status, _, text = await http.raw(
        f"/api/events?pipeline_id={tree['id']}&limit=1", {"Last-Event-ID": str(first[1]["id"])}
    )
    assert parse_events(text) == [first[2]]
    status, _, text = await http.raw(
        f"/api/events?pipeline_id={tree['id']}&limit=1&after={first[0]['id']}"
    )
    assert parse_events(text) == [first[1]]
