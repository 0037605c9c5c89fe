"""Two operations that meet on one node or pipeline, started concurrently.

The original has races (a forced fail overwritten by a
late schedule, a callback dropped when it loses a lock, ...); none of them may
happen here. Each pair runs ``PLAIN_REPS`` times with both calls started
together in a task group, and ``JITTER_REPS`` times with a seeded random
number of scheduling checkpoints before each call. Every trial asserts that
exclusive pairs have exactly one winner, that a loser says why, that the
final state is consistent, and that the pipeline still ends after the
appropriate follow-up. The outcome tally of each test is recorded as its
``outcomes`` user property and printed (``pytest -rP``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from aiobamboo import api
from aiobamboo.api import EngineAPIResult
from aiobamboo.builder import (
    ConditionalParallelGateway,
    ConvergeGateway,
    Element,
    ExclusiveGateway,
)

from .components import EXECUTIONS, GATES
from .ops_helpers import (
    PLACEMENTS,
    act,
    entry,
    flow_id,
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
    steps,
    stored_processes,
    tree_states,
    wait_gate_entered,
    wait_outcome,
    wait_state,
    wait_until,
)

PLAIN_REPS = 5
JITTER_REPS = 50

Trial = Callable[[Any, "random.Random | None", int], Awaitable[str]]


@pytest.fixture(autouse=True)
def _release_gates() -> Iterator[None]:
    yield
    GATES.clear()


@pytest.fixture(params=["plain", "jitter"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def repeat(
    runtime: Any, mode: str, trial: Trial, request: pytest.FixtureRequest
) -> Counter[str]:
    """Run ``trial`` for every seed of ``mode``; the tally of the outcomes it reports.

    The tally lands in the test's ``user_properties`` (shown by ``--junitxml`` with
    ``-o junit_family=xunit1``), and in the captured output (``-rP``).
    """
    tally: Counter[str] = Counter()
    reps = PLAIN_REPS if mode == "plain" else JITTER_REPS
    for seed in range(reps):
        rng = None if mode == "plain" else random.Random(seed)
        try:
            tally[await trial(runtime, rng, seed)] += 1
        except AssertionError as exc:
            raise AssertionError(f"{mode} trial seed={seed}: {exc}") from exc
    request.node.user_properties.append(("outcomes", dict(tally)))
    request.node.user_properties.append(("repetitions", reps))
    print(f"{request.node.name}: {reps} repetitions, outcomes {dict(tally)}")
    assert sum(tally.values()) == reps
    return tally


def one_winner(results: list[EngineAPIResult[Any]]) -> int:
    """Exactly one call succeeded, every other was refused with a reason; the winner's index."""
    winners = [i for i, r in enumerate(results) if r.result]
    assert len(winners) == 1, f"expected one winner, got {[(r.result, r.message) for r in results]}"
    for i, res in enumerate(results):
        if i != winners[0]:
            refused(res)
    return winners[0]


def _where(seed: int) -> str:
    return PLACEMENTS[seed % len(PLACEMENTS)]


async def _waiting_version(runtime: Any, root: str, node_id: str) -> str:
    """The version of a callback node once it waits (its execute outputs are stored)."""
    node = await wait_state(runtime, root, node_id, "RUNNING")

    async def waiting() -> bool:
        return "waiting" in await outputs(runtime, node_id)

    await wait_until(waiting, f"{node_id} to wait for its callback")
    return str(node["version"])


async def _no_live_processes(runtime: Any, root: str) -> None:
    assert [p for p in await stored_processes(runtime, root) if p.status != "dead"] == []


# --------------------------------------------------------------------------------------
# retry twice
# --------------------------------------------------------------------------------------


async def _retry_twice(runtime: Any, rng: random.Random | None, seed: int) -> str:
    failing = act("fail")
    root = await start(runtime, place(_where(seed), steps(failing)).tree)
    failed = await wait_state(runtime, root, failing.id, "FAILED")
    results = await race(
        rng,
        lambda: api.retry_node(runtime, failing.id, {"ok": True}),
        lambda: api.retry_node(runtime, failing.id, {"ok": True}),
    )
    one_winner(results)
    await wait_outcome(runtime, root, "FINISHED")
    node = await entry(runtime, root, failing.id)
    assert node is not None
    assert (node["state"], node["retry"], node["skip"]) == ("FINISHED", 1, False)
    assert node["version"] != failed["version"]
    assert EXECUTIONS[failing.id] == 2
    assert [r["version"] for r in await histories(runtime, failing.id)] == [failed["version"]]
    return "one retry"


