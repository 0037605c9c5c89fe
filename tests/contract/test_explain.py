"""``api.explain``: every way a pipeline waits, and the operation that unblocks it."""

from __future__ import annotations

from typing import Any

import pytest

from aiobamboo import api, states
from aiobamboo.builder import (
    ConditionalParallelGateway,
    ConvergeGateway,
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    Params,
    SubProcess,
    Var,
    build_tree,
)
from aiobamboo.exceptions import NotFoundError

from . import components_timers
from .components import GATES
from .ops_helpers import (
    act,
    flow_id,
    linear,
    ok,
    open_gate,
    place,
    start,
    steps,
    wait_outcome,
    wait_until,
)
from .parking_helpers import needs_shared_storage, opened, wait_parked

assert components_timers  # registers timer_hourly_poll


async def explained(
    runtime: Any, pipeline_id: str, kind: str, node_id: str, **fields: Any
) -> dict[str, Any]:
    """Poll ``explain`` until a wait of ``kind`` at ``node_id`` (with ``fields``) shows."""

    def matches(wait: dict[str, Any]) -> bool:
        return (
            wait["kind"] == kind
            and wait["node_id"] == node_id
            and all(wait.get(k) == v for k, v in fields.items())
        )

    async def check() -> dict[str, Any] | None:
        data = ok(await api.explain(runtime, pipeline_id))
        if any(matches(w) for w in data["waits"]):
            return data  # type: ignore[no-any-return]
        return None

    return await wait_until(check, f"explain to show a {kind} wait at {node_id}")


def wait_of(data: dict[str, Any], kind: str, node_id: str) -> dict[str, Any]:
    return next(w for w in data["waits"] if w["kind"] == kind and w["node_id"] == node_id)


def operations(wait: dict[str, Any]) -> list[str]:
    return [op["operation"] for op in wait["unblock"]]


async def apply(runtime: Any, op: dict[str, Any], **overrides: Any) -> None:
    """Call the suggested operation with its own arguments."""
    args = {**op["args"], **overrides}
    ok(await getattr(api, op["operation"])(runtime, *args.values()))


async def test_a_callback_wait_and_the_callback_that_ends_it(runtime: Any) -> None:
    node = act("callback")
    root_id = await start(runtime, linear(node))
    data = await explained(runtime, root_id, "callback", node.id)
    wait = wait_of(data, "callback", node.id)
    assert data["pipeline_id"] == root_id
    assert data["status"] == "active"
    assert data["state"] == states.RUNNING
    assert data["moving"] is False
    assert data["held_by"]["where"] in ("here", "parked")
    assert wait["component_code"] == "callback"
    assert wait["since"] is not None
    assert wait["callbacks_taken"] == 0
    assert operations(wait) == ["callback", "forced_fail_activity"]
    callback = wait["unblock"][0]
    assert callback["args"]["version"] == wait["version"]
    assert callback["call"].startswith(f"callback(runtime, {node.id!r}, {wait['version']!r}")
    assert any(node.id in wake for wake in data["wakes"])
    await apply(runtime, callback, data={"ok": 1})
    await wait_outcome(runtime, root_id, states.FINISHED)
    done = ok(await api.explain(runtime, root_id))
    assert done["status"] == "finished"
    assert done["state"] == states.FINISHED
    assert done["waits"] == []
    assert done["held_by"]["where"] == "ended"


async def test_a_poll_due_later(runtime: Any) -> None:
    node = act("timer_hourly_poll", polls=5)
    root_id = await start(runtime, linear(node))
    data = await explained(runtime, root_id, "poll", node.id, polls=1)
    wait = wait_of(data, "poll", node.id)
    assert wait["due"] is not None
    assert wait["due"] > wait["since"]
    assert operations(wait) == ["callback", "forced_fail_activity"]
    assert any("poll timer" in wake for wake in data["wakes"])
    ok(await api.revoke_pipeline(runtime, root_id))


async def test_a_failed_activity_with_its_ex_data_then_retried(runtime: Any) -> None:
    node = act("fail", **{"raise": True})
    root_id = await start(runtime, linear(node))
    data = await explained(runtime, root_id, "failed", node.id)
    wait = wait_of(data, "failed", node.id)
    assert "RuntimeError: boom from component" in wait["ex_data"]
    assert "boom from component" in wait["detail"]
    assert operations(wait) == ["retry_node", "skip_node"]
    assert wait["since"] is not None
    await apply(runtime, wait["unblock"][1])  # skip_node
    await wait_outcome(runtime, root_id, states.FINISHED)


async def test_an_unskippable_node_offers_retry_only(runtime: Any) -> None:
    node = act("fail", skippable=False)
    root_id = await start(runtime, linear(node))
    wait = wait_of(await explained(runtime, root_id, "failed", node.id), "failed", node.id)
    assert operations(wait) == ["retry_node"]
    assert wait["ex_data"] == "refused by component"


