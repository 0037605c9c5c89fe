"""Malformed requests (422 naming the field), body limits and the OpenAPI description."""

from __future__ import annotations

from typing import Any

import pytest

from aiobamboo.testing import MemoryRuntime
from aiobamboo.web import ROUTES

from .conftest import Http, http_client
from .test_api import callback_tree


@pytest.fixture
async def http(framework: str) -> Any:
    async with MemoryRuntime() as runtime, http_client(framework, runtime, max_body=4096) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/pipelines", b"{not json", "body"),
        ("/api/pipelines", b"[1, 2]", "body"),
        ("/api/pipelines", b"{}", "pipeline"),
        ("/api/pipelines", b'{"pipeline": "tree"}', "pipeline"),
        ("/api/pipelines", b'{"pipeline": {}}', "pipeline.id"),
        (
            "/api/pipelines",
            b'{"pipeline": {"id": "p1"}, "cycle_tolerate": "yes"}',
            "cycle_tolerate",
        ),
        (
            "/api/pipelines",
            b'{"pipeline": {"id": "p1"}, "root_pipeline_data": []}',
            "root_pipeline_data",
        ),
        ("/api/pipelines", b'{"pipeline": {"id": "p1"}, "colour": "red"}', "colour"),
        ("/api/pipelines", b'{"pipeline": {"id": "p1", "start_event": {}}}', "pipeline"),
        ("/api/nodes/n1/retry", b'{"data": 3}', "data"),
        ("/api/nodes/n1/forced-fail", b'{"ex_data": 3}', "ex_data"),
        (
            "/api/nodes/n1/skip-conditional-parallel-gateway",
            b'{"flow_ids": "f1", "converge_gateway_id": "c"}',
            "flow_ids",
        ),
        (
            "/api/nodes/n1/skip-conditional-parallel-gateway",
            b'{"flow_ids": ["f1"]}',
            "converge_gateway_id",
        ),
        ("/api/pipelines/p1/pause", b'{"now": true}', "now"),
    ],
)
async def test_malformed_bodies_are_422_naming_the_field(
    http: Http, path: str, body: bytes, field: str
) -> None:
    status, answer = await http.request("POST", path, content=body)
    assert status == 422, answer
    assert answer["field"] == field
    assert answer["error"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"state": "SLEEPING"}, "state"),
        ({"limit": "many"}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"created_before": "2026-01-01T00:00:00"}, "created_before"),
        ({"cursor": "nonsense"}, "cursor"),
    ],
)
async def test_malformed_queries_are_422_naming_the_field(
    http: Http, query: dict[str, str], field: str
) -> None:
    status, answer = await http.request("GET", "/api/pipelines", params=query)
    assert status == 422, answer
    assert answer["field"] == field


async def test_malformed_event_cursors_are_422(http: Http) -> None:
    status, _, text = await http.raw("/api/events", {"Last-Event-ID": "yesterday"})
    assert status == 422
    assert "Last-Event-ID" in text
    status, _, text = await http.raw("/api/events?after=-1")
    assert status == 422
    assert '"field":"after"' in text


async def test_a_body_over_the_limit_is_413_and_not_run(http: Http) -> None:
    tree, _ = callback_tree()
    tree["name"] = "x" * 5000
    status, answer = await http.request("POST", "/api/pipelines", json_body={"pipeline": tree})
    assert status == 413, answer
    assert (await http.get("/api/pipelines"))["pipelines"] == []


async def test_openapi_describes_every_route(http: Http) -> None:
    spec = await http.get("/api/openapi.json")
    assert spec["openapi"].startswith("3.")
    described = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    assert described == {(r.method, r.path) for r in ROUTES if r.in_schema}
    assert {r.path for r in ROUTES if not r.in_schema} == {"/", "/pipelines/{id}"}
    run = spec["paths"]["/api/pipelines"]["post"]
    assert run["requestBody"]["content"]["application/json"]["schema"]["required"] == ["pipeline"]
    assert run["security"] == [{"bearer": []}]
    assert {"201", "401", "409", "422"} <= set(run["responses"])
    listing = spec["paths"]["/api/pipelines"]["get"]
    assert {p["name"] for p in listing["parameters"]} == {
        "state",
        "created_after",
        "created_before",
        "limit",
        "cursor",
    }
    for verb in (
        "callback",
        "retry",
        "skip",
        "forced-fail",
        "pause",
        "resume",
        "skip-exclusive-gateway",
        "skip-conditional-parallel-gateway",
    ):
        assert "post" in spec["paths"][f"/api/nodes/{{id}}/{verb}"]
    assert "text/event-stream" in spec["paths"]["/api/events"]["get"]["responses"]["200"]["content"]
