"""OpenTelemetry traces of pipeline runs (the ``tracing`` extra: opentelemetry-api and -sdk).

``Settings(observer=TracingObserver())`` turns them on for a runtime. The
spans go to the tracer provider given, else the global one: configure the
SDK (an exporter) as for any other program.

The shape of a trace (``docs/observability.md`` has the attributes):

- ``run_pipeline`` opens the trace with a span ``aiobamboo pipeline``, the
  child of whatever span is current in the caller, and stores its context
  with the run;
- each stay of the run in a worker's memory is a span ``aiobamboo run``, the
  child of that first span, wherever and whenever it happens: a run parked,
  reloaded after a crash or taken over from a dead worker continues the same
  trace, its new stay linked to the pipeline span;
- each node attempt's step is a span named by its node type and component
  code, under the stay or under its sub-process's span; it is current while
  the component's ``execute``/``schedule`` run, so spans of the user's own
  instrumented calls (HTTP, database) nest under it.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .. import __version__
from ..engine._env import Step
from ..engine._observer import Observer
from ..engine._run import Run, State
from ..engine._spec import ACTIVITY, SUBPROCESS
from ..states import FAILED, FINISHED, REVOKED, RUNNING

__all__ = ["TracingObserver"]

_PROPAGATOR = TraceContextTextMapPropagator()
#: Where the trace context is kept in what the observer stores with a run.
_KEY = "traceparent"
_ENDED = (FINISHED, FAILED, REVOKED)
#: Pipeline spans of run_pipeline calls under way, at most.
_STARTING_AT_MOST = 10_000


class _RunTrace:
    """The spans of one run while it is in this process's memory."""

    __slots__ = ("pipeline", "stay", "subprocesses")

    def __init__(self, stay: Span, pipeline: otel_context.Context | None) -> None:
        self.stay = stay
        self.pipeline = pipeline
        #: Open sub-process spans, by sub-process node id.
        self.subprocesses: dict[str, Span] = {}


class TracingObserver(Observer):
    """Spans for pipelines, their stays in memory and their node attempts."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self.tracer = trace.get_tracer("aiobamboo", __version__, tracer_provider=tracer_provider)
        self._runs: weakref.WeakKeyDictionary[Run, _RunTrace] = weakref.WeakKeyDictionary()
        self._starting: dict[str, Span] = {}

    # -- pipelines and runs ----------------------------------------------------
    def pipeline_starting(self, root_id: str) -> dict[str, Any] | None:
        span = self.tracer.start_span(
            "aiobamboo pipeline",
            kind=SpanKind.INTERNAL,
            attributes={"aiobamboo.pipeline_id": root_id},
        )
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=trace.set_span_in_context(span))
        previous = self._starting.pop(root_id, None)
        if previous is not None:  # a start that failed before it was stored
            previous.end()
        if len(self._starting) >= _STARTING_AT_MOST:
            # Starts that failed are never told: end the oldest rather than keep them.
            self._starting.pop(next(iter(self._starting))).end()
        self._starting[root_id] = span
        return {_KEY: carrier.get(_KEY)} if carrier.get(_KEY) else None

    def pipeline_started(self, run: Run) -> None:
        span = self._starting.pop(run.root_id, None)
        if span is not None:
            span.end()

    def run_held(self, run: Run, how: Literal["started", "loaded"]) -> None:
        stored = (run.observed or {}).get(_KEY)
        parent = _PROPAGATOR.extract({_KEY: stored}) if isinstance(stored, str) else None
        links = []
        if parent is not None and how == "loaded":
            linked = trace.get_current_span(parent).get_span_context()
            if linked.is_valid:
                links.append(Link(linked, {"aiobamboo.link": "pipeline"}))
        stay = self.tracer.start_span(
            "aiobamboo run",
            context=parent if parent is not None else otel_context.Context(),
            links=links,
            attributes={"aiobamboo.pipeline_id": run.root_id, "aiobamboo.held": how},
        )
        self._runs[run] = _RunTrace(stay, parent)

    def run_left(self, run: Run, how: Literal["ended", "parked", "dropped", "stopped"]) -> None:
        traced = self._runs.pop(run, None)
        if traced is None:
            return
        for span in traced.subprocesses.values():
            span.set_attribute("aiobamboo.outcome", "left memory")
            span.end()
        root = run.states.get(run.root_id)
        traced.stay.set_attribute("aiobamboo.left", how)
        if root is not None:
            traced.stay.set_attribute("aiobamboo.pipeline_state", str(root.state))
        traced.stay.end()

    # -- nodes -----------------------------------------------------------------
    def _parent(self, run: Run, step: Step) -> otel_context.Context:
        traced = self._runs.get(run)
        if traced is None:
            return otel_context.Context()
        for pipeline_id in reversed(step.proc.stack):
            span = traced.subprocesses.get(pipeline_id)
            if span is not None:
                return trace.set_span_in_context(span)
        return trace.set_span_in_context(traced.stay)

    @contextmanager
    def node_step(self, step: Step) -> Iterator[None]:
        node, st, run = step.node, step.state, step.run
        attributes: dict[str, Any] = {
            "aiobamboo.pipeline_id": run.root_id,
            "aiobamboo.node_id": node.id,
            "aiobamboo.node_type": node.type,
            "aiobamboo.version": st.version,
            "aiobamboo.loop": st.loop,
            "aiobamboo.retry": st.retry,
        }
        if node.kind == ACTIVITY:
            attributes["aiobamboo.component_code"] = node.code
            attributes["aiobamboo.component_version"] = node.version or "legacy"
        name = f"{node.type} {node.code}" if node.kind == ACTIVITY else node.type
        span = self.tracer.start_span(name, context=self._parent(run, step), attributes=attributes)
        keep_open = False
        try:
            with trace.use_span(span, end_on_exit=False, record_exception=False):
                yield
        except BaseException as exc:
            span.set_attribute("aiobamboo.outcome", "interrupted")
            if isinstance(exc, Exception):
                span.record_exception(exc)
                span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        else:
            state = str(st.state) if run.states.get(node.id) is st else "stale"
            span.set_attribute("aiobamboo.outcome", state)
            if state == FAILED:
                lines = str(run.exec_outputs(node.id).get("ex_data") or "").strip().splitlines()
                span.set_status(Status(StatusCode.ERROR, lines[-1] if lines else "failed"))
            traced = self._runs.get(run)
            keep_open = (
                node.kind == SUBPROCESS
                and state == RUNNING
                and traced is not None
                and step.proc.stack[-1:] == [node.id]
            )
            if keep_open and traced is not None:
                # Its nodes nest under it until it finishes (state_changed ends it).
                old = traced.subprocesses.pop(node.id, None)
                if old is not None:
                    old.end()
                traced.subprocesses[node.id] = span
        finally:
            if not keep_open:
                span.end()

    def state_changed(self, run: Run, state: State) -> None:
        if state.state not in _ENDED:
            return
        traced = self._runs.get(run)
        if traced is None:
            return
        span = traced.subprocesses.pop(state.node_id, None)
        if span is not None:
            span.set_attribute("aiobamboo.outcome", str(state.state))
            if state.state == FAILED:
                span.set_status(Status(StatusCode.ERROR, "failed"))
            span.end()
