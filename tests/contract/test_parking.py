"""Parked runs: a run that waits only on the outside world leaves memory, and whatever
it waits for (a callback, an operator, a wait_pipeline caller) finds it as if it had
stayed. Every operation is checked on a parked run and on one kept in memory, with the
same assertions.
"""

from __future__ import annotations

import functools
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from aiobamboo import api
from aiobamboo.builder import ConvergeGateway, ExclusiveGateway, Var
from aiobamboo.engine import Settings

from .components import EXECUTIONS
from .components_ops import OPS_EXECUTIONS
from .ops_helpers import (
    TIMEOUT,
    act,
    flow_id,
    grace,
    histories,
    linear,
    new_gate,
    ok,
    open_gate,
    outputs,
    place,
    race,
    refused,
    start,
    state_of,
    tree_states,
    wait_outcome,
    wait_state,
    wait_until,
)
from .parking_helpers import (
    ClaimSpy,
    in_memory,
    needs_shared_storage,
    opened,
    parking_settings,
    rest,
    wait_parked,
)


@pytest.fixture(params=[0.0, None], ids=["parked", "in-memory"])
async def engine(request: pytest.FixtureRequest, runtime_factory: Any) -> AsyncIterator[Any]:
    """A worker whose runs park at once, or never: the operations must not tell them apart."""
    park_after = request.param
    if park_after is None and runtime_factory.kind == "sqlite-parking":
        pytest.skip("this runtime kind parks every run")
    async with opened(runtime_factory, settings=Settings(park_after=park_after)) as rt:
        yield rt


@pytest.fixture
async def parking(runtime_factory: Any) -> AsyncIterator[Any]:
    async with opened(runtime_factory, settings=parking_settings()) as rt:
        yield rt


async def waiting(runtime: Any, root: str, node_id: str) -> str:
    """Wait until ``node_id`` waits for its callback (executed, asleep); its version."""
    found = await wait_state(runtime, root, node_id, "RUNNING")

    async def executed() -> bool:
        return bool(await outputs(runtime, node_id))

    await wait_until(executed, f"{node_id} to execute")
    return str(found["version"])


async def deliver(runtime: Any, node_id: str, version: str, data: Any) -> Any:
    """``api.callback``, retried only while the node's process is not asleep yet."""
    with anyio.fail_after(TIMEOUT):
        while True:
            res = await api.callback(runtime, node_id, version, data)
            if res.result or "can not find sleep process" not in res.message:
                return res
            await anyio.sleep(0.002)


# ======================================================================================
# leaving memory and coming back
# ======================================================================================


async def test_a_run_waiting_on_a_callback_parks_and_the_callback_finishes_it(
    parking: Any,
) -> None:
    waiter, after = act("callback"), act("echo")
    root = await start(parking, linear(waiter, after))
    version = await waiting(parking, root, waiter.id)
    await wait_parked(parking, root)
    spy = ClaimSpy(parking)

    ok(await api.callback(parking, waiter.id, version, {"answer": 42}))
    await wait_outcome(parking, root, "FINISHED")
    assert spy.count(root) >= 1, "the callback did not load the parked run"
    assert (await outputs(parking, waiter.id))["callback_data"] == {"answer": 42}
    assert await state_of(parking, root, after.id) == "FINISHED"
    assert EXECUTIONS[waiter.id] == 1  # loading a run does not execute its node again

    async def gone() -> bool:
        return not in_memory(parking, root)

    await wait_until(gone, "the finished run to leave memory")


async def test_with_park_after_none_a_waiting_run_stays_in_memory(runtime_factory: Any) -> None:
    if runtime_factory.kind == "sqlite-parking":
        pytest.skip("this runtime kind parks every run")
    async with opened(runtime_factory, settings=Settings(park_after=None)) as rt:
        waiter = act("callback")
        root = await start(rt, linear(waiter))
        version = await waiting(rt, root, waiter.id)
        spy = ClaimSpy(rt)
        # Longer than a parking worker takes to park it (the test above, at park_after=0).
        for _ in range(10):
            await anyio.sleep(0.03)
            assert root in rt.scheduler.runs
        ok(await api.callback(rt, waiter.id, version, {"stayed": True}))
        await wait_outcome(rt, root, "FINISHED")
        assert spy.count(root) == 0
        assert (await outputs(rt, waiter.id))["callback_data"] == {"stayed": True}


