"""Loops through back edges, histories, the rerun limit, loops through sub-processes."""

from __future__ import annotations

import datetime as dt
from typing import Any

from aiobamboo import api, states
from aiobamboo.builder import (
    ConvergeGateway,
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    NodeOutput,
    ParallelGateway,
    ServiceActivity,
    SubProcess,
    build_tree,
)
from aiobamboo.engine import Settings

from . import components
from .helpers import (
    activity,
    deliver,
    drop_schema,
    entry_of,
    finish,
    flat_states,
    inputs,
    not_stored,
    outputs,
    run,
    splice,
    start,
    uid,
    wait_for,
)

HISTORY_KEYS = {
    "id",
    "node_id",
    "started_time",
    "archived_time",
    "retry",
    "loop",
    "skip",
    "version",
    "inputs",
    "outputs",
}


def _counter_loop(times: int = 3) -> tuple[dict[str, Any], Any, Any, Any]:
    """``s -> counter -> probe -> eg --(${count} < times)--> counter | --> end``."""
    s, end = EmptyStartEvent(), EmptyEndEvent(id=uid("end"))
    counter = activity("counter", uid("counter"), count=splice("${count}"))
    probe = activity("flow_inspect", uid("probe"), loop=splice("${_loop}"), seen=splice("${count}"))
    eg = ExclusiveGateway(
        id=uid("eg"), conditions={0: f"${{count}} < {times}", 1: f"${{count}} >= {times}"}
    )
    s.extend(counter).extend(probe).extend(eg).connect(counter, end)
    data = Data(
        inputs={"${count}": NodeOutput(source_act=counter.id, source_key="count")},
        outputs=["${count}"],
    )
    return build_tree(s, data=data), counter, probe, eg


async def test_loop_through_an_exclusive_gateway_counts_and_writes_histories(
    runtime: Any,
) -> None:
    tree, counter, probe, eg = _counter_loop(3)
    root_id = await run(runtime, tree, cycle_tolerate=True, root_pipeline_context={"count": 0})

    found = await flat_states(runtime, root_id)
    assert found[counter.id]["loop"] == 3
    assert found[probe.id]["loop"] == 3
    assert found[eg.id]["loop"] == 3
    assert found[counter.id]["state"] == states.FINISHED
    assert components.EXECUTIONS[counter.id] == 3
    assert await outputs(runtime, root_id) == {"${count}": 3}

    histories = await api.get_node_histories(runtime, counter.id)
    assert histories.result, histories.message
    rows = histories.data
    assert rows is not None
    assert [row["loop"] for row in rows] == [1, 2]
    for row in rows:
        assert set(row) == HISTORY_KEYS
        assert row["node_id"] == counter.id
        assert row["retry"] == 0
        assert row["skip"] is False
        assert isinstance(row["started_time"], dt.datetime)
        assert row["started_time"].tzinfo is not None
        assert row["archived_time"] >= row["started_time"]
    assert [row["outputs"]["count"] for row in rows] == [1, 2]
    assert [row["inputs"]["count"] for row in rows] == [0, 1]
    versions = [row["version"] for row in rows] + [found[counter.id]["version"]]
    assert len(set(versions)) == 3  # every entry is a new attempt
    assert rows[0]["started_time"] <= rows[1]["started_time"]

    # _loop rises with every entry, in histories and in the last execution.
    probe_rows = (await api.get_node_histories(runtime, probe.id)).data
    assert probe_rows is not None
    assert [row["inputs"]["loop"] for row in probe_rows] == [1, 2]
    assert [row["outputs"]["_loop"] for row in probe_rows] == [1, 2]
    assert [row["inputs"]["seen"] for row in probe_rows] == [1, 2]
    last = await inputs(runtime, probe.id)
    assert (last["loop"], last["_loop"], last["seen"]) == (3, 3, 3)
    assert (await outputs(runtime, probe.id))["service"]["loop"] == 3

    short = await api.get_node_short_histories(runtime, counter.id)
    assert short.result, short.message
    assert short.data is not None
    assert [set(row) for row in short.data] == [HISTORY_KEYS - {"inputs", "outputs"}] * 2
    assert [row["id"] for row in short.data] == [row["id"] for row in rows]

    only_second = await api.get_node_histories(runtime, counter.id, loop=2)
    assert only_second.data is not None
    assert [row["loop"] for row in only_second.data] == [2]
    assert (await api.get_node_short_histories(runtime, counter.id, loop=7)).data == []


