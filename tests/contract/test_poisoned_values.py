"""Values the codec cannot store, at every entry point, through ``aiobamboo.api`` only.

A self-referencing value, one nested too deep to read back, an int too long to
write and a string that is not Unicode are each refused naming the problem:
callback data and root pipeline data by the API call, outputs and inputs by
failing the node. The engine keeps working afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aiobamboo import api, codec, states
from aiobamboo.builder import Data, EmptyEndEvent, EmptyStartEvent, Var, build_tree
from aiobamboo.component import Component, LazyVariable, Service

from .helpers import (
    activity,
    deliver,
    finish,
    inputs,
    not_stored,
    outputs,
    plain,
    run,
    splice,
    start,
    state_of,
    uid,
    wait_state,
    waiting_version,
)

POISONS = ["cycle", "deep", "edge", "huge_int", "surrogate"]
#: What each poison's refusal says.
SAID = {
    "cycle": "contains itself",
    "deep": "levels deep",
    "edge": "levels deep",
    "huge_int": "digits",
    "surrogate": "surrogate",
}


def poison(kind: str) -> Any:
    """A fresh value the codec must refuse."""
    if kind == "cycle":
        # Through a tuple and a list, next to a shared (allowed) reference.
        shared = [1, 2]
        value: dict[str, Any] = {"shared": shared, "again": shared}
        value["self"] = [("via a tuple", value)]
        return value
    if kind == "deep":
        # Deeper than a recursive reader can go, holding the tag that makes it walk.
        deep: Any = codec.TAG
        for _ in range(600):
            deep = [deep]
        return deep
    if kind == "edge":
        # As deep as the codec stores on its own, one level too deep inside
        # anything that holds it (outputs, callback data, ...).
        edge: Any = 1
        for _ in range(codec.MAX_DEPTH):
            edge = [edge]
        return edge
    if kind == "huge_int":
        return 10**5000
    assert kind == "surrogate"
    return "half a pair: \ud800"


class PoisonOutputService(Service):
    """Outputs a good value and the poison named by input ``kind``."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.good = "kept"
        data.outputs.bad = poison(data.get_one_of_inputs("kind"))
        return True


class PoisonOutputComponent(Component):
    code = "poison_output"
    name = "Outputs a value the codec refuses"
    bound_service = PoisonOutputService


class PoisonFailService(Service):
    """Fails, with the poison in its outputs: a failed node's outputs are stored too."""

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.bad = poison(data.get_one_of_inputs("kind"))
        return False


class PoisonFailComponent(Component):
    code = "poison_fail"
    name = "Fails with a value the codec refuses"
    bound_service = PoisonFailService


class PoisonScheduleService(Service):
    """Waits for a callback, then outputs the poison it names."""

    __need_schedule__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        return True

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.bad = poison(callback_data["kind"])
        self.finish_schedule()
        return True


class PoisonScheduleComponent(Component):
    code = "poison_schedule"
    name = "Outputs a refused value from schedule"
    bound_service = PoisonScheduleService


class PoisonVariable(LazyVariable):
    """``Var(LAZY, kind, custom_type="poison")``: computes the poison named by its value."""

    code = "poison"

    def get_value(self) -> Any:
        return poison(self.value)


def _chain(*acts: Any) -> Any:
    s = EmptyStartEvent()
    current = s
    for act in acts:
        current = current.extend(act)
    current.extend(EmptyEndEvent())
    return s


async def _still_works(runtime: Any) -> None:
    """A normal pipeline on the same runtime finishes, its data intact."""
    echo = activity("echo", uid("echo"), x=plain({"n": [1, (2, 3)]}))
    await run(runtime, build_tree(_chain(echo)))
    assert (await inputs(runtime, echo.id))["x"] == {"n": [1, (2, 3)]}


def _names_the_problem(message: str, kind: str, where: str) -> None:
    assert SAID[kind] in message, message
    assert where in message, message


# -- (a) callback data -----------------------------------------------------------------