async def test_a_run_waits_park_after_seconds_before_it_parks(runtime_factory: Any) -> None:
    if runtime_factory.kind == "sqlite-parking":
        pytest.skip("this runtime kind parks every run")
    async with opened(runtime_factory, settings=Settings(park_after=0.6)) as rt:
        waiter = act("callback")
        # Taken before the run starts, so before it rests: a lower bound that never flakes.
        began = time.monotonic()
        root = await start(rt, linear(waiter))
        await waiting(rt, root, waiter.id)
        assert root in rt.scheduler.runs
        await wait_parked(rt, root)
        assert time.monotonic() - began >= 0.55
        ok(await api.revoke_pipeline(rt, root))


async def test_reads_of_a_parked_run_do_not_load_it(parking: Any) -> None:
    done, waiter = act("echo", text="before"), act("callback", x=1)
    root = await start(parking, linear(done, waiter))
    version = await waiting(parking, root, waiter.id)
    await wait_parked(parking, root)
    spy = ClaimSpy(parking)

    states = await tree_states(parking, root)
    assert states[root]["state"] == "RUNNING"
    assert states[done.id]["state"] == "FINISHED"
    assert (states[waiter.id]["state"], states[waiter.id]["version"]) == ("RUNNING", version)
    children = ok(await api.get_children_states(parking, root))
    assert children[root]["state"] == "RUNNING"
    data = ok(await api.get_execution_data(parking, waiter.id))
    assert data["inputs"]["x"] == 1
    assert data["outputs"]["waiting"] is True
    assert ok(await api.get_execution_data_outputs(parking, done.id))["echo"] == "before"
    assert ok(await api.get_execution_data_inputs(parking, waiter.id))["x"] == 1
    assert ok(await api.get_data(parking, waiter.id))["inputs"]["x"]["value"] == 1
    assert ok(await api.get_node_histories(parking, done.id)) == []
    assert ok(await api.get_node_short_histories(parking, done.id)) == []

    assert spy.count(root) == 0, "a read loaded the parked run"
    assert not in_memory(parking, root)
    ok(await api.callback(parking, waiter.id, version, {}))
    await wait_outcome(parking, root, "FINISHED")


# ======================================================================================
# every operation wakes a parked run and behaves as on an in-memory one
# ======================================================================================


async def test_pause_and_resume_pipeline(engine: Any) -> None:
    waiter, after = act("callback"), act("echo")
    root = await start(engine, linear(waiter, after))
    version = await waiting(engine, root, waiter.id)
    await rest(engine, root)

    ok(await api.pause_pipeline(engine, root))
    assert await state_of(engine, root, root) == "SUSPENDED"
    await rest(engine, root)
    # The node running when the pipeline was paused still takes its callback...
    ok(await deliver(engine, waiter.id, version, {"n": 1}))
    await wait_state(engine, root, waiter.id, "FINISHED")
    assert await wait_outcome(engine, root) == "SUSPENDED"
    # ...but nothing after it starts.
    await rest(engine, root)
    await grace()
    assert await state_of(engine, root, after.id) is None
    refused(await api.pause_pipeline(engine, root))

    ok(await api.resume_pipeline(engine, root))
    await wait_outcome(engine, root, "FINISHED")
    assert (await outputs(engine, waiter.id))["callback_data"] == {"n": 1}
    assert EXECUTIONS[after.id] == 1
    refused(await api.resume_pipeline(engine, root), "has already finished")


async def test_revoke(engine: Any) -> None:
    waiter, after = act("callback"), act("echo")
    root = await start(engine, linear(waiter, after))
    version = await waiting(engine, root, waiter.id)
    await rest(engine, root)

    ok(await api.revoke_pipeline(engine, root))
    assert await wait_outcome(engine, root) == "REVOKED"
    assert await state_of(engine, root, root) == "REVOKED"
    refused(await api.callback(engine, waiter.id, version, {}), "revoked")
    refused(await api.revoke_pipeline(engine, root), "revoked")
    await grace()
    assert await state_of(engine, root, after.id) is None
    assert not in_memory(engine, root)