async def test_a_node_run_once_has_no_history(runtime: Any) -> None:
    tree, counter, _probe, _eg = _counter_loop(1)
    await run(runtime, tree, cycle_tolerate=True, root_pipeline_context={"count": 0})
    assert (await api.get_node_histories(runtime, counter.id)).data == []
    assert (await api.get_node_short_histories(runtime, counter.id)).data == []
    assert (await entry_of(runtime, counter.id) or {})["loop"] == 1


async def test_histories_of_an_unknown_node_are_refused(runtime: Any) -> None:
    res = await api.get_node_histories(runtime, uid("nope"))
    assert not res.result
    assert res.message.endswith("does not exist")


async def test_a_loop_without_cycle_tolerate_is_refused(runtime: Any) -> None:
    tree, _counter, _probe, _eg = _counter_loop(3)
    res = await api.run_pipeline(runtime, tree, root_pipeline_context={"count": 0})
    assert res.result is False
    assert "cycle" in res.message
    await not_stored(runtime, tree["id"])


async def test_rerun_limit_fails_the_looping_node(runtime_factory: Any) -> None:
    rt = await runtime_factory(settings=Settings(rerun_limit=3))
    try:
        async with rt:
            s = EmptyStartEvent()
            looping = activity("echo", uid("looping"))
            eg = ExclusiveGateway(id=uid("eg"), conditions={0: "1 == 1", 1: "1 == 0"})
            s.extend(looping).extend(eg).connect(looping, EmptyEndEvent())
            root_id = await start(rt, build_tree(s), cycle_tolerate=True)
            message = await finish(rt, root_id, states.FAILED)

            assert looping.id in message
            entry = await entry_of(rt, looping.id)
            assert entry is not None
            assert entry["state"] == states.FAILED
            out = await outputs(rt, looping.id)
            assert out["ex_data"] == "node execution exceed rerun limit 3"
            assert components.EXECUTIONS[looping.id] == entry["loop"]
            assert entry["loop"] >= 3
    finally:
        await drop_schema(rt)


async def test_loop_through_a_subprocess_resets_inner_loop_of_its_children(
    runtime: Any,
) -> None:
    inner_probe = activity(
        "flow_inspect", uid("inner"), loop=splice("${_loop}"), inner=splice("${_inner_loop}")
    )
    inner_start = EmptyStartEvent()
    inner_start.extend(inner_probe).extend(EmptyEndEvent())
    sub = SubProcess(id=uid("sub"), start=inner_start)
    counter = activity("counter", uid("counter"), count=splice("${count}"))
    eg = ExclusiveGateway(id=uid("eg"), conditions={0: "${count} < 3", 1: "${count} >= 3"})
    s = EmptyStartEvent()
    s.extend(sub).extend(counter).extend(eg).connect(sub, EmptyEndEvent())
    tree = build_tree(
        s, data=Data(inputs={"${count}": NodeOutput(source_act=counter.id, source_key="count")})
    )
    root_id = await run(runtime, tree, cycle_tolerate=True, root_pipeline_context={"count": 0})

    found = await flat_states(runtime, root_id)
    assert found[sub.id]["loop"] == 3
    assert found[inner_probe.id]["loop"] == 3
    got = await inputs(runtime, inner_probe.id)
    assert (got["loop"], got["inner"]) == (3, 1)
    service = (await outputs(runtime, inner_probe.id))["service"]
    assert (service["loop"], service["inner_loop"]) == (3, 1)
    assert service["top_pipeline_id"] == sub.id
    assert service["root_pipeline_id"] == root_id
    rows = (await api.get_node_histories(runtime, inner_probe.id)).data
    assert rows is not None
    assert [(r["inputs"]["loop"], r["inputs"]["inner"]) for r in rows] == [(1, 1), (2, 1)]
    sub_rows = (await api.get_node_histories(runtime, sub.id)).data
    assert sub_rows is not None
    assert [r["loop"] for r in sub_rows] == [1, 2]


