"""Callbacks to a multi-callback activity: each accepted one is delivered, the rest refused.

A callback that ``api.callback`` acknowledged must reach ``schedule()``. Those
queued behind the callback that ends the schedule (it finished or failed) are
refused, and so is every callback once the node no longer waits.
"""

from __future__ import annotations

from typing import Any

import anyio

from aiobamboo import api, states
from aiobamboo.builder import EmptyEndEvent, EmptyStartEvent, build_tree
from aiobamboo.component import Component, Service, StaticIntervalGenerator
from aiobamboo.exceptions import InvalidOperationError

from .helpers import (
    activity,
    deliver,
    finish,
    outputs,
    start,
    state_of,
    uid,
    wait_for,
    waiting_version,
)

#: Gates that block a node's schedule() until the test opens them: node id -> event.
GATES: dict[str, anyio.Event] = {}
#: Node ids whose schedule() is blocked on its gate right now.
BLOCKED: set[str] = set()


class GatedMultiCallbackService(Service):
    """Records each callback; finishes after ``count``; fails on ``{"fail": True}``."""

    __need_schedule__ = True
    __multi_callback_enabled__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.received = []
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        gate = GATES.get(self.id)
        if gate is not None:
            BLOCKED.add(self.id)
            await gate.wait()
            BLOCKED.discard(self.id)
        data.outputs.received = [*data.outputs.get("received", []), callback_data]
        if isinstance(callback_data, dict) and callback_data.get("fail"):
            data.outputs.ex_data = "callback said fail"
            return False
        if len(data.outputs.received) >= data.get_one_of_inputs("count", 2):
            self.finish_schedule()
        return True


class GatedMultiCallbackComponent(Component):
    code = "multi_callback_gated"
    name = "Several callbacks, schedule behind a gate"
    bound_service = GatedMultiCallbackService


def _tree(node: Any) -> dict[str, Any]:
    start, end = EmptyStartEvent(), EmptyEndEvent()
    start.extend(node).extend(end)
    return build_tree(start)


async def _send_all(runtime: Any, node_id: str, version: str, payloads: list[Any]) -> list[Any]:
    """``api.callback`` with each payload, all at once; the results in payload order."""
    results: list[Any] = [None] * len(payloads)

    async def send(i: int) -> None:
        results[i] = await api.callback(runtime, node_id, version, payloads[i])

    async with anyio.create_task_group() as tg:
        for i in range(len(payloads)):
            tg.start_soon(send, i)
    return results


async def _wait_blocked(node_id: str) -> None:
    async def blocked() -> bool:
        return node_id in BLOCKED

    await wait_for(blocked, what="schedule() blocked on its gate")


async def _wait_queued(runtime: Any, node_id: str, version: str, count: int) -> None:
    async def queued() -> bool:
        run = next(r for r in runtime.scheduler.runs.values() if node_id in r.spec.nodes)
        return len(run.callbacks.get((node_id, version), ())) == count

    await wait_for(queued, what=f"{count} callbacks queued")


async def _queue_behind(
    runtime: Any, node_id: str, version: str, payloads: list[Any], gate: anyio.Event
) -> list[Any]:
    """Queue ``payloads`` while schedule() is blocked, then open its gate; their results."""
    results: list[Any] = []

    async def send() -> None:
        results.extend(await _send_all(runtime, node_id, version, payloads))

    async with anyio.create_task_group() as tg:
        tg.start_soon(send)
        await _wait_queued(runtime, node_id, version, len(payloads))
        gate.set()
    return results


async def test_callbacks_queued_behind_the_finishing_one_are_refused(runtime: Any) -> None:
    node = activity("multi_callback_gated", uid("multi"), count=1)
    gate = GATES[node.id] = anyio.Event()
    root_id = await start(runtime, _tree(node))
    version = await waiting_version(runtime, node.id)
    first = await deliver(runtime, node.id, version, {"n": 0})
    assert first.result, first.message  # taken: its schedule() is blocked now
    await _wait_blocked(node.id)

    late = await _queue_behind(runtime, node.id, version, [{"n": 1}, {"n": 2}], gate)
    assert [r.result for r in late] == [False, False]
    for res in late:
        assert isinstance(res.exc, InvalidOperationError)
        assert "finished its schedule before this callback was taken" in res.message
    await finish(runtime, root_id)
    assert (await outputs(runtime, node.id))["received"] == [{"n": 0}]
    after = await api.callback(runtime, node.id, version, {"n": 3})
    assert after.result is False