async def test_retry_of_a_failed_node(engine: Any) -> None:
    flaky, after = act("ops_fail_once"), act("echo")
    root = await start(engine, linear(flaky, after))
    failed = await wait_state(engine, root, flaky.id, "FAILED")
    assert await wait_outcome(engine, root) == "FAILED"
    await rest(engine, root)

    ok(await api.retry_node(engine, flaky.id))
    await wait_outcome(engine, root, "FINISHED")
    states = await tree_states(engine, root)
    assert states[flaky.id]["retry"] == 1
    assert states[flaky.id]["version"] != failed["version"]
    assert states[after.id]["state"] == "FINISHED"
    assert OPS_EXECUTIONS[flaky.id] == 2
    rows = await histories(engine, flaky.id)
    assert [r["version"] for r in rows] == [failed["version"]]


async def test_skip_of_a_failed_node(engine: Any) -> None:
    failing, after = act("fail"), act("echo")
    root = await start(engine, linear(failing, after))
    await wait_state(engine, root, failing.id, "FAILED")
    await rest(engine, root)

    ok(await api.skip_node(engine, failing.id))
    await wait_outcome(engine, root, "FINISHED")
    states = await tree_states(engine, root)
    assert states[failing.id]["state"] == "FINISHED"
    assert states[failing.id]["skip"] is True
    assert states[after.id]["state"] == "FINISHED"
    assert EXECUTIONS[failing.id] == 1


async def test_forced_fail_of_a_waiting_node_then_retry(engine: Any) -> None:
    waiter = act("callback")
    root = await start(engine, linear(waiter))
    old = await waiting(engine, root, waiter.id)
    await rest(engine, root)

    ok(await api.forced_fail_activity(engine, waiter.id, "operator says no"))
    assert await wait_outcome(engine, root) == "FAILED"
    assert (await outputs(engine, waiter.id))["ex_data"] == "operator says no"
    res = await api.forced_fail_activity(engine, waiter.id, "again")
    assert refused(res) == f"{waiter.id} state is not RUNNING, actual: FAILED"
    refused(await api.callback(engine, waiter.id, old, {}))
    await rest(engine, root)

    ok(await api.retry_node(engine, waiter.id))
    new = await waiting(engine, root, waiter.id)
    assert new != old
    await rest(engine, root)
    res = await api.callback(engine, waiter.id, old, {"stale": True})
    assert refused(res) == f"node version {old} not exist"
    ok(await api.callback(engine, waiter.id, new, {"fresh": True}))
    await wait_outcome(engine, root, "FINISHED")
    assert (await outputs(engine, waiter.id))["callback_data"] == {"fresh": True}
    assert EXECUTIONS[waiter.id] == 2


async def test_pause_node_appoint_and_resume(engine: Any) -> None:
    waiter, paused, after = act("callback"), act("echo"), act("echo")
    root = await start(engine, linear(waiter, paused, after))
    version = await waiting(engine, root, waiter.id)
    await rest(engine, root)

    ok(await api.pause_node_appoint(engine, paused.id))
    await rest(engine, root)
    ok(await api.callback(engine, waiter.id, version, {}))
    res = await api.wait_pipeline(engine, root, timeout=TIMEOUT)
    assert (res.data, res.message) == ("SUSPENDED", f"paused at: {paused.id}")
    await rest(engine, root)
    states = await tree_states(engine, root)
    assert states[paused.id]["state"] == "SUSPENDED"
    assert states[root]["state"] == "RUNNING"
    assert after.id not in states
    assert EXECUTIONS[paused.id] == 0

    ok(await api.resume_node_appoint(engine, paused.id))
    await wait_outcome(engine, root, "FINISHED")
    assert EXECUTIONS[paused.id] == 1
    assert EXECUTIONS[after.id] == 1