async def test_retry_twice(runtime: Any, mode: str, request: pytest.FixtureRequest) -> None:
    await repeat(runtime, mode, _retry_twice, request)


# --------------------------------------------------------------------------------------
# skip vs retry
# --------------------------------------------------------------------------------------


async def _skip_vs_retry(runtime: Any, rng: random.Random | None, seed: int) -> str:
    failing, after = act("fail"), act("echo")
    root = await start(runtime, place(_where(seed), steps(failing, after)).tree)
    failed = await wait_state(runtime, root, failing.id, "FAILED")
    calls = [
        lambda: api.skip_node(runtime, failing.id),
        lambda: api.retry_node(runtime, failing.id, {"ok": True}),
    ]
    if seed % 2:
        calls.reverse()
    results = await race(rng, *calls)
    winner = one_winner(results)
    skipped = (winner == 0) != bool(seed % 2)
    await wait_outcome(runtime, root, "FINISHED")
    node = await entry(runtime, root, failing.id)
    assert node is not None
    assert node["state"] == "FINISHED"
    if skipped:
        assert (node["skip"], node["retry"]) == (True, 0)
        assert EXECUTIONS[failing.id] == 1
        assert (await outputs(runtime, failing.id))["_result"] is False
    else:
        assert (node["skip"], node["retry"]) == (False, 1)
        assert EXECUTIONS[failing.id] == 2
        assert (await outputs(runtime, failing.id))["_result"] is True
    assert [r["version"] for r in await histories(runtime, failing.id)] == [failed["version"]]
    assert EXECUTIONS[after.id] == 1
    return "skip won" if skipped else "retry won"


async def test_skip_vs_retry(runtime: Any, mode: str, request: pytest.FixtureRequest) -> None:
    await repeat(runtime, mode, _skip_vs_retry, request)


# --------------------------------------------------------------------------------------
# skip twice
# --------------------------------------------------------------------------------------


async def _skip_twice(runtime: Any, rng: random.Random | None, seed: int) -> str:
    failing, after = act("fail"), act("echo")
    root = await start(runtime, place(_where(seed), steps(failing, after)).tree)
    await wait_state(runtime, root, failing.id, "FAILED")
    results = await race(
        rng,
        lambda: api.skip_node(runtime, failing.id),
        lambda: api.skip_node(runtime, failing.id),
    )
    one_winner(results)
    await wait_outcome(runtime, root, "FINISHED")
    assert EXECUTIONS[after.id] == 1
    assert len(await histories(runtime, failing.id)) == 1
    return "one skip"


async def test_skip_twice(runtime: Any, mode: str, request: pytest.FixtureRequest) -> None:
    await repeat(runtime, mode, _skip_twice, request)


# --------------------------------------------------------------------------------------
# forced fail twice
# --------------------------------------------------------------------------------------


async def _forced_fail_twice(runtime: Any, rng: random.Random | None, seed: int) -> str:
    gate = act("gate")
    new_gate(gate.id)
    root = await start(runtime, place(_where(seed), steps(gate)).tree)
    await wait_gate_entered(runtime, root, gate.id)
    results = await race(
        rng,
        lambda: api.forced_fail_activity(runtime, gate.id, "A"),
        lambda: api.forced_fail_activity(runtime, gate.id, "B"),
    )
    winner = one_winner(results)
    assert "state is not RUNNING, actual: FAILED" in results[1 - winner].message
    out = await outputs(runtime, gate.id)
    assert out["ex_data"] == "AB"[winner]
    assert out["_forced_failed"] is True
    open_gate(gate.id)
    assert await wait_outcome(runtime, root) == "FAILED"
    assert await state_of(runtime, root, gate.id) == "FAILED"
    assert (await outputs(runtime, gate.id))["ex_data"] == "AB"[winner]
    ok(await api.retry_node(runtime, gate.id))
    await wait_outcome(runtime, root, "FINISHED")
    return "one forced fail"