@pytest.mark.parametrize("kind", POISONS)
async def test_callback_data_the_codec_refuses_is_refused_and_the_node_keeps_waiting(
    runtime: Any, kind: str
) -> None:
    waiter = activity("callback", uid("cb"))
    root_id = await start(runtime, build_tree(_chain(waiter)))
    version = await waiting_version(runtime, waiter.id)

    res = await deliver(runtime, waiter.id, version, {"payload": poison(kind)})
    assert res.result is False
    assert "internal error" not in res.message
    _names_the_problem(res.message, kind, "callback data.payload")
    assert type(res.exc).__name__ == "ValueCodecError"

    # The refused callback left no trace: the same attempt takes a good one.
    assert await state_of(runtime, waiter.id) == states.RUNNING
    res = await deliver(runtime, waiter.id, version, {"ok": True})
    assert res.result, res.message
    await finish(runtime, root_id)
    assert (await outputs(runtime, waiter.id))["callback_data"] == {"ok": True}
    await _still_works(runtime)


async def test_a_client_runtime_refuses_callback_data_naming_it(tmp_path: Path) -> None:
    from aiobamboo_sqlite import SQLiteRuntime

    db = tmp_path / "shared.db"
    async with SQLiteRuntime(db) as worker, SQLiteRuntime(db, worker=False) as client:
        waiter = activity("callback", uid("cb"))
        root_id = await start(client, build_tree(_chain(waiter)))
        version = await waiting_version(client, waiter.id)
        for kind in POISONS:
            res = await api.callback(client, waiter.id, version, {"payload": poison(kind)})
            assert res.result is False
            _names_the_problem(res.message, kind, "callback data.payload")
        res = await api.callback(client, waiter.id, version, {"ok": True})
        assert res.result, res.message
        await finish(client, root_id)
        assert (await outputs(worker, waiter.id))["callback_data"] == {"ok": True}


# -- (b) component outputs -------------------------------------------------------------


@pytest.mark.parametrize("kind", POISONS)
async def test_outputs_the_codec_refuses_fail_the_node_and_it_can_be_skipped(
    runtime: Any, kind: str
) -> None:
    bad = activity("poison_output", uid("bad"), kind=plain(kind))
    after = activity("echo", uid("after"))
    root_id = await start(runtime, build_tree(_chain(bad, after)))
    await finish(runtime, root_id, states.FAILED)

    assert await state_of(runtime, bad.id) == states.FAILED
    out = await outputs(runtime, bad.id)
    assert out["_result"] is False
    _names_the_problem(out["ex_data"], kind, "outputs.bad")
    assert out["good"] == "kept"
    assert "bad" not in out
    assert (await inputs(runtime, bad.id))["kind"] == kind

    res = await api.skip_node(runtime, bad.id)
    assert res.result, res.message
    await finish(runtime, root_id)
    assert await state_of(runtime, after.id) == states.FINISHED
    await _still_works(runtime)


@pytest.mark.parametrize("kind", POISONS)
async def test_a_failing_node_with_refused_outputs_fails_cleanly_and_can_be_retried(
    runtime: Any, kind: str
) -> None:
    bad = activity("poison_fail", uid("bad"), kind=plain(kind))
    root_id = await start(runtime, build_tree(_chain(bad)))
    await finish(runtime, root_id, states.FAILED)
    out = await outputs(runtime, bad.id)
    _names_the_problem(out["ex_data"], kind, "outputs.bad")

    res = await api.retry_node(runtime, bad.id, {"kind": poison(kind)})
    assert res.result is False
    assert "internal error" not in res.message
    _names_the_problem(res.message, kind, "data.kind")
    res = await api.retry_node(runtime, bad.id, {"kind": "cycle"})
    assert res.result, res.message
    await wait_state(runtime, bad.id, states.FAILED)
    res = await api.revoke_pipeline(runtime, root_id)
    assert res.result, res.message
    await finish(runtime, root_id, states.REVOKED)
    await _still_works(runtime)


