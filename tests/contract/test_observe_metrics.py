"""Prometheus metrics of a runtime with ``Settings(observer=PrometheusObserver(...))``."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from aiobamboo import api, states
from aiobamboo.engine import Settings
from aiobamboo.observe.metrics import PrometheusObserver
from aiobamboo.storage import GroupCommitter

from .helpers import activity, run, start, waiting_version
from .ops_helpers import linear, ok, wait_outcome
from .parking_helpers import needs_shared_storage, opened


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


async def test_the_families_count_a_runs_work(runtime_factory: Any) -> None:
    registry = CollectorRegistry()
    observer = PrometheusObserver(registry)
    async with opened(runtime_factory, settings=Settings(observer=observer)) as runtime:
        await run(runtime, linear(activity("echo", text="a"), activity("sync_echo", text="b")))
        bad = activity("fail", **{"raise": True})
        failed_root = await run(runtime, linear(bad), states.FAILED)
        waiting = activity("callback")
        waiting_root = await start(runtime, linear(waiting))
        version = await waiting_version(runtime, waiting.id)
        refused = await api.callback(runtime, waiting.id, "v-wrong", {})
        assert not refused.result
        ok(await api.callback(runtime, waiting.id, version, {"ok": True}))
        await wait_outcome(runtime, waiting_root, states.FINISHED)
        ok(await api.revoke_pipeline(runtime, failed_root))
        await wait_outcome(runtime, failed_root, states.REVOKED)
        assert value(registry, "aiobamboo_runs_in_memory") >= 0

    assert value(registry, "aiobamboo_pipelines_started_total") == 3
    assert value(registry, "aiobamboo_pipelines_finished_total") == 2
    assert value(registry, "aiobamboo_pipelines_revoked_total") == 1
    assert value(registry, "aiobamboo_pipelines_failed_total") == 1
    assert value(registry, "aiobamboo_nodes_failed_total", type="ServiceActivity", code="fail") == 1
    assert value(registry, "aiobamboo_node_executions_total", code="echo", outcome="success") == 1
    assert (
        value(registry, "aiobamboo_node_executions_total", code="sync_echo", outcome="success") == 1
    )
    assert value(registry, "aiobamboo_node_executions_total", code="fail", outcome="raised") == 1
    assert value(registry, "aiobamboo_node_execute_seconds_count", code="echo") == 1
    assert value(registry, "aiobamboo_node_execute_seconds_sum", code="echo") > 0
    assert (
        value(registry, "aiobamboo_node_schedules_total", code="callback", outcome="success") == 1
    )
    assert value(registry, "aiobamboo_node_schedule_seconds_count", code="callback") == 1
    assert value(registry, "aiobamboo_callbacks_total", outcome="accepted") == 1
    assert value(registry, "aiobamboo_callbacks_total", outcome="refused") == 1
    assert value(registry, "aiobamboo_commit_group_size_count") > 0
    assert value(registry, "aiobamboo_commit_group_size_sum") >= value(
        registry, "aiobamboo_commit_group_size_count"
    )
    assert value(registry, "aiobamboo_commit_seconds_count") > 0
    if runtime_factory.kind == "sqlite-parking":
        assert value(registry, "aiobamboo_runs_parked_total") >= 1
        assert value(registry, "aiobamboo_runs_loaded_total") >= 1
    # The runtime is closed: its group commits are no longer listened to.
    assert observer.families.on_group not in GroupCommitter.listeners


async def test_poll_timers_that_come_due(runtime_factory: Any) -> None:
    registry = CollectorRegistry()
    settings = Settings(observer=PrometheusObserver(registry))
    async with opened(runtime_factory, settings=settings) as runtime:
        # Polls at once, then twice more, 10 ms apart: two timers come due.
        await run(runtime, linear(activity("poll", polls=3)))
    assert value(registry, "aiobamboo_timers_fired_total") == 2
    assert value(registry, "aiobamboo_timer_lateness_seconds_count") == 2
    assert value(registry, "aiobamboo_node_schedules_total", code="poll", outcome="success") == 3


async def test_two_runtimes_share_one_registrys_families(runtime_factory: Any) -> None:
    registry = CollectorRegistry()
    first, second = PrometheusObserver(registry), PrometheusObserver(registry)
    assert first.families is second.families
    async with opened(runtime_factory, settings=Settings(observer=first)) as runtime:
        await run(runtime, linear(activity("echo", text="x")))
    assert value(registry, "aiobamboo_pipelines_started_total") == 1


async def test_operations_a_client_sends_to_the_worker(runtime_factory: Any) -> None:
    needs_shared_storage(runtime_factory.kind)
    registry = CollectorRegistry()
    client_settings = Settings(observer=PrometheusObserver(registry))
    async with (
        opened(runtime_factory) as worker,
        opened(runtime_factory, worker=False, settings=client_settings) as client,
    ):
        waiting = activity("callback")
        root_id = await start(worker, linear(waiting))
        await waiting_version(worker, waiting.id)
        ok(await api.pause_pipeline(client, root_id))
        refused = await api.pause_pipeline(client, root_id)
        assert not refused.result
    applied = {"op": "pause_pipeline", "outcome": "applied"}
    assert value(registry, "aiobamboo_command_seconds_count", **applied) == 1
    assert value(registry, "aiobamboo_command_seconds_sum", **applied) > 0
    assert (
        value(registry, "aiobamboo_command_seconds_count", op="pause_pipeline", outcome="refused")
        == 1
    )