@pytest.mark.parametrize("placement", ["top", "subprocess"])
async def test_skip_exclusive_gateway_of_a_failed_gateway(engine: Any, placement: str) -> None:
    eg = ExclusiveGateway(conditions={0: "${x} == 1", 1: "${x} == 2"})
    a, b, cg = act("echo", text="a"), act("echo", text="b"), ConvergeGateway()

    def build(prev: Any) -> Any:
        prev.extend(eg).connect(a, b).to(eg).converge(cg)
        return cg

    placed = place(placement, build, variables={"${x}": Var(Var.PLAIN, 3)})
    root = await start(engine, placed.tree)
    failed = await wait_state(engine, root, eg.id, "FAILED")
    await rest(engine, root)

    ok(await api.skip_exclusive_gateway(engine, eg.id, flow_id(placed.tree, eg.id, b.id)))
    await wait_outcome(engine, root, "FINISHED")
    states = await tree_states(engine, root)
    assert (states[eg.id]["state"], states[eg.id]["skip"]) == ("FINISHED", True)
    assert states[eg.id]["version"] != failed["version"]
    assert states[b.id]["state"] == "FINISHED"
    assert a.id not in states


async def test_multi_callbacks_one_at_a_time_and_at_once(engine: Any) -> None:
    waiter = act("multi_callback", count=5)
    root = await start(engine, linear(waiter))
    version = await waiting(engine, root, waiter.id)
    for n in range(2):
        await rest(engine, root)
        ok(await deliver(engine, waiter.id, version, {"n": n}))
    await rest(engine, root)
    # Four callbacks at once for the three places left: three are taken, one refused,
    # and each is acknowledged exactly when schedule() took it.
    results = await race(
        random.Random(7),
        *(
            functools.partial(api.callback, engine, waiter.id, version, {"n": n})
            for n in range(2, 6)
        ),
    )
    acked = [{"n": n} for n, res in zip(range(2, 6), results, strict=True) if res.result]
    assert len(acked) == 3, [r.message for r in results]
    for res in results:
        if not res.result:
            refused(res)  # it came after the schedule ended: whatever it says, not an error
    await wait_outcome(engine, root, "FINISHED")
    received = (await outputs(engine, waiter.id))["received"]
    assert received[:2] == [{"n": 0}, {"n": 1}]
    assert sorted(received[2:], key=str) == sorted(acked, key=str)


async def test_callbacks_at_once_to_a_parked_multi_callback_node_load_it_once(
    parking: Any,
) -> None:
    waiter = act("multi_callback", count=6)
    root = await start(parking, linear(waiter))
    version = await waiting(parking, root, waiter.id)
    await wait_parked(parking, root)
    spy = ClaimSpy(parking)
    results = await race(
        None,
        *(functools.partial(api.callback, parking, waiter.id, version, {"n": n}) for n in range(6)),
    )
    assert all(r.result for r in results), [r.message for r in results]
    await wait_outcome(parking, root, "FINISHED")
    received = (await outputs(parking, waiter.id))["received"]
    assert sorted(received, key=str) == sorted(({"n": n} for n in range(6)), key=str)
    # Concurrent callers share one claim of the parked run.
    assert spy.count(root) == 1, spy.claimed


async def test_each_of_many_callbacks_at_once_is_acknowledged_exactly_when_taken(
    engine: Any, runtime_factory: Any
) -> None:
    """Ten callbacks at once to a node that takes four: the four taken are acknowledged,
    the six others refused, round after round.

    Commits land a little late (as on a loaded database; Postgres has its own latency),
    so that the callbacks' commits straddle the schedule's end and the run's.
    """
    latency = 0.0 if runtime_factory.kind == "postgres" else 0.002
    commit = engine.store.commit
    rng = random.Random(99)

    async def late(batch: Any) -> None:
        await anyio.sleep(rng.random() * latency)
        await commit(batch)

    engine.store.commit = late
    for round_ in range(40):
        waiter = act("multi_callback", count=4)
        root = await start(engine, linear(waiter))
        version = await waiting(engine, root, waiter.id)
        await rest(engine, root)
        results = await race(
            random.Random(round_),
            *(
                functools.partial(api.callback, engine, waiter.id, version, {"n": n})
                for n in range(10)
            ),
        )
        await wait_outcome(engine, root, "FINISHED")
        received = sorted(r["n"] for r in (await outputs(engine, waiter.id))["received"])
        acked = [n for n, res in enumerate(results) if res.result]
        assert acked == received, f"round {round_}: acknowledged {acked}, taken {received}"