async def test_a_failed_exclusive_gateway_offers_each_flow(runtime: Any) -> None:
    eg = ExclusiveGateway(conditions={0: "1 == 2", 1: "1 == 3"})
    a, b = act("echo", text="a"), act("echo", text="b")
    cg = ConvergeGateway()

    def build(prev: Any) -> Any:
        prev.extend(eg).connect(a, b).to(eg).converge(cg)
        return cg

    tree = place("top", build).tree
    root_id = await start(runtime, tree)
    wait = wait_of(await explained(runtime, root_id, "failed", eg.id), "failed", eg.id)
    skips = [op for op in wait["unblock"] if op["operation"] == "skip_exclusive_gateway"]
    assert {op["args"]["flow_id"] for op in skips} == {
        flow_id(tree, eg.id, a.id),
        flow_id(tree, eg.id, b.id),
    }
    await apply(runtime, skips[0])
    await wait_outcome(runtime, root_id, states.FINISHED)


async def test_a_failed_conditional_parallel_gateway(runtime: Any) -> None:
    cpg = ConditionalParallelGateway(conditions={0: "1 == 2", 1: "1 == 3"})
    a, b = act("echo", text="a"), act("echo", text="b")
    cg = ConvergeGateway()

    def build(prev: Any) -> Any:
        prev.extend(cpg).connect(a, b).to(cpg).converge(cg)
        return cg

    root_id = await start(runtime, place("top", build).tree)
    wait = wait_of(await explained(runtime, root_id, "failed", cpg.id), "failed", cpg.id)
    skip = next(
        op for op in wait["unblock"] if op["operation"] == "skip_conditional_parallel_gateway"
    )
    assert skip["args"]["converge_gateway_id"] == cg.id
    assert len(skip["args"]["flow_ids"]) == 2
    await apply(runtime, skip)
    await wait_outcome(runtime, root_id, states.FINISHED)


async def test_a_converge_gateway_names_the_branches_it_waits_for(runtime: Any) -> None:
    bad = act("fail")
    placed = place("parallel", steps(bad))
    root_id = await start(runtime, placed.tree)
    converge_id = next(
        g["id"] for g in placed.tree["gateways"].values() if g["type"] == "ConvergeGateway"
    )
    data = await explained(runtime, root_id, "converge", converge_id, arrived=1)
    converge = wait_of(data, "converge", converge_id)
    assert wait_of(data, "failed", bad.id)["state"] == states.FAILED
    assert [b["node_id"] for b in converge["waiting_for"]] == [bad.id]
    assert converge["waiting_for"][0]["state"] == states.FAILED
    assert converge["arrived"] == 1
    assert bad.id in converge["detail"]


async def test_a_paused_node(runtime: Any) -> None:
    first, second = act("callback"), act("echo", text="x")
    root_id = await start(runtime, linear(first, second))
    version = wait_of(
        await explained(runtime, root_id, "callback", first.id), "callback", first.id
    )["version"]
    ok(await api.pause_node_appoint(runtime, second.id))
    ok(await api.callback(runtime, first.id, version, {}))
    wait = wait_of(
        await explained(runtime, root_id, "node_paused", second.id), "node_paused", second.id
    )
    assert operations(wait) == ["resume_node_appoint"]
    await apply(runtime, wait["unblock"][0])
    await wait_outcome(runtime, root_id, states.FINISHED)


async def test_a_paused_pipeline(runtime: Any) -> None:
    first, second = act("callback"), act("echo", text="x")
    root_id = await start(runtime, linear(first, second))
    version = wait_of(
        await explained(runtime, root_id, "callback", first.id), "callback", first.id
    )["version"]
    ok(await api.pause_pipeline(runtime, root_id))
    ok(await api.callback(runtime, first.id, version, {}))
    data = await explained(runtime, root_id, "pipeline_paused", second.id)
    assert data["state"] == states.SUSPENDED
    root_wait = wait_of(data, "pipeline_paused", root_id)
    wait = wait_of(data, "pipeline_paused", second.id)
    assert wait["paused_pipeline_id"] == root_id
    assert operations(wait) == operations(root_wait) == ["resume_pipeline"]
    await apply(runtime, wait["unblock"][0])
    await wait_outcome(runtime, root_id, states.FINISHED)


async def test_a_paused_sub_process(runtime: Any) -> None:
    inner_first, inner_second = act("callback"), act("echo", text="in")
    sub_start = EmptyStartEvent()
    sub_start.extend(inner_first).extend(inner_second).extend(EmptyEndEvent())
    sub = SubProcess(start=sub_start)
    s = EmptyStartEvent()
    s.extend(sub).extend(EmptyEndEvent())
    root_id = await start(runtime, build_tree(s))
    version = wait_of(
        await explained(runtime, root_id, "callback", inner_first.id), "callback", inner_first.id
    )["version"]
    ok(await api.pause_pipeline(runtime, sub.id))
    ok(await api.callback(runtime, inner_first.id, version, {}))
    data = await explained(runtime, root_id, "pipeline_paused", inner_second.id)
    wait = wait_of(data, "pipeline_paused", inner_second.id)
    assert wait["pipeline_id"] == sub.id
    assert wait["unblock"][0]["args"] == {"pipeline_id": sub.id}
    await apply(runtime, wait["unblock"][0])
    await wait_outcome(runtime, root_id, states.FINISHED)