async def test_a_burst_of_callbacks_delivers_exactly_the_accepted_ones(runtime: Any) -> None:
    node = activity("multi_callback_gated", uid("multi"), count=3)
    root_id = await start(runtime, _tree(node))
    version = await waiting_version(runtime, node.id)
    payloads = [{"n": n} for n in range(7)]
    results = await _send_all(runtime, node.id, version, payloads)
    await finish(runtime, root_id)
    for res in results:
        if not res.result:
            assert isinstance(res.exc, InvalidOperationError), res.message
    received = (await outputs(runtime, node.id))["received"]
    # Every acknowledged callback was delivered, and nothing else was.
    accepted = [p["n"] for p, r in zip(payloads, results, strict=True) if r.result]
    assert sorted(r["n"] for r in received) == accepted
    assert len(received) == 3


async def test_callbacks_queued_behind_a_failing_one_are_refused(runtime: Any) -> None:
    node = activity("multi_callback_gated", uid("multi"), count=5)
    gate = GATES[node.id] = anyio.Event()
    root_id = await start(runtime, _tree(node))
    version = await waiting_version(runtime, node.id)
    first = await deliver(runtime, node.id, version, {"fail": True})
    assert first.result, first.message
    await _wait_blocked(node.id)

    late = await _queue_behind(runtime, node.id, version, [{"n": 1}], gate)
    assert late[0].result is False
    assert "failed before this callback was taken" in late[0].message
    await finish(runtime, root_id, states.FAILED)
    assert await state_of(runtime, node.id) == states.FAILED
    # Failed with the same version: it waits for no callback any more.
    again = await api.callback(runtime, node.id, version, {"n": 2})
    assert again.result is False
    assert "no longer waits for a callback" in again.message
    assert (await outputs(runtime, node.id))["received"] == [{"fail": True}]


async def test_a_callback_to_a_failed_single_callback_node_is_refused(runtime: Any) -> None:
    node = activity("callback", uid("cb"))
    root_id = await start(runtime, _tree(node))
    version = await waiting_version(runtime, node.id)
    assert (await deliver(runtime, node.id, version, {"fail": True})).result
    await finish(runtime, root_id, states.FAILED)
    again = await api.callback(runtime, node.id, version, {"n": 1})
    assert again.result is False
    assert isinstance(again.exc, InvalidOperationError)
    assert (await outputs(runtime, node.id))["callback_data"] == {"fail": True}


class SlowPollService(Service):
    """Polls once a minute; records each poll's callback data; finishes after ``count``."""

    __need_schedule__ = True
    interval = StaticIntervalGenerator(60)

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.received = []
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.received = [*data.outputs.get("received", []), callback_data]
        if len(data.outputs.received) >= data.get_one_of_inputs("count", 2):
            self.finish_schedule()
        return True


class SlowPollComponent(Component):
    code = "slow_poll_recording"
    name = "Poll once a minute"
    bound_service = SlowPollService


async def test_a_callback_to_a_polling_node_is_one_more_poll_at_once(runtime: Any) -> None:
    node = activity("slow_poll_recording", uid("poll"), count=3)
    root_id = await start(runtime, _tree(node))
    version = await waiting_version(runtime, node.id)

    async def first_poll_done() -> bool:
        return len((await outputs(runtime, node.id)).get("received") or []) == 1

    await wait_for(first_poll_done, what="the first poll")
    for n in (1, 2):
        # Well within the minute between two polls.
        with anyio.fail_after(5):
            res = await deliver(runtime, node.id, version, {"n": n})
        assert res.result, res.message
    await finish(runtime, root_id)
    assert (await outputs(runtime, node.id))["received"] == [None, {"n": 1}, {"n": 2}]
    late = await api.callback(runtime, node.id, version, {"n": 3})
    assert late.result is False