async def test_forced_fail_twice(runtime: Any, mode: str, request: pytest.FixtureRequest) -> None:
    await repeat(runtime, mode, _forced_fail_twice, request)


# --------------------------------------------------------------------------------------
# callback vs forced fail
# --------------------------------------------------------------------------------------


async def _callback_vs_forced_fail(runtime: Any, rng: random.Random | None, seed: int) -> str:
    waiting, after = act("callback"), act("echo")
    root = await start(runtime, place(_where(seed), steps(waiting, after)).tree)
    version = await _waiting_version(runtime, root, waiting.id)
    # A failing callback: if its late schedule were applied, ex_data would be overwritten.
    payload = {"seed": seed, "fail": bool(seed % 2)}
    cb, ff = await race(
        rng,
        lambda: api.callback(runtime, waiting.id, version, payload),
        lambda: api.forced_fail_activity(runtime, waiting.id, "forced"),
    )
    assert cb.result or ff.result, (cb.message, ff.message)
    for res in (cb, ff):
        if not res.result:
            refused(res)
    await wait_outcome(runtime, root)
    node = await entry(runtime, root, waiting.id)
    assert node is not None
    out = await outputs(runtime, waiting.id)
    if ff.result:
        # The forced fail holds: nothing of the callback's schedule leaked in.
        assert node["state"] == "FAILED"
        assert node["version"] != version
        assert out["ex_data"] == "forced"
        assert out["_forced_failed"] is True
        assert "callback_data" not in out
        assert await state_of(runtime, root, after.id) is None
        refused(await api.callback(runtime, waiting.id, version, payload))
        ok(await api.skip_node(runtime, waiting.id))
        outcome = "forced fail won" + (" (callback accepted, discarded)" if cb.result else "")
    else:
        assert "state is not RUNNING" in ff.message or "finished" in ff.message, ff.message
        assert out["callback_data"] == payload
        assert "_forced_failed" not in out
        if payload["fail"]:
            assert node["state"] == "FAILED"
            assert out["ex_data"] == "callback said fail"
            ok(await api.skip_node(runtime, waiting.id))
        outcome = "callback won"
    await wait_outcome(runtime, root, "FINISHED")
    assert EXECUTIONS[after.id] == 1
    return outcome


async def test_callback_vs_forced_fail(
    runtime: Any, mode: str, request: pytest.FixtureRequest
) -> None:
    await repeat(runtime, mode, _callback_vs_forced_fail, request)


# --------------------------------------------------------------------------------------
# callback vs revoke
# --------------------------------------------------------------------------------------


async def _callback_vs_revoke(runtime: Any, rng: random.Random | None, seed: int) -> str:
    waiting = act("callback")
    root = await start(runtime, place(_where(seed), steps(waiting)).tree)
    version = await _waiting_version(runtime, root, waiting.id)
    cb, rv = await race(
        rng,
        lambda: api.callback(runtime, waiting.id, version, {"seed": seed}),
        lambda: api.revoke_pipeline(runtime, root),
    )
    assert cb.result or rv.result, (cb.message, rv.message)
    final = await wait_outcome(runtime, root)
    states = await tree_states(runtime, root)
    assert not [n for n, e in states.items() if e["state"] == "RUNNING"], states
    if rv.result:
        assert final == "REVOKED"
        assert states[waiting.id]["state"] in ("REVOKED", "FINISHED")
        refused(await api.callback(runtime, waiting.id, version, {"again": True}), "revoked")
        if not cb.result:
            refused(cb, "revoked")
        outcome = "revoke won" + (" (callback accepted)" if cb.result else "")
    else:
        refused(rv, "finished")
        assert final == "FINISHED"
        assert (await outputs(runtime, waiting.id))["callback_data"] == {"seed": seed}
        outcome = "callback finished the pipeline first"
    await _no_live_processes(runtime, root)
    return outcome


async def test_callback_vs_revoke(runtime: Any, mode: str, request: pytest.FixtureRequest) -> None:
    await repeat(runtime, mode, _callback_vs_revoke, request)


# --------------------------------------------------------------------------------------
# callback twice
# --------------------------------------------------------------------------------------