async def _one_of_many(runtime: Any, sender: Any) -> None:
    """Five callbacks at once to a parked single-callback node: one is taken, and it is
    the one acknowledged; the others are refused."""
    for round_ in range(20):
        waiter = act("callback")
        root = await start(runtime, linear(waiter))
        version = await waiting(runtime, root, waiter.id)
        await wait_parked(runtime, root)
        with anyio.fail_after(TIMEOUT):
            results = await race(
                random.Random(round_),
                *(
                    functools.partial(api.callback, sender, waiter.id, version, {"n": n})
                    for n in range(5)
                ),
            )
        acked = [n for n, res in enumerate(results) if res.result]
        assert len(acked) == 1, [r.message for r in results]
        for res in results:
            if not res.result:
                refused(res)
        await wait_outcome(runtime, root, "FINISHED")
        assert (await outputs(runtime, waiter.id))["callback_data"] == {"n": acked[0]}


async def test_callbacks_at_once_to_a_parked_single_callback_node(parking: Any) -> None:
    await _one_of_many(parking, parking)


async def test_client_callbacks_at_once_to_a_parked_single_callback_node(
    runtime_factory: Any,
) -> None:
    needs_shared_storage(runtime_factory.kind)
    async with (
        opened(runtime_factory, settings=parking_settings(poll_interval=0.05)) as worker,
        opened(runtime_factory, worker=False, settings=Settings(poll_interval=0.05)) as client,
    ):
        await _one_of_many(worker, client)


# ======================================================================================
# a callback racing the parking of its run
# ======================================================================================


async def _race_one(runtime: Any, sender: Any, rng: random.Random, at_the_edge: bool) -> None:
    waiter, after = act("callback"), act("echo")
    root = await start(runtime, linear(waiter, after))
    version = await waiting(runtime, root, waiter.id)
    if at_the_edge:
        # The moment the worker takes it out of memory: the store is parking it now.
        with anyio.fail_after(TIMEOUT):
            while root in runtime.scheduler.runs:
                await anyio.lowlevel.checkpoint()
        for _ in range(rng.randint(0, 3)):
            await anyio.lowlevel.checkpoint()
    else:
        await anyio.sleep(rng.random() * 0.03)
    data = {"root": root, "token": rng.random()}
    res = await deliver(sender, waiter.id, version, data)
    # A callback to a waiting node is always delivered: acknowledged, and taken.
    assert res.result, res.message
    await wait_outcome(runtime, root, "FINISHED")
    assert (await outputs(runtime, waiter.id))["callback_data"] == data
    assert await state_of(runtime, root, after.id) == "FINISHED"
    refused(await api.callback(sender, waiter.id, version, data))


@pytest.mark.parametrize("at_the_edge", [False, True], ids=["jitter", "edge"])
async def test_a_callback_racing_the_parking_is_delivered(
    runtime_factory: Any, at_the_edge: bool
) -> None:
    settings = Settings(park_after=0.01)
    if runtime_factory.kind == "sqlite-parking":
        settings = parking_settings()
    async with opened(runtime_factory, settings=settings) as rt:
        rng = random.Random(1234)
        async with anyio.create_task_group() as tg:
            for _ in range(24):
                tg.start_soon(_race_one, rt, rt, random.Random(rng.random()), at_the_edge)


async def test_a_client_callback_racing_the_parking_is_delivered(runtime_factory: Any) -> None:
    """From a client the callback travels as a command, which the parking must not lose."""
    needs_shared_storage(runtime_factory.kind)
    settings = Settings(park_after=0.01, poll_interval=0.05)
    if runtime_factory.kind == "sqlite-parking":
        settings = parking_settings(poll_interval=0.05)
    async with (
        opened(runtime_factory, settings=settings) as worker,
        opened(runtime_factory, worker=False, settings=Settings(poll_interval=0.05)) as client,
    ):
        rng = random.Random(4321)
        async with anyio.create_task_group() as tg:
            for i in range(24):
                tg.start_soon(_race_one, worker, client, random.Random(rng.random()), i % 2 == 0)


# ======================================================================================
# wait_pipeline on a parked run
# ======================================================================================


async def test_wait_pipeline_on_a_parked_failed_run(parking: Any) -> None:
    failing = act("fail")
    root = await start(parking, linear(failing))
    await wait_state(parking, root, failing.id, "FAILED")
    await wait_parked(parking, root)
    spy = ClaimSpy(parking)
    res = await api.wait_pipeline(parking, root, timeout=TIMEOUT)
    assert (res.data, res.message) == ("FAILED", f"failed nodes: {failing.id}")
    assert spy.count(root) == 0
    ok(await api.skip_node(parking, failing.id))
    await wait_outcome(parking, root, "FINISHED")