async def test_nested_subprocess_outputs_travel_up_two_levels(runtime: Any) -> None:
    leaf = activity("flow_set", uid("leaf"), set={"v": "from the bottom"})
    inner_start = EmptyStartEvent()
    inner_start.extend(leaf).extend(EmptyEndEvent())
    inner = SubProcess(
        id=uid("inner"),
        start=inner_start,
        data=Data(
            inputs={"${leaf_v}": NodeOutput(source_act=leaf.id, source_key="v")},
            outputs=["${leaf_v}"],
        ),
    )
    mid_start = EmptyStartEvent()
    mid_start.extend(inner).extend(EmptyEndEvent())
    outer = SubProcess(
        id=uid("outer"),
        start=mid_start,
        data=Data(
            inputs={"${mid_v}": NodeOutput(source_act=inner.id, source_key="${leaf_v}")},
            outputs=["${mid_v}"],
        ),
    )
    reader = activity("flow_inspect", uid("reader"), got=splice("${top_v}"))
    s = EmptyStartEvent()
    s.extend(outer).extend(reader).extend(EmptyEndEvent())
    tree = build_tree(
        s,
        data=Data(
            inputs={"${top_v}": NodeOutput(source_act=outer.id, source_key="${mid_v}")},
            outputs=["${top_v}"],
        ),
    )
    root_id = await run(runtime, tree)
    assert (await inputs(runtime, reader.id))["got"] == "from the bottom"
    assert await outputs(runtime, root_id) == {"${top_v}": "from the bottom"}
    inner_out = await outputs(runtime, inner.id)
    assert inner_out["${leaf_v}"] == "from the bottom"
    assert (inner_out["_loop"], inner_out["_inner_loop"]) == (1, 1)


async def test_loop_through_a_parallel_block_with_a_callback_in_it(runtime: Any) -> None:
    counter = activity("counter", uid("counter"), count=splice("${count}"))
    pg, cg = ParallelGateway(id=uid("pg")), ConvergeGateway(id=uid("cg"))
    echo, waiter = activity("echo", uid("echo")), activity("callback", uid("cb"))
    eg = ExclusiveGateway(id=uid("eg"), conditions={0: "${count} < 3", 1: "${count} >= 3"})
    s = EmptyStartEvent()
    s.extend(counter).extend(pg).connect(echo, waiter).to(pg).converge(cg).extend(eg).connect(
        counter, EmptyEndEvent()
    )
    data = Data(inputs={"${count}": NodeOutput(source_act=counter.id, source_key="count")})
    root_id = await start(
        runtime, build_tree(s, data=data), cycle_tolerate=True, root_pipeline_context={"count": 0}
    )

    versions: list[str] = []
    for i in range(3):

        async def next_attempt() -> str | None:
            entry = await entry_of(runtime, waiter.id)
            if entry and entry["state"] == states.RUNNING and entry["version"] not in versions:
                return str(entry["version"])
            return None

        version = await wait_for(next_attempt, what=f"attempt {i + 1} of the callback")
        if versions:
            stale = await api.callback(runtime, waiter.id, versions[-1], {"stale": i})
            assert stale.result is False
            assert f"node version {versions[-1]} not exist" in stale.message
        versions.append(version)
        res = await deliver(runtime, waiter.id, version, {"i": i})
        assert res.result, res.message
    await finish(runtime, root_id)

    found = await flat_states(runtime, root_id)
    for node in (counter, pg, echo, waiter, cg, eg):
        assert found[node.id]["loop"] == 3, node.id
        assert found[node.id]["state"] == states.FINISHED
    assert components.EXECUTIONS[echo.id] == 3
    assert (await outputs(runtime, waiter.id))["callback_data"] == {"i": 2}
    rows = (await api.get_node_histories(runtime, waiter.id)).data
    assert rows is not None
    assert [r["outputs"]["callback_data"] for r in rows] == [{"i": 0}, {"i": 1}]
    assert [r["version"] for r in rows] == versions[:2]


async def test_loop_enabled_activity_runs_loop_times_and_collects_outputs(runtime: Any) -> None:
    looping = ServiceActivity(
        component_code="flow_inspect",
        id=uid("looping"),
        loop_config={"enable": True, "loop_times": 3, "outputs_key": "${collected}"},
    )
    looping.component.inputs["inner"] = splice("${_inner_loop}")
    reader = activity("flow_inspect", uid("reader"), got=splice("${collected}"))
    s = EmptyStartEvent()
    s.extend(looping).extend(reader).extend(EmptyEndEvent())
    root_id = await run(runtime, build_tree(s))

    found = await flat_states(runtime, root_id)
    assert found[looping.id]["loop"] == 3
    assert found[reader.id]["loop"] == 1
    assert (await inputs(runtime, looping.id))["inner"] == 3
    assert (await inputs(runtime, reader.id))["got"] == [
        {"result": True, "inner_loop": 1},
        {"result": True, "inner_loop": 2},
        {"result": True, "inner_loop": 3},
    ]
    rows = (await api.get_node_short_histories(runtime, looping.id)).data
    assert rows is not None
    assert [r["loop"] for r in rows] == [1, 2]
