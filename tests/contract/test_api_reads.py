"""Read APIs (states, data, histories) and the refusals of ``run_pipeline`` (bad trees, ids)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiobamboo import api, states
from aiobamboo.builder import (
    ConvergeGateway,
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    NodeOutput,
    ParallelGateway,
    Params,
    SubProcess,
    Var,
    build_tree,
)

from .helpers import (
    activity,
    finish,
    flat_states,
    not_stored,
    open_gate,
    plain,
    run,
    splice,
    start,
    uid,
    wait_state,
)

STATE_KEYS = {
    "id",
    "state",
    "root_id:",
    "root_id",
    "parent_id",
    "version",
    "loop",
    "retry",
    "skip",
    "error_ignorable",
    "error_ignored",
    "created_time",
    "started_time",
    "archived_time",
    "children",
}


def _chain(*acts: Any) -> Any:
    s = EmptyStartEvent()
    current = s
    for act in acts:
        current = current.extend(act)
    current.extend(EmptyEndEvent())
    return s


def _nested_tree() -> tuple[dict[str, Any], dict[str, Any]]:
    """root: s -> a -> sub[ s -> b -> subsub[ s -> c -> e ] -> e ] -> d -> e."""
    ids = {k: uid(k) for k in ("a", "b", "c", "d", "sub", "subsub")}
    c = activity("echo", ids["c"])
    subsub = SubProcess(id=ids["subsub"], start=_chain(c))
    b = activity("echo", ids["b"])
    sub = SubProcess(id=ids["sub"], start=_chain(b, subsub))
    a, d = activity("echo", ids["a"]), activity("echo", ids["d"])
    return build_tree(_chain(a, sub, d)), ids


def _assert_utc(value: Any) -> None:
    assert isinstance(value, dt.datetime)
    assert value.utcoffset() == dt.timedelta(0)


# -- state trees -------------------------------------------------------------------------


async def test_pipeline_states_have_the_exact_keys_and_utc_times(runtime: Any) -> None:
    before = dt.datetime.now(dt.UTC)
    tree, ids = _nested_tree()
    root_id = await run(runtime, tree)
    after = dt.datetime.now(dt.UTC)

    res = await api.get_pipeline_states(runtime, root_id)
    assert res.result, res.message
    assert res.message == "success"
    assert set(res.data) == {root_id}
    root = res.data[root_id]
    assert set(root) == STATE_KEYS
    assert root["id"] == root_id
    assert root["root_id:"] == root["root_id"] == root_id
    assert root["parent_id"] == root_id  # as the original
    assert root["state"] == states.FINISHED
    assert root["error_ignorable"] is False
    assert root["error_ignored"] is False
    for key in ("created_time", "started_time", "archived_time"):
        _assert_utc(root[key])
        assert before - dt.timedelta(seconds=1) <= root[key] <= after + dt.timedelta(seconds=1)

    children = root["children"]
    for node_id in ids.values():
        assert node_id in children
    for node_id, entry in children.items():
        assert set(entry) == STATE_KEYS
        assert entry["id"] == node_id
        assert entry["root_id:"] == entry["root_id"] == root_id
        assert entry["children"] == {}
        assert entry["state"] == states.FINISHED
        assert (entry["loop"], entry["retry"], entry["skip"]) == (1, 0, False)
        assert entry["version"]
        for key in ("created_time", "started_time", "archived_time"):
            _assert_utc(entry[key])
        assert entry["started_time"] <= entry["archived_time"]
    assert children[ids["a"]]["parent_id"] == root_id
    assert children[ids["b"]]["parent_id"] == ids["sub"]
    assert children[ids["c"]]["parent_id"] == ids["subsub"]
    assert children[ids["subsub"]]["parent_id"] == ids["sub"]


async def test_pipeline_states_nested_when_not_flat(runtime: Any) -> None:
    tree, ids = _nested_tree()
    root_id = await run(runtime, tree)

    res = await api.get_pipeline_states(runtime, root_id, flat_children=False)
    assert res.result, res.message
    top = res.data[root_id]["children"]
    assert ids["a"] in top
    assert ids["d"] in top
    assert ids["sub"] in top
    assert ids["b"] not in top
    assert ids["c"] not in top
    sub_children = top[ids["sub"]]["children"]
    assert ids["b"] in sub_children
    assert ids["subsub"] in sub_children
    assert ids["c"] not in sub_children
    assert set(sub_children[ids["subsub"]]["children"]) >= {ids["c"]}
    assert sub_children[ids["subsub"]]["children"][ids["c"]]["children"] == {}
    assert top[ids["a"]]["children"] == {}

    flat = (await api.get_pipeline_states(runtime, root_id)).data[root_id]["children"]

    def count(entries: dict[str, Any]) -> int:
        return sum(1 + count(e["children"]) for e in entries.values())

    assert count(top) == len(flat)


async def test_pipeline_states_of_an_unknown_root_is_refused(runtime: Any) -> None:
    await not_stored(runtime, uid("nope"))
    res = await api.get_pipeline_states(runtime, uid("nope"), flat_children=False)
    assert not res.result


async def test_unreached_nodes_have_no_state_while_running(runtime: Any) -> None:
    gate = activity("gate", uid("gate"))
    later = activity("echo", uid("later"))
    root_id = await start(runtime, build_tree(_chain(gate, later)))
    entry = await wait_state(runtime, gate.id, states.RUNNING)
    assert entry["archived_time"] is None
    _assert_utc(entry["started_time"])
    found = await flat_states(runtime, root_id)
    assert later.id not in found
    assert found[root_id]["state"] == states.RUNNING
    assert found[root_id]["archived_time"] is None
    open_gate(gate.id)
    await finish(runtime, root_id)


async def test_root_error_fields_are_the_roots_own(runtime: Any) -> None:
    ignored = activity("fail", uid("ignored"))
    ignored.error_ignorable = True
    root_id = await run(runtime, build_tree(_chain(activity("echo"), ignored)))
    found = await flat_states(runtime, root_id)
    assert found[ignored.id]["error_ignored"] is True
    assert found[ignored.id]["error_ignorable"] is True
    assert found[root_id]["error_ignored"] is False
    assert found[root_id]["error_ignorable"] is False


async def test_children_states_one_level_deep(runtime: Any) -> None:
    tree, ids = _nested_tree()
    root_id = await run(runtime, tree)

    res = await api.get_children_states(runtime, ids["sub"])
    assert res.result, res.message
    assert set(res.data) == {ids["sub"]}
    entry = res.data[ids["sub"]]
    assert set(entry) == STATE_KEYS
    assert entry["parent_id"] == root_id  # the original reports the root here
    assert entry["state"] == states.FINISHED
    assert ids["b"] in entry["children"]
    assert ids["subsub"] in entry["children"]
    assert ids["c"] not in entry["children"]
    for child in entry["children"].values():
        assert set(child) == STATE_KEYS
        assert child["parent_id"] == ids["sub"]

    root_entry = (await api.get_children_states(runtime, root_id)).data[root_id]
    assert ids["a"] in root_entry["children"]
    assert ids["b"] not in root_entry["children"]

    leaf = (await api.get_children_states(runtime, ids["a"])).data[ids["a"]]
    assert leaf["children"] == {}
    assert not (await api.get_children_states(runtime, uid("nope"))).result


# -- execution data ----------------------------------------------------------------------


async def test_execution_data_of_nodes_that_never_ran(runtime: Any) -> None:
    pg, cg = ParallelGateway(id=uid("pg")), ConvergeGateway(id=uid("cg"))
    a, b = activity("echo", uid("a"), text="A"), activity("echo", uid("b"))
    gate = activity("gate", uid("gate"))
    never = activity("echo", uid("never"))
    s = EmptyStartEvent()
    s.extend(pg).connect(a, b).to(pg).converge(cg).extend(gate).extend(never).extend(
        EmptyEndEvent()
    )
    root_id = await start(runtime, build_tree(s))
    await wait_state(runtime, gate.id, states.RUNNING)

    ran = await api.get_execution_data(runtime, a.id)
    assert ran.result, ran.message
    assert set(ran.data) == {"inputs", "outputs"}
    assert ran.data["inputs"] == {"text": "A", "_loop": 1, "_inner_loop": 1}
    assert ran.data["outputs"]["echo"] == "A"

    unknown = uid("unknown")
    for getter in (api.get_execution_data_inputs, api.get_execution_data_outputs):
        refused = await getter(runtime, unknown)
        assert refused.message == f"node({unknown}) does not exist"
    for node_id in (never.id, pg.id):
        missing = await api.get_execution_data(runtime, node_id)
        assert missing.result is False, node_id
        assert missing.message
        inputs_res = await api.get_execution_data_inputs(runtime, node_id)
        assert inputs_res.result, inputs_res.message
        assert inputs_res.data == {}
        outputs_res = await api.get_execution_data_outputs(runtime, node_id)
        assert outputs_res.result, outputs_res.message
        assert outputs_res.data == {}
    open_gate(gate.id)
    await finish(runtime, root_id)


async def test_get_data_shape_for_activities_subprocesses_and_the_root(runtime: Any) -> None:
    producer = activity(
        "flow_inspect",
        uid("producer"),
        text=splice("${name}!"),
        n=plain(3),
        listy=plain([1, "${name}"]),
    )
    producer.component.inputs["raw"] = {"type": "splice", "value": "${name}", "need_render": False}
    inner = activity("echo", uid("inner"), text=splice("${p}"))
    sub = SubProcess(
        id=uid("sub"),
        start=_chain(inner),
        params=Params({"${p}": splice("${name}"), "${q}": plain(1)}),
    )
    tree = build_tree(
        _chain(producer, sub),
        data=Data(
            inputs={
                "${name}": Var(Var.PLAIN, "bob"),
                "${copied}": NodeOutput(source_act=producer.id, source_key="text"),
                "${service}": NodeOutput(source_act=producer.id, source_key="service"),
            }
        ),
    )
    root_id = await run(runtime, tree, root_pipeline_data={"who": "ops", "t": "${name}"})

    res = await api.get_data(runtime, producer.id)
    assert res.result, res.message
    assert res.data == {
        "inputs": {
            "text": {"need_render": True, "value": "${name}!"},
            "n": {"need_render": False, "value": 3},
            "listy": {"need_render": False, "value": [1, "${name}"]},
            "raw": {"need_render": False, "value": "${name}"},
        },
        "outputs": {"text": "${copied}", "service": "${service}"},
    }
    sub_data = (await api.get_data(runtime, sub.id)).data
    assert sub_data is not None
    assert sub_data["inputs"] == {
        "${p}": {"need_render": True, "value": "${name}"},
        "${q}": {"need_render": False, "value": 1},
    }
    assert sub_data["outputs"] == {}
    root_data = (await api.get_data(runtime, root_id)).data
    assert root_data is not None
    assert root_data["inputs"] == {
        "who": {"need_render": False, "value": "ops"},
        "t": {"need_render": False, "value": "${name}"},
    }
    missing = await api.get_data(runtime, uid("nope"))
    assert missing.result is False


# -- run_pipeline refusals -----------------------------------------------------------------


async def test_run_pipeline_refuses_an_invalid_tree(runtime: Any) -> None:
    s = EmptyStartEvent()
    s.extend(EmptyEndEvent())
    tree = build_tree(s)
    res = await api.run_pipeline(runtime, tree)
    assert res.result is False
    assert res.exc is not None
    assert res.message != "success"
    await not_stored(runtime, tree["id"])

    res = await api.run_pipeline(runtime, {"id": "not a tree"})
    assert res.result is False
    res = await api.run_pipeline(runtime, "not a dict")  # type: ignore[arg-type]
    assert res.result is False


async def test_run_pipeline_refuses_a_duplicate_pipeline_id(runtime: Any) -> None:
    gate = activity("gate", uid("gate"))
    pipeline_id = uid("p")
    root_id = await start(runtime, build_tree(_chain(gate), id=pipeline_id))
    await wait_state(runtime, gate.id, states.RUNNING)

    again = await api.run_pipeline(runtime, build_tree(_chain(activity("echo")), id=pipeline_id))
    assert again.result is False
    assert pipeline_id in again.message

    open_gate(gate.id)
    await finish(runtime, root_id)
    after_end = await api.run_pipeline(
        runtime, build_tree(_chain(activity("echo")), id=pipeline_id)
    )
    assert after_end.result is False
    found = await flat_states(runtime, root_id)
    assert gate.id in found
    assert found[root_id]["state"] == states.FINISHED


async def test_run_pipeline_refuses_bad_arguments(runtime: Any) -> None:
    def fresh() -> dict[str, Any]:
        return build_tree(_chain(activity("echo")))

    for kwargs, fragment in (
        ({"root_pipeline_data": [1, 2]}, "root_pipeline_data"),
        ({"root_pipeline_context": "x"}, "root_pipeline_context"),
        ({"subprocess_context": 3}, "subprocess_context"),
        ({"no_such_option": True}, "no_such_option"),
    ):
        tree = fresh()
        res = await api.run_pipeline(runtime, tree, **kwargs)
        assert res.result is False, kwargs
        assert fragment in res.message
        await not_stored(runtime, tree["id"])


async def test_run_pipeline_refuses_a_start_node_that_is_not_allowed(runtime: Any) -> None:
    pg, cg = ParallelGateway(id=uid("pg")), ConvergeGateway(id=uid("cg"))
    inside = activity("echo", uid("inside"))
    s = EmptyStartEvent()
    s.extend(pg).connect(inside, activity("echo")).to(pg).converge(cg).extend(EmptyEndEvent())
    for bad_start in (inside.id, cg.id, uid("unknown")):
        tree = build_tree(s)
        res = await api.run_pipeline(runtime, tree, start_node_id=bad_start)
        assert res.result is False, bad_start
        await not_stored(runtime, tree["id"])


async def test_run_pipeline_from_an_allowed_start_node(runtime: Any) -> None:
    first, second = activity("echo", uid("first")), activity("echo", uid("second"), text="2")
    tree = build_tree(_chain(first, second))
    root_id = await run(runtime, tree, start_node_id=second.id)
    found = await flat_states(runtime, root_id)
    assert first.id not in found
    assert tree["start_event"]["id"] not in found
    assert found[second.id]["state"] == states.FINISHED
    assert found[root_id]["state"] == states.FINISHED


async def test_get_data_shows_hoisted_lazy_inputs_and_start_pre_render_keys(
    runtime: Any,
) -> None:
    lazy_user = activity(
        "flow_inspect", uid("lazy"), t=Var(Var.LAZY, "abc ${x}", custom_type="upper")
    )
    s = _chain(lazy_user)
    tree = build_tree(s, data=Data(inputs={"${x}": plain("q")}, pre_render_keys=["${x}"]))
    await run(runtime, tree)

    res = await api.get_data(runtime, lazy_user.id)
    assert res.result, res.message
    assert res.data == {
        "inputs": {"t": {"need_render": True, "value": f"${{t_{lazy_user.id}}}"}},
        "outputs": {},
    }
    start_data = (await api.get_data(runtime, s.id)).data
    assert start_data == {
        "inputs": {"pre_render_keys": {"need_render": False, "value": ["${x}"]}},
        "outputs": {},
    }
    assert (await api.get_execution_data_inputs(runtime, lazy_user.id)).data == {
        "t": "ABC Q",
        "_loop": 1,
        "_inner_loop": 1,
    }