async def test_wait_pipeline_on_a_run_parked_before_an_appointed_node(parking: Any) -> None:
    before, paused = act("echo"), act("echo")
    gate = act("callback")
    root = await start(parking, linear(gate, before, paused))
    version = await waiting(parking, root, gate.id)
    ok(await api.pause_node_appoint(parking, paused.id))
    ok(await api.callback(parking, gate.id, version, {}))
    await wait_state(parking, root, paused.id, "SUSPENDED")
    await wait_parked(parking, root)
    res = await api.wait_pipeline(parking, root, timeout=TIMEOUT)
    assert (res.data, res.message) == ("SUSPENDED", f"paused at: {paused.id}")
    ok(await api.resume_node_appoint(parking, paused.id))
    await wait_outcome(parking, root, "FINISHED")


async def test_wait_pipeline_on_a_parked_run_returns_once_a_callback_finishes_it(
    runtime_factory: Any,
) -> None:
    """Waiting in the worker itself, and in a client; the callback comes from another task."""
    needs_shared_storage(runtime_factory.kind)
    async with (
        opened(runtime_factory, settings=parking_settings()) as worker,
        opened(runtime_factory, worker=False) as client,
    ):
        waiter = act("callback")
        root = await start(worker, linear(waiter))
        version = await waiting(worker, root, waiter.id)
        await wait_parked(worker, root)
        outcomes: dict[str, Any] = {}

        async def wait_in(name: str, rt: Any) -> None:
            outcomes[name] = await api.wait_pipeline(rt, root, timeout=TIMEOUT)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait_in, "worker", worker)
            tg.start_soon(wait_in, "client", client)
            await grace()
            assert outcomes == {}, "wait_pipeline returned while the run waits for a callback"
            ok(await api.callback(client, waiter.id, version, {"from": "another task"}))
        for name, res in outcomes.items():
            assert (res.result, res.data) == (True, "FINISHED"), (name, res.message)
        assert (await outputs(worker, waiter.id))["callback_data"] == {"from": "another task"}


# ======================================================================================
# concurrency counts the runs in memory only
# ======================================================================================


@pytest.mark.parametrize("code", ["callback", "multi_callback"])
async def test_a_worker_of_concurrency_5_holds_50_waiting_runs(
    runtime_factory: Any, code: str
) -> None:
    """With a single-callback node, and with a multi-callback one (whose callbacks from a
    client travel as commands to the worker)."""
    needs_shared_storage(runtime_factory.kind)
    count = 50
    settings = Settings(concurrency=5, park_after=0.0, poll_interval=0.05)
    async with (
        opened(runtime_factory, settings=settings) as worker,
        opened(runtime_factory, worker=False, settings=Settings(poll_interval=0.05)) as client,
    ):
        most = 0
        sampling = True

        async def sample() -> None:
            nonlocal most
            while sampling:
                most = max(most, worker.scheduler.held)
                await anyio.sleep(0.001)

        waiters = [act(code, count=1) for _ in range(count)]
        trees = [linear(w, act("echo")) for w in waiters]
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            # Started by a client, so the worker claims them, as many as it has room for.
            roots = [await start(client, tree) for tree in trees]
            versions: dict[str, str] = {}

            async def all_waiting() -> bool:
                for root, w in zip(roots, waiters, strict=True):
                    if w.id not in versions:
                        found = await tree_states(client, root)
                        entry = found.get(w.id)
                        if entry is not None and entry["state"] == "RUNNING":
                            if await outputs(client, w.id):
                                versions[w.id] = entry["version"]
                return len(versions) == count

            await wait_until(all_waiting, "every run to wait for its callback", 60)
            assert most <= 5, f"{most} runs in memory at once while they went to wait"

            results: list[Any] = []

            async def send(w: Any) -> None:
                results.append(await api.callback(client, w.id, versions[w.id], {"id": w.id}))

            async with anyio.create_task_group() as senders:
                for w in waiters:
                    senders.start_soon(send, w)
            for root in roots:
                res = await api.wait_pipeline(client, root, timeout=60)
                assert res.data == "FINISHED", res.message
            sampling = False
        assert most <= 5, f"{most} runs in memory at once while callbacks came"
        assert all(r.result for r in results), [r.message for r in results if not r.result]
        for w in waiters:
            got = await outputs(client, w.id)
            if code == "callback":
                assert got["callback_data"] == {"id": w.id}
            else:
                assert got["received"] == [{"id": w.id}]