async def _callback_twice(runtime: Any, rng: random.Random | None, seed: int) -> str:
    waiting = act("callback")
    root = await start(runtime, place(_where(seed), steps(waiting)).tree)
    version = await _waiting_version(runtime, root, waiting.id)
    results = await race(
        rng,
        lambda: api.callback(runtime, waiting.id, version, {"n": 1}),
        lambda: api.callback(runtime, waiting.id, version, {"n": 2}),
    )
    winner = one_winner(results)
    await wait_outcome(runtime, root, "FINISHED")
    assert (await outputs(runtime, waiting.id))["callback_data"] == {"n": winner + 1}
    return "one callback"


async def test_callback_twice_single_callback_node(
    runtime: Any, mode: str, request: pytest.FixtureRequest
) -> None:
    await repeat(runtime, mode, _callback_twice, request)


async def _callback_twice_multi(runtime: Any, rng: random.Random | None, seed: int) -> str:
    waiting = act("multi_callback", count=2)
    root = await start(runtime, place(_where(seed), steps(waiting)).tree)
    node = await wait_state(runtime, root, waiting.id, "RUNNING")

    async def waits() -> bool:
        return "received" in await outputs(runtime, waiting.id)

    await wait_until(waits, "the multi-callback wait")
    results = await race(
        rng,
        lambda: api.callback(runtime, waiting.id, node["version"], {"n": 1}),
        lambda: api.callback(runtime, waiting.id, node["version"], {"n": 2}),
    )
    # Not exclusive: both are accepted, and neither is lost.
    assert all(r.result for r in results), [r.message for r in results]
    await wait_outcome(runtime, root, "FINISHED")
    received = (await outputs(runtime, waiting.id))["received"]
    assert sorted(r["n"] for r in received) == [1, 2]
    return "both consumed"


async def test_callback_twice_multi_callback_node(
    runtime: Any, mode: str, request: pytest.FixtureRequest
) -> None:
    await repeat(runtime, mode, _callback_twice_multi, request)


# --------------------------------------------------------------------------------------
# pause vs completion
# --------------------------------------------------------------------------------------


async def _pause_vs_completion(runtime: Any, rng: random.Random | None, seed: int) -> str:
    waiting = act("callback")
    root = await start(runtime, place(_where(seed), steps(waiting)).tree)
    version = await _waiting_version(runtime, root, waiting.id)
    cb, pause = await race(
        rng,
        lambda: api.callback(runtime, waiting.id, version, {"seed": seed}),
        lambda: api.pause_pipeline(runtime, root),
    )
    ok(cb)
    if pause.result:
        assert await wait_outcome(runtime, root) == "SUSPENDED"
        # The running node completes even though the pipeline is paused.
        await wait_state(runtime, root, waiting.id, "FINISHED")
        assert await state_of(runtime, root, root) == "SUSPENDED"
        ok(await api.resume_pipeline(runtime, root))
        outcome = "paused"
    else:
        refused(pause, "finished")
        outcome = "finished first"
    await wait_outcome(runtime, root, "FINISHED")
    assert (await outputs(runtime, waiting.id))["callback_data"] == {"seed": seed}
    await _no_live_processes(runtime, root)
    return outcome


async def test_pause_vs_completion(runtime: Any, mode: str, request: pytest.FixtureRequest) -> None:
    await repeat(runtime, mode, _pause_vs_completion, request)


async def _pause_vs_gate(runtime: Any, rng: random.Random | None, seed: int) -> str:
    """The pipeline's last node returns while pause_pipeline is called."""
    gate = act("gate")
    new_gate(gate.id)
    root = await start(runtime, linear(gate))
    await wait_gate_entered(runtime, root, gate.id)

    async def release() -> EngineAPIResult[None]:
        open_gate(gate.id)
        return EngineAPIResult(True, "success")

    _, pause = await race(rng, release, lambda: api.pause_pipeline(runtime, root))
    if pause.result:
        assert await wait_outcome(runtime, root) == "SUSPENDED"
        await wait_state(runtime, root, gate.id, "FINISHED")
        ok(await api.resume_pipeline(runtime, root))
        outcome = "paused"
    else:
        refused(pause, "finished")
        outcome = "finished first"
    await wait_outcome(runtime, root, "FINISHED")
    assert EXECUTIONS[gate.id] == 1
    return outcome


