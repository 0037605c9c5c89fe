"""Prometheus metrics of the engine (the ``metrics`` extra: ``prometheus_client``).

``Settings(observer=PrometheusObserver())`` turns them on for a runtime;
``aiobamboo worker --metrics-port PORT`` does it and serves ``/metrics``.
Labels are few and bounded (a component code, a node type, an outcome):
never a pipeline or node id. ``docs/observability.md`` lists the families.
"""

from __future__ import annotations

import weakref
from typing import Any, Literal

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

from ..engine._env import Step
from ..engine._observer import CallOutcome, Observer, Phase
from ..engine._run import Run, State
from ..states import FAILED
from ..storage import GroupCommitter

__all__ = ["PrometheusObserver", "serve_metrics"]

#: Seconds: from a fast in-process call to a long remote one.
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
#: Batches in one group commit.
GROUP_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class _Families:
    """The metric families, registered once per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(
            name: str, doc: str, buckets: tuple[float, ...], labels: tuple[str, ...] = ()
        ) -> Histogram:
            return Histogram(name, doc, labels, registry=registry, buckets=buckets)

        self.executions = counter(
            "aiobamboo_node_executions",
            "Component execute() calls, by component code and outcome "
            "(success, failure, raised, abandoned)",
            ("code", "outcome"),
        )
        self.schedules = counter(
            "aiobamboo_node_schedules",
            "Component schedule() calls (polls and callbacks), by component code and outcome",
            ("code", "outcome"),
        )
        self.execute_seconds = histogram(
            "aiobamboo_node_execute_seconds",
            "Duration of component execute() calls, by component code",
            DURATION_BUCKETS,
            ("code",),
        )
        self.schedule_seconds = histogram(
            "aiobamboo_node_schedule_seconds",
            "Duration of component schedule() calls, by component code",
            DURATION_BUCKETS,
            ("code",),
        )
        self.nodes_failed = counter(
            "aiobamboo_nodes_failed",
            "Nodes that went FAILED, by node type and component code (empty for non-activities)",
            ("type", "code"),
        )
        self.pipelines_started = counter("aiobamboo_pipelines_started", "Pipelines started")
        self.pipelines_finished = counter("aiobamboo_pipelines_finished", "Pipelines finished")
        self.pipelines_failed = counter(
            "aiobamboo_pipelines_failed",
            "Node failures of pipelines (a pipeline_failed event; the pipeline stays RUNNING)",
        )
        self.pipelines_revoked = counter("aiobamboo_pipelines_revoked", "Pipelines revoked")
        self.runs_in_memory = Gauge(
            "aiobamboo_runs_in_memory",
            "Runs held in this process's memory by its schedulers",
            registry=registry,
        )
        self.runs_loaded = counter(
            "aiobamboo_runs_loaded",
            "Runs loaded into memory from storage (claimed, woken, reloaded)",
        )
        self.runs_parked = counter(
            "aiobamboo_runs_parked", "Runs that left memory to wait on the outside world"
        )
        self.timers_fired = counter("aiobamboo_timers_fired", "Poll timers that came due")
        self.timer_lateness = histogram(
            "aiobamboo_timer_lateness_seconds",
            "How late a poll ran after its due time",
            DURATION_BUCKETS,
        )
        self.commit_group_size = histogram(
            "aiobamboo_commit_group_size",
            "Batches (steps of runs) written by one group commit",
            GROUP_BUCKETS,
        )
        self.commit_seconds = histogram(
            "aiobamboo_commit_seconds", "Duration of one group commit", DURATION_BUCKETS
        )
        self.callbacks = counter(
            "aiobamboo_callbacks",
            "api.callback calls answered, by outcome (accepted, refused)",
            ("outcome",),
        )
        self.command_seconds = histogram(
            "aiobamboo_command_seconds",
            "Round trip of an operation sent to the worker holding its run (a client's "
            "callback, retry, ...), by operation and outcome (applied, refused)",
            DURATION_BUCKETS,
            ("op", "outcome"),
        )
        #: The schedulers observed into this registry, for the runs-in-memory gauge.
        self.schedulers: weakref.WeakSet[Any] = weakref.WeakSet()
        self.runs_in_memory.set_function(self._runs_in_memory)

    def _runs_in_memory(self) -> float:
        return float(sum(len(scheduler.runs) for scheduler in list(self.schedulers)))

    def on_group(self, batches: int, seconds: float) -> None:
        self.commit_group_size.observe(batches)
        self.commit_seconds.observe(seconds)


_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()


class PrometheusObserver(Observer):
    """Counts and times the engine's work into Prometheus metric families.

    ``registry``: where the families are registered (the default registry of
    ``prometheus_client`` unless given). Several observers on one registry
    share its families, so several runtimes of one process add up.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else REGISTRY
        families = _FAMILIES.get(self.registry)
        if families is None:
            families = _FAMILIES[self.registry] = _Families(self.registry)
        self.families = families

    def attach(self, scheduler: Any) -> None:
        families = self.families
        families.schedulers.add(scheduler)
        # Group commits are the store's, not the scheduler's: counted while a
        # scheduler of this registry runs, once however many there are.
        if families.on_group not in GroupCommitter.listeners:
            GroupCommitter.listeners.append(families.on_group)

    def detach(self, scheduler: Any) -> None:
        families = self.families
        families.schedulers.discard(scheduler)
        if not families.schedulers and families.on_group in GroupCommitter.listeners:
            GroupCommitter.listeners.remove(families.on_group)

    def pipeline_started(self, run: Run) -> None:
        self.families.pipelines_started.inc()

    def pipeline_ended(self, run: Run, how: Literal["finished", "revoked"]) -> None:
        if how == "finished":
            self.families.pipelines_finished.inc()
        else:
            self.families.pipelines_revoked.inc()

    def run_held(self, run: Run, how: Literal["started", "loaded"]) -> None:
        if how == "loaded":
            self.families.runs_loaded.inc()

    def run_left(self, run: Run, how: Literal["ended", "parked", "dropped", "stopped"]) -> None:
        if how == "parked":
            self.families.runs_parked.inc()

    def state_changed(self, run: Run, state: State) -> None:
        if state.state != FAILED:
            return
        node = run.spec.nodes.get(state.node_id)
        self.families.pipelines_failed.inc()
        if node is not None:
            self.families.nodes_failed.labels(node.type, node.code if node.code else "").inc()

    def component_called(
        self, step: Step, phase: Phase, seconds: float, outcome: CallOutcome
    ) -> None:
        code = step.node.code
        if phase == "execute":
            self.families.executions.labels(code, outcome).inc()
            self.families.execute_seconds.labels(code).observe(seconds)
        else:
            self.families.schedules.labels(code, outcome).inc()
            self.families.schedule_seconds.labels(code).observe(seconds)

    def timer_fired(self, run: Run, node_id: str, late: float) -> None:
        self.families.timers_fired.inc()
        self.families.timer_lateness.observe(max(late, 0.0))

    def callback_answered(self, accepted: bool) -> None:
        self.families.callbacks.labels("accepted" if accepted else "refused").inc()

    def command_answered(self, op: str, seconds: float, applied: bool) -> None:
        outcome = "applied" if applied else "refused"
        self.families.command_seconds.labels(op, outcome).observe(seconds)


def serve_metrics(
    port: int, addr: str = "127.0.0.1", registry: CollectorRegistry | None = None
) -> None:
    """Serve ``/metrics`` on ``addr:port`` from a thread (``prometheus_client``'s own server)."""
    start_http_server(port, addr=addr, registry=registry if registry is not None else REGISTRY)