@pytest.mark.parametrize("park_after", [0.0, None])
async def test_a_worker_starting_more_runs_than_its_concurrency_keeps_the_rest_in_storage(
    runtime_factory: Any, park_after: float | None
) -> None:
    """The worker's own run_pipeline calls, 40 at once, with room for 4 in memory: the
    runs beyond it are stored for the claim loop, which loads each when a slot frees
    (a run parking, or ending)."""
    settings = Settings(concurrency=4, park_after=park_after, poll_interval=0.05)
    async with opened(runtime_factory, settings=settings) as worker:
        most = 0
        sampling = True

        async def sample() -> None:
            nonlocal most
            while sampling:
                most = max(most, len(worker.scheduler.runs))
                await anyio.sleep(0.001)

        trees = [linear(act("echo"), act("echo")) for _ in range(40)]
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            async with anyio.create_task_group() as starters:
                for tree in trees:
                    starters.start_soon(start, worker, tree)
            for tree in trees:
                res = await api.wait_pipeline(worker, tree["id"], timeout=60)
                assert res.data == "FINISHED", res.message
            sampling = False
        assert most <= 4, f"{most} runs in memory at once"
        assert most > 0


async def test_a_full_worker_parks_its_waiting_runs_without_waiting_park_after(
    runtime_factory: Any,
) -> None:
    """Room for 2, 6 pipelines that wait on a callback, park_after far away: the runs
    waiting give their slots up at once, so every pipeline comes to its wait long
    before park_after, and the callbacks finish them."""
    if runtime_factory.kind == "sqlite-parking":
        pytest.skip("this runtime kind parks every run at once anyway")
    settings = Settings(concurrency=2, park_after=60.0, poll_interval=0.05)
    async with opened(runtime_factory, settings=settings) as worker:
        waiters = [act("callback", count=1) for _ in range(6)]
        trees = [linear(w) for w in waiters]
        async with anyio.create_task_group() as starters:
            for tree in trees:
                starters.start_soon(start, worker, tree)
        with anyio.fail_after(20):  # far less than park_after
            versions = [
                await waiting(worker, tree["id"], w.id)
                for tree, w in zip(trees, waiters, strict=True)
            ]
        assert len(worker.scheduler.runs) <= 2
        for w, version in zip(waiters, versions, strict=True):
            ok(await deliver(worker, w.id, version, {"id": w.id}))
        for tree in trees:
            res = await api.wait_pipeline(worker, tree["id"], timeout=30)
            assert res.data == "FINISHED", res.message


@pytest.mark.parametrize("claim_runs", [True, False])
async def test_a_worker_that_claims_no_runs_leaves_the_others_alone(
    runtime_factory: Any, claim_runs: bool
) -> None:
    """A released run that waits on a callback, and a worker that lacks its component:
    claiming it fails the node; with claim_runs=False the worker leaves it alone, and
    an operation on it (here from a worker that has the component) still works."""
    needs_shared_storage(runtime_factory.kind)
    if runtime_factory.kind == "sqlite-parking":
        pytest.skip("this runtime kind parks every run: a parked run is never claimed")
    from aiobamboo.component import ComponentLibrary

    waiter = act("callback", count=1)
    settings = Settings(park_after=None, poll_interval=0.05)
    async with opened(runtime_factory, settings=settings) as first:
        root = await start(first, linear(waiter))
        version = await waiting(first, root, waiter.id)
    # Closed with the run in memory: it is released, ready for any worker.
    lacking = Settings(park_after=None, poll_interval=0.05, claim_runs=claim_runs)
    async with opened(runtime_factory, settings=lacking, components=ComponentLibrary()) as other:
        await anyio.sleep(0.5)  # ten claim rounds
        found = await tree_states(other, root)
        if claim_runs:
            assert found[waiter.id]["state"] == "FAILED"
            return
        assert found[waiter.id]["state"] == "RUNNING"
        assert not other.scheduler.runs
    keeper = Settings(park_after=None, poll_interval=0.05, claim_runs=False)
    async with opened(runtime_factory, settings=keeper) as again:
        ok(await deliver(again, waiter.id, version, {"x": 1}))
        res = await api.wait_pipeline(again, root, timeout=30)
        assert res.data == "FINISHED", res.message