async def test_pause_vs_last_node_returning(
    runtime: Any, mode: str, request: pytest.FixtureRequest
) -> None:
    await repeat(runtime, mode, _pause_vs_gate, request)


# --------------------------------------------------------------------------------------
# resume twice
# --------------------------------------------------------------------------------------


async def _resume_twice(runtime: Any, rng: random.Random | None, seed: int) -> str:
    gate, after = act("gate"), act("echo")
    new_gate(gate.id)
    placed = place(_where(seed), steps(gate, after))
    root = await start(runtime, placed.tree)
    await wait_gate_entered(runtime, root, gate.id)
    target = placed.sub_id if placed.sub_id is not None and seed % 2 else root
    ok(await api.pause_pipeline(runtime, target))
    open_gate(gate.id)
    await wait_state(runtime, root, gate.id, "FINISHED")
    results = await race(
        rng,
        lambda: api.resume_pipeline(runtime, target),
        lambda: api.resume_pipeline(runtime, target),
    )
    winner = one_winner(results)
    assert results[1 - winner].message in (
        f"pipeline({target}) state is: RUNNING",
        f"pipeline {root} has already finished",
    ), results[1 - winner].message
    await wait_outcome(runtime, root, "FINISHED")
    assert EXECUTIONS[after.id] == 1
    return "one resume"


async def test_resume_twice(runtime: Any, mode: str, request: pytest.FixtureRequest) -> None:
    await repeat(runtime, mode, _resume_twice, request)


async def _resume_node_twice(runtime: Any, rng: random.Random | None, seed: int) -> str:
    paused, after = act("echo"), act("echo")
    gate = act("gate")
    new_gate(gate.id)
    root = await start(runtime, place(_where(seed), steps(gate, paused, after)).tree)
    await wait_gate_entered(runtime, root, gate.id)
    ok(await api.pause_node_appoint(runtime, paused.id))
    open_gate(gate.id)
    assert await wait_outcome(runtime, root) == "SUSPENDED"
    results = await race(
        rng,
        lambda: api.resume_node_appoint(runtime, paused.id),
        lambda: api.resume_node_appoint(runtime, paused.id),
    )
    one_winner(results)
    await wait_outcome(runtime, root, "FINISHED")
    assert EXECUTIONS[paused.id] == 1
    assert EXECUTIONS[after.id] == 1
    return "one resume"


async def test_resume_node_appoint_twice(
    runtime: Any, mode: str, request: pytest.FixtureRequest
) -> None:
    await repeat(runtime, mode, _resume_node_twice, request)


# --------------------------------------------------------------------------------------
# pause_node_appoint vs the node being reached (the original wedges it)
# --------------------------------------------------------------------------------------


async def _appoint_vs_reach(runtime: Any, rng: random.Random | None, seed: int) -> str:
    gate, target = act("gate"), act("echo")
    new_gate(gate.id)
    root = await start(runtime, place(_where(seed), steps(gate, target)).tree)
    await wait_gate_entered(runtime, root, gate.id)

    async def release() -> EngineAPIResult[None]:
        open_gate(gate.id)
        return EngineAPIResult(True, "success")

    _, appoint = await race(rng, release, lambda: api.pause_node_appoint(runtime, target.id))
    if appoint.result:
        assert await wait_outcome(runtime, root) == "SUSPENDED"
        assert await state_of(runtime, root, target.id) == "SUSPENDED"
        assert EXECUTIONS[target.id] == 0
        ok(await api.resume_node_appoint(runtime, target.id))
        outcome = "paused before the node"
    else:
        refused(appoint)
        outcome = "node reached first"
    await wait_outcome(runtime, root, "FINISHED")
    assert EXECUTIONS[target.id] == 1
    return outcome


async def test_pause_node_appoint_vs_reaching_the_node(
    runtime: Any, mode: str, request: pytest.FixtureRequest
) -> None:
    await repeat(runtime, mode, _appoint_vs_reach, request)


# --------------------------------------------------------------------------------------
# revoke vs retry
# --------------------------------------------------------------------------------------


