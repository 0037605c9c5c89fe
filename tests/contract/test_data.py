"""Data and context and the value codec, through ``aiobamboo.api`` only."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import anyio
import pytest

from aiobamboo import api, states
from aiobamboo.builder import (
    ConvergeGateway,
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    InitializedRewritableNodeOutput,
    NodeOutput,
    Params,
    RewritableNodeOutput,
    SubProcess,
    Var,
    build_tree,
)

from .components_flow import CODEC_VALUES
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
    waiting_version,
)


def _chain(*acts: Any) -> Any:
    s = EmptyStartEvent()
    current = s
    for act in acts:
        current = current.extend(act)
    current.extend(EmptyEndEvent())
    return s


def _lazy(value: Any, code: str) -> Var:
    return Var(Var.LAZY, value, custom_type=code)


# -- where data comes from ----------------------------------------------------------------


async def test_root_pipeline_data_is_parent_data_and_never_rendered(runtime: Any) -> None:
    probe = activity("flow_inspect", uid("probe"))
    tree = build_tree(_chain(probe), data=Data(inputs={"${x}": plain("X")}))
    root_data = {"operator": "alice", "raw": "${x}"}
    root_id = await run(runtime, tree, root_pipeline_data=root_data)

    out = await outputs(runtime, probe.id)
    assert out["parent_inputs"] == root_data
    service = out["service"]
    assert service["id"] == probe.id
    assert service["root_pipeline_id"] == root_id
    assert service["top_pipeline_id"] == root_id
    assert (service["loop"], service["inner_loop"]) == (1, 1)
    entry = (await api.get_children_states(runtime, probe.id)).data[probe.id]
    assert service["version"] == entry["version"]


async def test_splice_chains_render_and_whole_string_refs_keep_their_type(runtime: Any) -> None:
    probe = activity(
        "flow_inspect",
        uid("probe"),
        joined=splice("${a}"),
        deeper=splice("<${e}>"),
        number=splice("${c}"),
        numbers=splice("${lst}"),
        mapping=splice("${dct}"),
        expr=splice("${c * 10 + 1}"),
        method=splice("${b.upper()}"),
        nested=splice({"k": "${c}", "l": ["${b}", ("${c}",)]}),
    )
    probe.component.inputs["raw"] = {"type": "splice", "value": "${c}", "need_render": False}
    tree = build_tree(
        _chain(probe),
        data=Data(
            inputs={
                "${e}": splice("${a}|end"),
                "${a}": splice("${b}_${c}"),
                "${b}": plain("1"),
                "${c}": plain(2),
                "${lst}": plain([1, "two", {"three": 3}]),
                "${dct}": plain({"k": [1, 2]}),
            }
        ),
    )
    await run(runtime, tree)

    got = await inputs(runtime, probe.id)
    assert got["joined"] == "1_2"
    assert got["deeper"] == "<1_2|end>"
    assert got["number"] == 2
    assert got["numbers"] == [1, "two", {"three": 3}]
    assert got["mapping"] == {"k": [1, 2]}
    assert got["expr"] == "21"
    assert got["method"] == "1"
    assert got["raw"] == "${c}"
    assert got["nested"] == {"k": 2, "l": ["1", (2,)]}
    assert (got["_loop"], got["_inner_loop"]) == (1, 1)
    types = (await outputs(runtime, probe.id))["types"]
    assert types["number"] == "int"
    assert types["numbers"] == "list"
    assert types["mapping"] == "dict"


async def test_shell_like_and_unknown_references_stay_literal(runtime: Any) -> None:
    probe = activity(
        "flow_inspect", uid("probe"), cmd=splice("tail ${LOG_FILE:-/tmp/x.log} ${missing}")
    )
    await run(runtime, build_tree(_chain(probe)))
    assert (await inputs(runtime, probe.id))["cmd"] == "tail ${LOG_FILE:-/tmp/x.log} ${missing}"


async def test_lazy_variable_in_context_and_as_node_input(runtime: Any) -> None:
    probe = activity(
        "flow_inspect",
        uid("probe"),
        shout=splice("${shout}"),
        direct=_lazy("direct ${name}", "upper"),
    )
    tree = build_tree(
        _chain(probe),
        data=Data(inputs={"${name}": plain("bob"), "${shout}": _lazy("hello ${name}", "upper")}),
    )
    await run(runtime, tree)
    got = await inputs(runtime, probe.id)
    assert got["shout"] == "HELLO BOB"
    assert got["direct"] == "DIRECT BOB"


async def test_lazy_variable_that_raises_fails_only_the_node_that_needs_it(runtime: Any) -> None:
    first = activity("flow_inspect", uid("first"), text="fine")
    needs = activity("flow_inspect", uid("needs"), value=splice("${bad}"))
    tree = build_tree(_chain(first, needs), data=Data(inputs={"${bad}": _lazy("x", "broken")}))
    root_id = await start(runtime, tree)
    await finish(runtime, root_id, states.FAILED)

    assert await state_of(runtime, first.id) == states.FINISHED
    assert await state_of(runtime, needs.id) == states.FAILED
    out = await outputs(runtime, needs.id)
    assert "hydrate" in out["ex_data"]
    assert "lazy variable exploded" in out["ex_data"]
    assert out["_result"] is False


async def test_unknown_lazy_variable_type_fails_the_node_naming_it(runtime: Any) -> None:
    needs = activity("flow_inspect", uid("needs"), value=_lazy("x", "flow_no_such_lazy"))
    root_id = await start(runtime, build_tree(_chain(needs)))
    await finish(runtime, root_id, states.FAILED)
    assert "flow_no_such_lazy" in (await outputs(runtime, needs.id))["ex_data"]


# -- outputs into the context ---------------------------------------------------------------


async def test_node_output_feeds_a_later_node(runtime: Any) -> None:
    producer = activity("flow_set", uid("producer"), set={"answer": 42, "other": "x"})
    consumer = activity("flow_inspect", uid("consumer"), got=splice("${answer}"))
    ok = activity("flow_inspect", uid("ok"), got=splice("${ok}"))
    tree = build_tree(
        _chain(producer, consumer, ok),
        data=Data(
            inputs={
                "${answer}": NodeOutput(source_act=producer.id, source_key="answer"),
                "${ok}": NodeOutput(source_act=producer.id, source_key="_result"),
            }
        ),
    )
    await run(runtime, tree)
    assert (await inputs(runtime, consumer.id))["got"] == 42
    assert (await inputs(runtime, ok.id))["got"] is True


async def test_rewritable_node_output_last_writer_wins(runtime: Any) -> None:
    w1 = activity("flow_set", uid("w1"), set={"v": "first"})
    between = activity("flow_inspect", uid("between"), got=splice("${w}"))
    w2 = activity("flow_set", uid("w2"), set={"v": "second"})
    after = activity("flow_inspect", uid("after"), got=splice("${w}"))
    sources = [{"source_act": w1.id, "source_key": "v"}, {"source_act": w2.id, "source_key": "v"}]
    tree = build_tree(
        _chain(w1, between, w2, after),
        data=Data(inputs={"${w}": RewritableNodeOutput(source_act=sources)}),
    )
    await run(runtime, tree)
    assert (await inputs(runtime, between.id))["got"] == "first"
    assert (await inputs(runtime, after.id))["got"] == "second"


async def test_failed_activity_outputs_are_still_extracted(runtime: Any) -> None:
    bad = activity("fail", uid("bad"))
    tree = build_tree(
        _chain(bad),
        data=Data(inputs={"${tried}": NodeOutput(source_act=bad.id, source_key="attempted")}),
    )
    root_id = await start(runtime, tree)
    await finish(runtime, root_id, states.FAILED)
    # Observable through a retry: the retried node sees the extracted value.
    res = await api.retry_node(runtime, bad.id, data={"ok": True, "seen": "${tried}"})
    assert res.result, res.message
    await finish(runtime, root_id)
    assert (await inputs(runtime, bad.id))["seen"] is True


async def test_pipeline_outputs_are_the_root_execution_outputs(runtime: Any) -> None:
    producer = activity("flow_set", uid("producer"), set={"total": 7})
    tree = build_tree(
        _chain(producer),
        data=Data(
            inputs={
                "${total}": NodeOutput(source_act=producer.id, source_key="total"),
                "${label}": splice("total=${total}"),
                "${unused}": plain("u"),
            },
            outputs=["${total}", "${label}"],
        ),
    )
    root_id = await run(runtime, tree)
    assert await outputs(runtime, root_id) == {"${total}": 7, "${label}": "total=7"}


async def test_root_pipeline_context_values_are_in_the_root_context(runtime: Any) -> None:
    probe = activity("flow_inspect", uid("probe"), env=splice("${env}"), n=splice("${n}"))
    await run(
        runtime, build_tree(_chain(probe)), root_pipeline_context={"env": "prod", "n": [1, 2]}
    )
    got = await inputs(runtime, probe.id)
    assert got["env"] == "prod"
    assert got["n"] == [1, 2]


async def test_pre_render_keys_freeze_a_value_at_the_start(runtime: Any) -> None:
    async def reads_after_change(pre_render: bool) -> Any:
        changer = activity("flow_set", uid("changer"), set={"base": "changed"})
        reader = activity("flow_inspect", uid("reader"), got=splice("${k}"))
        sources = [{"source_act": changer.id, "source_key": "base"}]
        data = Data(
            inputs={
                "${base}": InitializedRewritableNodeOutput(
                    source_act=sources, type=Var.PLAIN, value="orig"
                ),
                "${k}": splice("${base}-v"),
            },
            pre_render_keys=["${k}"] if pre_render else [],
        )
        await run(runtime, build_tree(_chain(changer, reader), data=data))
        return (await inputs(runtime, reader.id))["got"]

    assert await reads_after_change(pre_render=False) == "changed-v"
    assert await reads_after_change(pre_render=True) == "orig-v"


# -- sub-processes ----------------------------------------------------------------------


async def test_params_flow_into_a_subprocess_and_outputs_back(runtime: Any) -> None:
    inner_probe = activity(
        "flow_inspect", uid("inner"), got=splice("${inner}"), kept=splice("${default_only}")
    )
    sub_data = Data(
        inputs={
            "${inner}": plain("default"),
            "${default_only}": plain("d"),
            "${result}": NodeOutput(source_act=inner_probe.id, source_key="got"),
        },
        outputs=["${result}"],
    )
    sub = SubProcess(
        id=uid("sub"),
        start=_chain(inner_probe),
        data=sub_data,
        params=Params({"${inner}": splice("${outer}-x")}),
    )
    after = activity("flow_inspect", uid("after"), got=splice("${got}"), loop=splice("${sl}"))
    tree = build_tree(
        _chain(sub, after),
        data=Data(
            inputs={
                "${outer}": plain("val"),
                "${got}": NodeOutput(source_act=sub.id, source_key="${result}"),
                "${sl}": NodeOutput(source_act=sub.id, source_key="_loop"),
            }
        ),
    )
    await run(runtime, tree)

    assert await inputs(runtime, inner_probe.id) == {
        "got": "val-x",
        "kept": "d",
        "_loop": 1,
        "_inner_loop": 1,
    }
    sub_data_res = await api.get_execution_data(runtime, sub.id)
    assert sub_data_res.result, sub_data_res.message
    assert sub_data_res.data["inputs"] == {"${inner}": "val-x"}
    assert sub_data_res.data["outputs"]["${result}"] == "val-x"
    assert sub_data_res.data["outputs"]["_loop"] == 1
    got = await inputs(runtime, after.id)
    assert got["got"] == "val-x"
    assert got["loop"] == 1


async def test_subprocess_context_is_visible_in_every_subprocess(runtime: Any) -> None:
    deep_probe = activity("flow_inspect", uid("deep"), tenant=splice("${tenant}"))
    deep = SubProcess(id=uid("deep_sub"), start=_chain(deep_probe))
    mid_probe = activity("flow_inspect", uid("mid"), tenant=splice("${tenant}"))
    mid = SubProcess(id=uid("mid_sub"), start=_chain(mid_probe, deep))
    await run(runtime, build_tree(_chain(mid)), subprocess_context={"tenant": "acme"})
    assert (await inputs(runtime, mid_probe.id))["tenant"] == "acme"
    assert (await inputs(runtime, deep_probe.id))["tenant"] == "acme"


async def test_subprocess_context_is_isolated_from_the_parent(runtime: Any) -> None:
    inner_probe = activity("flow_inspect", uid("inner"), leak=splice("${secret}"))
    sub = SubProcess(id=uid("sub"), start=_chain(inner_probe))
    tree = build_tree(_chain(sub), data=Data(inputs={"${secret}": plain("parent only")}))
    await run(runtime, tree)
    assert (await inputs(runtime, inner_probe.id))["leak"] == "${secret}"


# -- failures and hostile input ---------------------------------------------------------


async def test_ex_data_carries_the_traceback_when_the_component_raised(runtime: Any) -> None:
    bad = activity("fail", uid("bad"), **{"raise": True})
    root_id = await start(runtime, build_tree(_chain(bad)))
    await finish(runtime, root_id, states.FAILED)
    out = await outputs(runtime, bad.id)
    assert "Traceback (most recent call last)" in out["ex_data"]
    assert "RuntimeError: boom from component" in out["ex_data"]
    assert out["_result"] is False
    assert out["attempted"] is True


HOSTILE = [
    "${().__class__}",
    "${open('/etc/passwd').read()}",
    "${x.format(1)}",
    "${'x' * 10**10}",
]


def _hostile_tree(where: str, expr: str) -> tuple[dict[str, Any], str]:
    """A pipeline with ``expr`` in one place; (tree, id of the node that should fail)."""
    ctx: dict[str, Any] = {"${x}": plain("abc")}
    if where == "activity input":
        act = activity("flow_inspect", uid("hostile"), v=splice(expr))
        return build_tree(_chain(act), data=Data(inputs=ctx)), act.id
    if where == "context variable":
        act = activity("flow_inspect", uid("hostile"), v=splice("${h}"))
        data = Data(inputs={**ctx, "${h}": splice(f"pre {expr} post")})
        return build_tree(_chain(act), data=data), act.id
    if where == "gateway condition":
        s, eg = EmptyStartEvent(), ExclusiveGateway(id=uid("eg"))
        eg.conditions = {0: f"{expr} == 1", 1: "1 == 1"}
        s.extend(eg).connect(activity("echo"), activity("echo")).to(eg).converge(
            ConvergeGateway()
        ).extend(EmptyEndEvent())
        return build_tree(s, data=Data(inputs=ctx)), eg.id
    if where == "subprocess params":
        sub = SubProcess(
            id=uid("sub"), start=_chain(activity("echo")), params=Params({"${p}": splice(expr)})
        )
        return build_tree(_chain(sub), data=Data(inputs=ctx)), sub.id
    assert where == "pipeline outputs"
    s = _chain(activity("echo"))
    end_id = s.tail().id
    data = Data(inputs={**ctx, "${o}": splice(expr)}, outputs=["${o}"])
    return build_tree(s, data=data), end_id


@pytest.mark.parametrize(
    "where",
    [
        "activity input",
        "context variable",
        "gateway condition",
        "subprocess params",
        "pipeline outputs",
    ],
)
async def test_hostile_template_fails_only_its_node(runtime: Any, where: str) -> None:
    calm = [activity("flow_inspect", uid("calm"), x=splice("${v}")) for _ in range(3)]
    calm_trees = [
        build_tree(_chain(a), data=Data(inputs={"${v}": plain(i)})) for i, a in enumerate(calm)
    ]
    hostile = [_hostile_tree(where, expr) for expr in HOSTILE]

    hostile_ids = [await start(runtime, tree) for tree, _node in hostile]
    calm_ids = [await start(runtime, t) for t in calm_trees]
    for root_id, (_tree, node_id) in zip(hostile_ids, hostile, strict=True):
        message = await finish(runtime, root_id, states.FAILED)
        assert node_id in message
        ex_data = (await outputs(runtime, node_id))["ex_data"]
        assert "sandbox" in ex_data
    for root_id in calm_ids:
        await finish(runtime, root_id)
    assert [(await inputs(runtime, a.id))["x"] for a in calm] == [0, 1, 2]


async def test_an_output_the_codec_cannot_store_fails_the_node_naming_the_key(
    runtime: Any,
) -> None:
    bad = activity("bad_object", uid("bad"))
    after = activity("echo", uid("after"))
    root_id = await start(runtime, build_tree(_chain(bad, after)))
    await finish(runtime, root_id, states.FAILED)
    assert await state_of(runtime, bad.id) == states.FAILED
    assert await state_of(runtime, after.id) is None
    out = await outputs(runtime, bad.id)
    assert "thing" in out["ex_data"]
    assert out["_result"] is False


# -- the value codec ---------------------------------------------------------------------


def _assert_codec_values(got: dict[str, Any]) -> None:
    for key, value in CODEC_VALUES.items():
        assert got[key] == value, key
    assert type(got["pair"]) is tuple
    assert type(got["pair"][1]) is tuple
    assert type(got["nested"]["items"][0]) is tuple
    assert got["naive"].tzinfo is None
    assert got["aware"].utcoffset() == dt.timedelta(hours=8)
    assert type(got["day"]) is dt.date
    assert str(got["money"]) == "12345678901234567890.1000"
    assert str(got["pair"][2][0]) == "0.10"


async def test_codec_values_round_trip_through_inputs_outputs_and_context(runtime: Any) -> None:
    through_inputs = activity(
        "flow_inspect", uid("in"), **{k: plain(v) for k, v in CODEC_VALUES.items()}
    )
    producer = activity("flow_values", uid("values"))
    through_context = activity(
        "flow_inspect", uid("ctx"), **{k: splice(f"${{ctx_{k}}}") for k in CODEC_VALUES}
    )
    ctx_vars = {
        f"${{ctx_{k}}}": NodeOutput(source_act=producer.id, source_key=k) for k in CODEC_VALUES
    }
    tree = build_tree(
        _chain(through_inputs, producer, through_context),
        data=Data(inputs=ctx_vars, outputs=[f"${{ctx_{k}}}" for k in CODEC_VALUES]),
    )
    root_id = await run(runtime, tree, root_pipeline_data=dict(CODEC_VALUES))

    _assert_codec_values(await inputs(runtime, through_inputs.id))
    _assert_codec_values(await outputs(runtime, through_inputs.id))
    _assert_codec_values((await outputs(runtime, through_inputs.id))["parent_inputs"])
    _assert_codec_values(await outputs(runtime, producer.id))
    _assert_codec_values(await inputs(runtime, through_context.id))
    root_out = await outputs(runtime, root_id)
    _assert_codec_values({k: root_out[f"${{ctx_{k}}}"] for k in CODEC_VALUES})
    histories = await api.get_node_histories(runtime, producer.id)
    assert histories.result
    assert histories.data == []


async def test_codec_values_round_trip_through_callback_data(runtime: Any) -> None:
    waiter = activity("callback", uid("cb"))
    root_id = await start(runtime, build_tree(_chain(waiter)))
    version = await waiting_version(runtime, waiter.id)
    res = await deliver(runtime, waiter.id, version, dict(CODEC_VALUES))
    assert res.result, res.message
    await finish(runtime, root_id)
    _assert_codec_values((await outputs(runtime, waiter.id))["callback_data"])


async def test_codec_values_in_the_tree_survive_get_data(runtime: Any) -> None:
    probe = activity("flow_inspect", uid("probe"), when=plain(CODEC_VALUES["naive"]))
    await run(runtime, build_tree(_chain(probe)))
    res = await api.get_data(runtime, probe.id)
    assert res.result, res.message
    assert res.data["inputs"]["when"] == {"need_render": False, "value": CODEC_VALUES["naive"]}
    assert res.data["inputs"]["when"]["value"].tzinfo is None


async def test_root_pipeline_data_that_cannot_be_stored_is_refused(runtime: Any) -> None:
    probe = activity("flow_inspect", uid("probe"))
    tree = build_tree(_chain(probe))
    res = await api.run_pipeline(runtime, tree, root_pipeline_data={"s": {1, 2}})
    assert res.result is False
    assert "s" in res.message
    await not_stored(runtime, tree["id"])


async def test_many_pipelines_share_nothing_through_the_context(runtime: Any) -> None:
    probes = [activity("flow_inspect", uid("p"), v=splice("${v}")) for _ in range(5)]
    trees = [
        build_tree(_chain(p), data=Data(inputs={"${v}": plain(Decimal(i))}))
        for i, p in enumerate(probes)
    ]
    async with anyio.create_task_group() as tg:
        for tree in trees:
            tg.start_soon(run, runtime, tree)
    assert [(await inputs(runtime, p.id))["v"] for p in probes] == [Decimal(i) for i in range(5)]


# -- more context semantics ----------------------------------------------------------------


async def test_circular_references_fail_the_node_with_a_clear_message(runtime: Any) -> None:
    probe = activity("flow_inspect", uid("probe"), v=splice("${a}"))
    data = Data(inputs={"${a}": splice("x${b}"), "${b}": splice("y${a}")})
    root_id = await start(runtime, build_tree(_chain(probe), data=data))
    await finish(runtime, root_id, states.FAILED)
    ex_data = (await outputs(runtime, probe.id))["ex_data"]
    assert "cycle" in ex_data
    assert "a" in ex_data
    assert "b" in ex_data


async def test_plain_values_are_never_rendered_and_splice_containers_are(runtime: Any) -> None:
    probe = activity(
        "flow_inspect",
        uid("probe"),
        plain_ref=splice("${p}"),
        container=splice("${c}"),
        literal=plain("${x}"),
    )
    data = Data(
        inputs={
            "${p}": plain("${x}"),
            "${x}": plain("X"),
            "${c}": splice(["${x}", 1, {"k": "${x}-y"}, ("${x}",)]),
        }
    )
    await run(runtime, build_tree(_chain(probe), data=data))
    got = await inputs(runtime, probe.id)
    assert got["plain_ref"] == "${x}"
    assert got["container"] == ["X", 1, {"k": "X-y"}, ("X",)]
    assert got["literal"] == "${x}"


async def test_lazy_variable_sees_root_data_and_may_be_async(runtime: Any) -> None:
    probe = activity("flow_inspect", uid("probe"), v=splice("${lazy}"))
    data = Data(inputs={"${lazy}": _lazy("${who}", "flow_from_root"), "${who}": plain("ctx")})
    await run(runtime, build_tree(_chain(probe), data=data), root_pipeline_data={"k": "root"})
    assert (await inputs(runtime, probe.id))["v"] == "ctx:root:1"


async def test_pre_render_key_that_cannot_hydrate_fails_the_start_event(runtime: Any) -> None:
    first = activity("flow_inspect", uid("first"))
    s = _chain(first)
    data = Data(inputs={"${bad}": _lazy("x", "broken")}, pre_render_keys=["${bad}"])
    root_id = await start(runtime, build_tree(s, data=data))
    message = await finish(runtime, root_id, states.FAILED)
    assert s.id in message
    assert await state_of(runtime, s.id) == states.FAILED
    assert await state_of(runtime, first.id) is None
    assert "lazy variable exploded" in (await outputs(runtime, s.id))["ex_data"]


async def test_a_pipeline_output_missing_from_the_context_outputs_its_own_name(
    runtime: Any,
) -> None:
    tree = build_tree(_chain(activity("echo")), data=Data(outputs=["${never_set}"]))
    root_id = await run(runtime, tree)
    assert await outputs(runtime, root_id) == {"${never_set}": "${never_set}"}


async def test_loop_counter_mapped_to_the_context_is_visible_to_the_node_itself(
    runtime: Any,
) -> None:
    """A node whose `_loop` is mapped sees its current count in its own inputs."""
    probe = activity("flow_inspect", uid("probe"), v=splice("${my_loop}"))
    counter = activity("counter", uid("counter"), count=splice("${count}"))
    eg = ExclusiveGateway(conditions={0: "${count} < 2", 1: "${count} >= 2"})
    s = EmptyStartEvent()
    s.extend(probe).extend(counter).extend(eg).connect(probe, EmptyEndEvent())
    data = Data(
        inputs={
            "${my_loop}": NodeOutput(source_act=probe.id, source_key="_loop"),
            "${count}": NodeOutput(source_act=counter.id, source_key="count"),
        }
    )
    await run(
        runtime,
        build_tree(s, data=data),
        cycle_tolerate=True,
        root_pipeline_context={"count": 0},
    )
    rows = (await api.get_node_histories(runtime, probe.id)).data
    assert rows is not None
    assert [row["inputs"]["v"] for row in rows] == [1]
    assert (await inputs(runtime, probe.id))["v"] == 2


async def test_subprocess_loop_mapped_to_the_context_is_visible_to_its_params(
    runtime: Any,
) -> None:
    """A SubProcess whose `_loop` is mapped can pass it in its params."""
    inner = activity("flow_inspect", uid("inner"), v=splice("${pv}"))
    sub = SubProcess(
        id=uid("sub"), start=_chain(inner), params=Params({"${pv}": splice("${sub_loop}")})
    )
    data = Data(inputs={"${sub_loop}": NodeOutput(source_act=sub.id, source_key="_loop")})
    await run(runtime, build_tree(_chain(sub), data=data))
    assert (await inputs(runtime, inner.id))["v"] == 1