@pytest.mark.parametrize("kind", ["cycle", "deep"])
async def test_outputs_refused_after_a_callback_fail_the_node(runtime: Any, kind: str) -> None:
    waiter = activity("poison_schedule", uid("sched"))
    root_id = await start(runtime, build_tree(_chain(waiter)))
    version = await waiting_version(runtime, waiter.id)
    res = await deliver(runtime, waiter.id, version, {"kind": kind})
    assert res.result, res.message
    await finish(runtime, root_id, states.FAILED)
    _names_the_problem((await outputs(runtime, waiter.id))["ex_data"], kind, "outputs.bad")
    res = await api.revoke_pipeline(runtime, root_id)
    assert res.result, res.message
    await finish(runtime, root_id, states.REVOKED)
    await _still_works(runtime)


# -- (c) root pipeline data and the tree -----------------------------------------------


@pytest.mark.parametrize("kind", POISONS)
async def test_root_pipeline_data_the_codec_refuses_is_refused(runtime: Any, kind: str) -> None:
    probe = activity("echo", uid("probe"))
    tree = build_tree(_chain(probe))
    res = await api.run_pipeline(runtime, tree, root_pipeline_data={"n": poison(kind)})
    assert res.result is False
    assert "internal error" not in res.message
    _names_the_problem(res.message, kind, "root_pipeline_data.n")
    await not_stored(runtime, tree["id"])
    await _still_works(runtime)


@pytest.mark.parametrize("kind", POISONS)
async def test_a_tree_holding_a_value_the_codec_refuses_is_refused(runtime: Any, kind: str) -> None:
    probe = activity("echo", uid("probe"), x=plain(poison(kind)))
    tree = build_tree(_chain(probe))
    res = await api.run_pipeline(runtime, tree)
    assert res.result is False
    assert "internal error" not in res.message
    _names_the_problem(res.message, kind, f"pipeline.activities.{probe.id}.component.inputs.x")
    await not_stored(runtime, tree["id"])
    await _still_works(runtime)


# -- (d) inputs ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", POISONS)
async def test_a_lazy_input_the_codec_refuses_fails_the_node(runtime: Any, kind: str) -> None:
    bad = activity("echo", uid("bad"), x=Var(Var.LAZY, kind, custom_type="poison"))
    after = activity("echo", uid("after"))
    root_id = await start(runtime, build_tree(_chain(bad, after)))
    await finish(runtime, root_id, states.FAILED)
    assert await state_of(runtime, bad.id) == states.FAILED
    assert await state_of(runtime, after.id) is None
    out = await outputs(runtime, bad.id)
    assert out["_result"] is False
    _names_the_problem(out["ex_data"], kind, "inputs.x")
    res = await api.skip_node(runtime, bad.id)
    assert res.result, res.message
    await finish(runtime, root_id)
    await _still_works(runtime)


@pytest.mark.parametrize("kind", POISONS)
async def test_a_context_value_the_codec_refuses_fails_the_node_that_reads_it(
    runtime: Any, kind: str
) -> None:
    bad = activity("echo", uid("bad"), x=splice("${poisoned}"))
    data = Data(inputs={"${poisoned}": Var(Var.LAZY, kind, custom_type="poison")})
    root_id = await start(runtime, build_tree(_chain(bad), data=data))
    await finish(runtime, root_id, states.FAILED)
    out = await outputs(runtime, bad.id)
    assert out["_result"] is False
    _names_the_problem(out["ex_data"], kind, "inputs.x")
    res = await api.revoke_pipeline(runtime, root_id)
    assert res.result, res.message
    await finish(runtime, root_id, states.REVOKED)
    await _still_works(runtime)


async def test_a_shared_reference_is_not_a_cycle_anywhere(runtime: Any) -> None:
    shared = [1, {"x": 2}]
    probe = activity("flow_inspect", uid("probe"), v=plain({"a": shared, "b": shared}))
    await run(runtime, build_tree(_chain(probe)), root_pipeline_data={"a": shared, "b": shared})
    got = await outputs(runtime, probe.id)
    assert got["v"] == {"a": shared, "b": shared}
    assert got["parent_inputs"] == {"a": shared, "b": shared}
