"""OpenTelemetry spans of a run: the pipeline, its stays in memory, each node attempt."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from aiobamboo import api, states
from aiobamboo.builder import (
    ConvergeGateway,
    EmptyEndEvent,
    EmptyStartEvent,
    ParallelGateway,
    SubProcess,
    build_tree,
)
from aiobamboo.component import Component, Service
from aiobamboo.engine import Settings
from aiobamboo.observe.tracing import TracingObserver

from .helpers import activity, start, waiting_version
from .ops_helpers import ok, wait_outcome, wait_state, wait_until
from .parking_helpers import needs_shared_storage, opened

#: The provider of the test running: the engine's spans and the user's own go there.
PROVIDERS: list[TracerProvider] = []


def user_tracer() -> trace.Tracer:
    return PROVIDERS[-1].get_tracer("user")


class UserCallService(Service):
    """Stands for a component whose HTTP or database client is instrumented."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        with user_tracer().start_as_current_span("user call"):
            return True


class UserCallComponent(Component):
    code = "trace_user_call"
    name = "An instrumented call"
    bound_service = UserCallService


class SyncUserCallService(Service):
    def execute(self, data: Any, parent_data: Any) -> bool:
        with user_tracer().start_as_current_span("user call in a thread"):
            return True


class SyncUserCallComponent(Component):
    code = "trace_user_call_sync"
    name = "An instrumented call in a thread"
    bound_service = SyncUserCallService


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    found = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(found))
    PROVIDERS.append(provider)
    yield found
    PROVIDERS.remove(provider)
    provider.shutdown()


def observer() -> Settings:
    return Settings(observer=TracingObserver(PROVIDERS[-1]))


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def of_node(spans: list[ReadableSpan], node_id: str) -> list[ReadableSpan]:
    return [s for s in spans if (s.attributes or {}).get("aiobamboo.node_id") == node_id]


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


async def ended_stays(exporter: InMemorySpanExporter, count: int) -> list[ReadableSpan]:
    async def check() -> list[ReadableSpan] | None:
        stays = named(list(exporter.get_finished_spans()), "aiobamboo run")
        return stays if len(stays) >= count else None

    return await wait_until(check, f"{count} stays of the run to end")


async def test_the_tree_of_a_run_with_a_subprocess_parallel_branches_and_a_retry(
    runtime_factory: Any, exporter: InMemorySpanExporter
) -> None:
    first = activity("echo", text="first")
    pg, cg = ParallelGateway(), ConvergeGateway()
    left, flaky = activity("echo", text="left"), activity("fail")
    inner, inner_sync = activity("trace_user_call"), activity("trace_user_call_sync")
    sub_start = EmptyStartEvent()
    sub_start.extend(inner).extend(inner_sync).extend(EmptyEndEvent())
    sub = SubProcess(start=sub_start)
    s = EmptyStartEvent()
    s.extend(first).extend(pg).connect(left, flaky).to(pg).converge(cg).extend(sub).extend(
        EmptyEndEvent()
    )
    tree = build_tree(s)
    async with opened(runtime_factory, settings=observer()) as runtime:
        root_id = await start(runtime, tree)
        await wait_state(runtime, root_id, flaky.id, states.FAILED)
        ok(await api.retry_node(runtime, flaky.id, data={"ok": True}))
        await wait_outcome(runtime, root_id, states.FINISHED)
        await ended_stays(exporter, 1)
    spans = list(exporter.get_finished_spans())

    (pipeline,) = named(spans, "aiobamboo pipeline")
    assert pipeline.parent is None
    assert {s.context.trace_id for s in spans} == {pipeline.context.trace_id}, "one trace"
    stays = named(spans, "aiobamboo run")
    assert stays
    assert {parent_of(s) for s in stays} == {pipeline.context.span_id}
    stay_ids = {s.context.span_id for s in stays}

    (first_span,) = of_node(spans, first.id)
    assert first_span.name == "ServiceActivity echo"
    assert parent_of(first_span) in stay_ids
    assert first_span.attributes["aiobamboo.component_code"] == "echo"
    assert first_span.attributes["aiobamboo.loop"] == 1
    assert first_span.attributes["aiobamboo.outcome"] == states.FINISHED
    assert first_span.attributes["aiobamboo.version"]
    assert first_span.attributes["aiobamboo.pipeline_id"] == root_id

    for node in (pg, cg, left):
        assert all(parent_of(s) in stay_ids for s in of_node(spans, node.id)), node
    assert of_node(spans, pg.id)[0].name == "ParallelGateway"

    failed, retried = sorted(of_node(spans, flaky.id), key=lambda s: s.start_time or 0)
    assert failed.attributes["aiobamboo.outcome"] == states.FAILED
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.attributes["aiobamboo.retry"] == 0
    assert retried.attributes["aiobamboo.outcome"] == states.FINISHED
    assert retried.attributes["aiobamboo.retry"] == 1
    assert retried.attributes["aiobamboo.version"] != failed.attributes["aiobamboo.version"]
    assert parent_of(retried) in stay_ids

    (sub_span,) = of_node(spans, sub.id)
    assert sub_span.name == "SubProcess"
    assert sub_span.attributes["aiobamboo.outcome"] == states.FINISHED
    for node_id in (inner.id, inner_sync.id, sub_start.id):
        (span,) = of_node(spans, node_id)
        assert parent_of(span) == sub_span.context.span_id, node_id
    (user,) = named(spans, "user call")
    assert parent_of(user) == of_node(spans, inner.id)[0].context.span_id
    (user_sync,) = named(spans, "user call in a thread")
    assert parent_of(user_sync) == of_node(spans, inner_sync.id)[0].context.span_id