async def test_a_command_taken_as_its_run_parks_is_applied_once(runtime_factory: Any) -> None:
    """The worker takes a client's callback command, and the run parks before it is applied.

    The store answers slowly, as a remote database may: that widens the moment between
    taking a command and applying it (the run parks then), and the one between applying
    it and storing its outcome (the run stays in memory then, its next node busy). The
    command must be applied once, and its sender told what it did.
    """
    needs_shared_storage(runtime_factory.kind)
    settings = parking_settings(poll_interval=0.02)
    async with (
        opened(runtime_factory, settings=settings) as worker,
        opened(runtime_factory, worker=False, settings=Settings(poll_interval=0.02)) as client,
    ):
        store = worker.store
        take, complete = store.pending_commands, store.complete_command

        async def slow_take(root_ids: Any) -> Any:
            rows = await take(root_ids)
            if rows:
                await anyio.sleep(0.05)
            return rows

        async def slow_complete(command_id: str, done: bool, message: str) -> None:
            await anyio.sleep(0.2)
            await complete(command_id, done, message)

        store.pending_commands = slow_take
        store.complete_command = slow_complete
        applied: list[tuple[str, str]] = []
        apply = worker.scheduler.apply_operation

        async def counted(op: str, args: Any) -> None:
            applied.append((op, args[0]))
            await apply(op, args)

        worker.scheduler.apply_operation = counted
        sent: list[str] = []
        submit = client.store.submit_command

        async def recorded(root_id: str, op: str, args_json: str) -> str:
            command_id = await submit(root_id, op, args_json)
            sent.append(command_id)
            return str(command_id)

        client.store.submit_command = recorded

        for _ in range(3):
            # A multi-callback node: a callback to it always travels as a command.
            waiter, busy = act("multi_callback", count=1), act("gate")
            new_gate(busy.id)
            root = await start(client, linear(waiter, busy))
            version = await waiting(client, root, waiter.id)
            await wait_parked(worker, root)
            res = await api.callback(client, waiter.id, version, {"id": waiter.id})
            assert res.result, res.message
            await wait_state(client, root, busy.id, "RUNNING")
            # A command applied twice is taken again within a few claim rounds.
            await anyio.sleep(0.3)
            open_gate(busy.id)
            await wait_outcome(client, root, "FINISHED")
            assert (await outputs(client, waiter.id))["received"] == [{"id": waiter.id}]
            assert applied.count(("callback", waiter.id)) == 1, applied
            # What the command's row says last is what its sender may have been told.
            outcome = await client.store.get_command(sent[-1])
            assert (outcome.status, outcome.ok) == ("done", True), outcome


async def test_a_command_to_a_parked_run_loads_it_a_few_times_not_in_a_loop(
    runtime_factory: Any,
) -> None:
    """A parked run woken by a client's command is loaded, the command applied, and done.

    Parking it again before the command is applied is refused (the command waits for
    it); reloading it from storage then, again and again until a claim round happens to
    find it in memory, costs a full load each time and delays the command.
    """
    needs_shared_storage(runtime_factory.kind)
    async with (
        opened(runtime_factory, settings=parking_settings()) as worker,
        opened(runtime_factory, worker=False) as client,
    ):
        # A multi-callback node: a callback to it always travels as a command.
        waiter = act("multi_callback", count=1)
        root = await start(client, linear(waiter))
        version = await waiting(client, root, waiter.id)
        await wait_parked(worker, root)
        loads: list[str] = []
        load_run = worker.store.load_run

        async def counted(root_id: str) -> Any:
            loads.append(root_id)
            return await load_run(root_id)

        worker.store.load_run = counted
        ok(await api.callback(client, waiter.id, version, {}))
        await wait_outcome(client, root, "FINISHED")
        assert loads.count(root) <= 3, f"the run was loaded {loads.count(root)} times"