async def _revoke_vs_retry(runtime: Any, rng: random.Random | None, seed: int) -> str:
    failing, after = act("fail"), act("gate")
    new_gate(after.id)
    root = await start(runtime, place(_where(seed), steps(failing, after)).tree)
    await wait_state(runtime, root, failing.id, "FAILED")
    rv, rt = await race(
        rng,
        lambda: api.revoke_pipeline(runtime, root),
        lambda: api.retry_node(runtime, failing.id, {"ok": True}),
    )
    # `after` blocks, so the pipeline cannot finish before the revoke: it always wins.
    ok(rv)
    assert await wait_outcome(runtime, root) == "REVOKED"
    open_gate(after.id)
    states = await tree_states(runtime, root)
    assert not [n for n, e in states.items() if e["state"] == "RUNNING"], states
    if rt.result:
        assert states[failing.id]["retry"] == 1
        outcome = "retried, then revoked"
    else:
        refused(rt, "revoked")
        assert (states[failing.id]["state"], states[failing.id]["retry"]) == ("FAILED", 0)
        outcome = "revoked first"
    refused(await api.retry_node(runtime, failing.id))
    await _no_live_processes(runtime, root)
    return outcome


async def test_revoke_vs_retry(runtime: Any, mode: str, request: pytest.FixtureRequest) -> None:
    await repeat(runtime, mode, _revoke_vs_retry, request)


# --------------------------------------------------------------------------------------
# two skips of one gateway along different flows
# --------------------------------------------------------------------------------------


def _eg_tree(seed: int) -> tuple[Any, Any, Any, Any]:
    eg = ExclusiveGateway(conditions={0: "1 == 2", 1: "1 == 3"})
    a, b, cg = act("echo"), act("echo"), ConvergeGateway()

    def build(prev: Element) -> Element:
        prev.extend(eg).connect(a, b).to(eg).converge(cg)
        return cg

    return eg, a, b, place(_where(seed), build)


async def _skip_eg_twice(runtime: Any, rng: random.Random | None, seed: int) -> str:
    eg, a, b, placed = _eg_tree(seed)
    root = await start(runtime, placed.tree)
    await wait_state(runtime, root, eg.id, "FAILED")
    to_a, to_b = flow_id(placed.tree, eg.id, a.id), flow_id(placed.tree, eg.id, b.id)
    results = await race(
        rng,
        lambda: api.skip_exclusive_gateway(runtime, eg.id, to_a),
        lambda: api.skip_exclusive_gateway(runtime, eg.id, to_b),
    )
    winner = one_winner(results)
    await wait_outcome(runtime, root, "FINISHED")
    taken, other = (a, b) if winner == 0 else (b, a)
    assert EXECUTIONS[taken.id] == 1
    assert EXECUTIONS[other.id] == 0
    assert len(await histories(runtime, eg.id)) == 1
    return "one flow taken"


async def test_skip_exclusive_gateway_twice(
    runtime: Any, mode: str, request: pytest.FixtureRequest
) -> None:
    await repeat(runtime, mode, _skip_eg_twice, request)


async def _skip_cpg_twice(runtime: Any, rng: random.Random | None, seed: int) -> str:
    cpg = ConditionalParallelGateway(conditions={0: "1 == 2", 1: "1 == 3", 2: "1 == 4"})
    branches = [act("echo") for _ in range(3)]
    cg = ConvergeGateway()

    def build(prev: Element) -> Element:
        prev.extend(cpg).connect(*branches).to(cpg).converge(cg)
        return cg

    placed = place(_where(seed), build)
    root = await start(runtime, placed.tree)
    await wait_state(runtime, root, cpg.id, "FAILED")
    flows = [flow_id(placed.tree, cpg.id, b.id) for b in branches]
    choices = [[0, 1], [1, 2]]
    results = await race(
        rng,
        *[
            (
                lambda picked=picked: api.skip_conditional_parallel_gateway(
                    runtime, cpg.id, [flows[i] for i in picked], cg.id
                )
            )
            for picked in choices
        ],
    )
    winner = one_winner(results)
    await wait_outcome(runtime, root, "FINISHED")
    ran = [EXECUTIONS[b.id] for b in branches]
    assert ran == [1 if i in choices[winner] else 0 for i in range(3)]
    states = await tree_states(runtime, root)
    assert (states[cg.id]["state"], states[cg.id]["loop"]) == ("FINISHED", 1)
    return "one fork"