async def test_a_trace_goes_on_in_the_next_worker(
    runtime_factory: Any, exporter: InMemorySpanExporter
) -> None:
    needs_shared_storage(runtime_factory.kind)
    waiting = activity("callback")
    s = EmptyStartEvent()
    s.extend(waiting).extend(EmptyEndEvent())
    tree = build_tree(s)
    async with opened(runtime_factory, settings=observer()) as first:
        root_id = await start(first, tree)
        version = await waiting_version(first, waiting.id)
    # The first worker is gone; the next one takes the run over from storage.
    async with opened(runtime_factory, settings=observer()) as second:
        ok(await api.callback(second, waiting.id, version, {}))
        await wait_outcome(second, root_id, states.FINISHED)
        stays = await ended_stays(exporter, 2)
    spans = list(exporter.get_finished_spans())
    (pipeline,) = named(spans, "aiobamboo pipeline")
    assert {s.context.trace_id for s in spans} == {pipeline.context.trace_id}
    assert {parent_of(s) for s in stays} == {pipeline.context.span_id}
    loaded = [s for s in stays if s.attributes["aiobamboo.held"] == "loaded"]
    assert loaded
    for stay in loaded:
        assert [link.context.span_id for link in stay.links] == [pipeline.context.span_id]
    last = max(stays, key=lambda s: s.start_time or 0)
    assert last.attributes["aiobamboo.left"] == "ended"
    assert last.attributes["aiobamboo.pipeline_state"] == states.FINISHED
    attempts = of_node(spans, waiting.id)
    assert {s.attributes["aiobamboo.version"] for s in attempts} == {version}
    assert attempts[-1].attributes["aiobamboo.outcome"] == states.FINISHED


async def test_a_run_started_inside_a_span_joins_its_trace(
    runtime_factory: Any, exporter: InMemorySpanExporter
) -> None:
    s = EmptyStartEvent()
    s.extend(activity("echo", text="x")).extend(EmptyEndEvent())
    async with opened(runtime_factory, settings=observer()) as runtime:
        with PROVIDERS[-1].get_tracer("app").start_as_current_span("request") as request:
            root_id = await start(runtime, build_tree(s))
        assert trace.get_current_span() is not request
        await wait_outcome(runtime, root_id, states.FINISHED)
        await ended_stays(exporter, 1)
    (pipeline,) = named(list(exporter.get_finished_spans()), "aiobamboo pipeline")
    assert parent_of(pipeline) == request.get_span_context().span_id