async def test_a_failed_sub_process_offers_retry_subprocess(runtime: Any) -> None:
    sub_start = EmptyStartEvent()
    sub_start.extend(act("echo", text=Var(Var.SPLICE, "${p}"))).extend(EmptyEndEvent())
    sub = SubProcess(
        start=sub_start,
        data=Data(inputs={"${p}": Var(Var.PLAIN, "default")}),
        params=Params({"${p}": Var(Var.SPLICE, "${src}")}),
    )
    s = EmptyStartEvent()
    s.extend(sub).extend(EmptyEndEvent())
    tree = build_tree(s, data=Data(inputs={"${src}": Var(Var.LAZY, "x", custom_type="broken")}))
    root_id = await start(runtime, tree)
    wait = wait_of(await explained(runtime, root_id, "failed", sub.id), "failed", sub.id)
    assert wait["node_type"] == "SubProcess"
    assert "context hydrate failed" in wait["ex_data"]
    assert operations(wait) == ["retry_subprocess"]
    assert wait["unblock"][0]["args"] == {"node_id": sub.id}


async def test_a_running_node_is_moving(runtime: Any) -> None:
    node = act("gate")
    GATES.pop(node.id, None)
    root_id = await start(runtime, linear(node))
    data = await explained(runtime, root_id, "running", node.id)
    assert data["moving"] is True
    assert operations(wait_of(data, "running", node.id)) == ["forced_fail_activity"]
    open_gate(node.id)
    await wait_outcome(runtime, root_id, states.FINISHED)


async def test_any_node_id_explains_its_pipeline(runtime: Any) -> None:
    node = act("callback")
    root_id = await start(runtime, linear(node))
    data = await explained(runtime, node.id, "callback", node.id)
    assert data["pipeline_id"] == root_id


async def test_unknown_and_malformed_ids_are_refused(runtime: Any) -> None:
    res = await api.explain(runtime, "p-no-such-pipeline")
    assert not res.result
    assert isinstance(res.exc, NotFoundError)
    res = await api.explain(runtime, 5)  # type: ignore[arg-type]
    assert not res.result
    assert "pipeline_id" in res.message


@pytest.mark.parametrize("park", [True, False])
async def test_a_client_explains_a_run_a_worker_holds(runtime_factory: Any, park: bool) -> None:
    needs_shared_storage(runtime_factory.kind)
    from aiobamboo.engine import Settings

    node = act("callback")
    settings = Settings(park_after=0.0 if park else None)
    async with (
        opened(runtime_factory, settings=settings) as worker,
        opened(runtime_factory, worker=False) as client,
    ):
        root_id = await start(worker, linear(node))
        if park:
            await explained(worker, root_id, "callback", node.id)
            await wait_parked(worker, root_id)
        data = await explained(client, root_id, "callback", node.id)
        held = data["held_by"]
        if park:
            assert held["where"] == "parked"
            assert held["owner"] is None
            assert any(node.id in wake for wake in data["wakes"])
        elif runtime_factory.kind != "sqlite-parking":  # that kind parks every run
            assert held["where"] == "worker"
            assert held["owner"] == worker.store.owner_id
            assert held["lease_until"] is not None
        assert "callback" in data["summary"]


async def test_a_run_nobody_holds_waits_for_a_worker(runtime_factory: Any) -> None:
    needs_shared_storage(runtime_factory.kind)
    async with opened(runtime_factory, worker=False) as client:
        node = act("echo", text="never")
        root_id = await start(client, linear(node))
        data = ok(await api.explain(client, root_id))
        assert data["held_by"]["where"] == "nobody"
        assert "waits for a worker" in data["summary"]
        assert data["state"] == states.RUNNING


async def test_a_multi_callback_wait_counts_the_callbacks_taken(runtime: Any) -> None:
    node = act("multi_callback", count=3)
    root_id = await start(runtime, linear(node))
    wait = wait_of(await explained(runtime, root_id, "callback", node.id), "callback", node.id)
    assert "its next callback" in wait["detail"]
    ok(await api.callback(runtime, node.id, wait["version"], 1))
    data = await explained(runtime, root_id, "callback", node.id, callbacks_taken=1)
    assert operations(wait_of(data, "callback", node.id)) == ["callback", "forced_fail_activity"]
    ok(await api.revoke_pipeline(runtime, root_id))


async def test_a_run_whose_worker_died_is_taken_over_after_its_lease() -> None:
    from aiobamboo.testing import MemoryRuntime

    node = act("callback")
    async with MemoryRuntime() as worker:
        root_id = await start(worker, linear(node))
        await explained(worker, root_id, "callback", node.id)
        storage = worker.storage
        async with MemoryRuntime(storage, worker=False) as client:
            # As the worker's lease would be, had its process died a while ago.
            lease = storage.leases[root_id]
            lease.owner, lease.until = "w-dead", 1.0
            data = ok(await api.explain(client, root_id))
            assert data["held_by"]["where"] == "expired"
            assert data["held_by"]["owner"] == "w-dead"
            assert "lease ran out" in data["summary"]