async def test_skip_conditional_parallel_gateway_twice(
    runtime: Any, mode: str, request: pytest.FixtureRequest
) -> None:
    await repeat(runtime, mode, _skip_cpg_twice, request)


# --------------------------------------------------------------------------------------
# forced fail vs skip (the skip applies only once the forced fail is in)
# --------------------------------------------------------------------------------------


async def _forced_fail_vs_skip(runtime: Any, rng: random.Random | None, seed: int) -> str:
    gate, after = act("gate"), act("echo")
    new_gate(gate.id)  # never opened: the component hangs
    root = await start(runtime, place(_where(seed), steps(gate, after)).tree)
    await wait_gate_entered(runtime, root, gate.id)
    ff, skip = await race(
        rng,
        lambda: api.forced_fail_activity(runtime, gate.id, "hung"),
        lambda: api.skip_node(runtime, gate.id),
    )
    ok(ff)
    if skip.result:
        outcome = "forced fail, then skip"
    else:
        refused(skip, "state is not FAILED, actual RUNNING")
        ok(await api.skip_node(runtime, gate.id))
        outcome = "skip refused, skipped after"
    await wait_outcome(runtime, root, "FINISHED")
    node = await entry(runtime, root, gate.id)
    assert node is not None
    assert (node["state"], node["skip"]) == ("FINISHED", True)
    assert EXECUTIONS[after.id] == 1
    return outcome


async def test_forced_fail_vs_skip(runtime: Any, mode: str, request: pytest.FixtureRequest) -> None:
    await repeat(runtime, mode, _forced_fail_vs_skip, request)


# --------------------------------------------------------------------------------------
# pause vs revoke, resume vs revoke
# --------------------------------------------------------------------------------------


async def _pause_vs_revoke(runtime: Any, rng: random.Random | None, seed: int) -> str:
    gate = act("gate")
    new_gate(gate.id)
    root = await start(runtime, place(_where(seed), steps(gate, act("echo"))).tree)
    await wait_gate_entered(runtime, root, gate.id)
    pause, revoke = await race(
        rng,
        lambda: api.pause_pipeline(runtime, root),
        lambda: api.revoke_pipeline(runtime, root),
    )
    ok(revoke)  # RUNNING and SUSPENDED can both be revoked
    if not pause.result:
        refused(pause, "revoked")
    assert await wait_outcome(runtime, root) == "REVOKED"
    open_gate(gate.id)
    refused(await api.resume_pipeline(runtime, root), "revoked")
    await _no_live_processes(runtime, root)
    return "paused, then revoked" if pause.result else "revoked first"


async def test_pause_vs_revoke(runtime: Any, mode: str, request: pytest.FixtureRequest) -> None:
    await repeat(runtime, mode, _pause_vs_revoke, request)


async def _resume_vs_revoke(runtime: Any, rng: random.Random | None, seed: int) -> str:
    gate, after = act("gate"), act("gate")
    new_gate(gate.id)
    new_gate(after.id)
    root = await start(runtime, place(_where(seed), steps(gate, after)).tree)
    await wait_gate_entered(runtime, root, gate.id)
    ok(await api.pause_pipeline(runtime, root))
    open_gate(gate.id)
    await wait_state(runtime, root, gate.id, "FINISHED")
    resume, revoke = await race(
        rng,
        lambda: api.resume_pipeline(runtime, root),
        lambda: api.revoke_pipeline(runtime, root),
    )
    ok(revoke)  # `after` blocks: the pipeline cannot finish first
    if not resume.result:
        refused(resume, "revoked")
    assert await wait_outcome(runtime, root) == "REVOKED"
    open_gate(after.id)
    states = await tree_states(runtime, root)
    assert not [n for n, e in states.items() if e["state"] == "RUNNING"], states
    await _no_live_processes(runtime, root)
    return "resumed, then revoked" if resume.result else "revoked first"


async def test_resume_vs_revoke(runtime: Any, mode: str, request: pytest.FixtureRequest) -> None:
    await repeat(runtime, mode, _resume_vs_revoke, request)
