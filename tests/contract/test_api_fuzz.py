"""Every public API function, called with arbitrary arguments, answers with a result.

Hypothesis draws the function, its arguments (ids of a real pipeline mixed with
unknown ids, None, huge ints, NaN, empty, huge, NUL and surrogate strings, deep
and self-referencing values, lists and dicts) and callback payloads for a node
that really waits. Every call returns an :class:`EngineAPIResult`, a refusal
carrying an ``AiobambooError`` and never an internal error, or raises TypeError
for arguments that do not fit its signature. Afterwards the runtime still runs a
pipeline to FINISHED.

The examples run in a worker thread (Hypothesis drives a plain function); each
call is sent to the test's event loop, where the runtime lives.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from aiobamboo import api, states
from aiobamboo.api import EngineAPIResult
from aiobamboo.builder import (
    ConditionalParallelGateway,
    ConvergeGateway,
    EmptyEndEvent,
    EmptyStartEvent,
    ExclusiveGateway,
    ParallelGateway,
    ServiceActivity,
    Var,
    build_tree,
)
from aiobamboo.exceptions import AiobambooError

from .helpers import finish, start, uid, wait_for

#: Every coroutine of the API; subscribe (a context manager) is exercised apart.
FUNCTIONS = sorted(n for n in api.__all__ if inspect.iscoroutinefunction(getattr(api, n)))
KEYWORDS = sorted(
    (
        {p for n in FUNCTIONS for p in inspect.signature(getattr(api, n)).parameters}
        | {"cycle_tolerate", "start_node_id", "queue", "priority", "no_such_option"}
    )
    - {"runtime", "options"}
)


def _activity(code: str, **inputs: Any) -> ServiceActivity:
    act = ServiceActivity(component_code=code, id=uid("a"))
    for key, value in inputs.items():
        act.component.inputs[key] = Var(Var.PLAIN, value)
    return act


class Target:
    """A real pipeline with something for every operation to act on."""

    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.ids: list[str] = []
        self.waiting = ""
        self.version = ""
        self.root_id = ""

    def _tree(self) -> dict[str, Any]:
        start_event, end = EmptyStartEvent(), EmptyEndEvent()
        pg, join = ParallelGateway(), ConvergeGateway()
        # Waits for callbacks for ever: every accepted payload is handled, none finishes it.
        self.waiting_node = _activity("multi_callback", count=10**9)
        failing = _activity("fail")
        cpg = ConditionalParallelGateway(conditions={0: "1 == 2", 1: "1 == 3"})
        cpg_join = ConvergeGateway()
        eg = ExclusiveGateway(conditions={0: "1 == 2", 1: "1 == 3"})
        eg_join = ConvergeGateway()
        start_event.extend(pg).connect(self.waiting_node, failing, cpg, eg)
        cpg.connect(_activity("echo"), _activity("echo")).to(cpg).converge(cpg_join)
        eg.connect(_activity("echo"), _activity("echo")).to(eg).converge(eg_join)
        self.waiting_node.extend(join)
        failing.extend(join)
        cpg_join.extend(join)
        eg_join.extend(join)
        join.extend(end)
        return build_tree(start_event)

    async def ensure_running(self) -> None:
        """Start a new target pipeline when the last one ended (revoked by the fuzzer...)."""
        if self.root_id:
            res = await api.get_pipeline_states(self.runtime, self.root_id)
            root = (res.data or {}).get(self.root_id) or {}
            if root.get("state") == states.RUNNING:
                return
        tree = self._tree()
        self.root_id = await start(self.runtime, tree)

        async def waiting_version() -> str | None:
            out = await api.get_execution_data_outputs(self.runtime, self.waiting_node.id)
            if "received" not in (out.data or {}):
                return None
            res = await api.get_children_states(self.runtime, self.waiting_node.id)
            return str(res.data[self.waiting_node.id]["version"])

        self.version = str(await wait_for(waiting_version, what="the waiting node"))
        self.waiting = self.waiting_node.id
        nodes = [*tree["activities"], *tree["gateways"]]
        self.ids = [self.root_id, *nodes, *tree["flows"], self.version]


def _small_tree() -> dict[str, Any]:
    start_event = EmptyStartEvent()
    start_event.extend(_activity("echo", text="fuzz")).extend(EmptyEndEvent())
    return build_tree(start_event)


def _self_referencing_list() -> list[Any]:
    value: list[Any] = [1]
    value.append(value)
    return value


def _self_referencing_dict() -> dict[str, Any]:
    value: dict[str, Any] = {"a": 1}
    value["self"] = value
    return value


def _deep(depth: int) -> Any:
    value: Any = "bottom"
    for i in range(depth):
        value = [value] if i % 2 else {"k": value}
    return value


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([0, -1, 2**31, 2**63, -(2**63) - 1, 10**30]),
    # Beyond what Python converts to text (built lazily: Hypothesis reprs its strategies).
    st.sampled_from([5000, -5000]).map(lambda e: (1 if e > 0 else -1) * 10 ** abs(e)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e300]),
    st.text(st.characters(exclude_categories=()), max_size=12),
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x\udfff", "x" * 100_000, " ", "${x}"]),
    st.binary(max_size=4),
)
HOSTILE = st.one_of(
    st.builds(_self_referencing_list),
    st.builds(_self_referencing_dict),
    st.builds(_deep, st.integers(50, 3000)),
    st.builds(object),
    st.builds(set, st.lists(st.integers(), max_size=3)),
)
VALUES = st.recursive(
    st.one_of(SCALARS, HOSTILE),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(st.one_of(st.text(max_size=6), st.integers()), children, max_size=3),
        st.builds(tuple, st.lists(children, max_size=2)),
    ),
    max_leaves=6,
)


@settings(
    max_examples=200,
    deadline=None,
    # Slow or large examples are the point here, not a problem of the strategies.
    suppress_health_check=list(HealthCheck),
)
@given(data=st.data())
def _fuzz(target: Target, data: st.DataObject) -> None:
    anyio.from_thread.run(target.ensure_running)
    known = st.sampled_from(target.ids)
    other = st.one_of(
        VALUES,
        st.builds(_small_tree),
        st.lists(known, max_size=3),
        st.sampled_from([{}, [], {"_escape_render_keys": 5}, {"_escape_render_keys": ["a"]}]),
    )
    # Mostly ids of the real pipeline, so that calls get past the argument checks.
    arg = st.integers(0, 9).flatmap(lambda i: known if i < 6 else other)
    runtimes = st.sampled_from([target.runtime] * 15 + [None, "runtime", 0, [], object()])

    if data.draw(st.integers(0, 9)) == 0:
        # Callback payloads for the node that really waits for them.
        name, rt = "callback", target.runtime
        args = [target.waiting, target.version, data.draw(VALUES, label="payload")]
        kwargs: dict[str, Any] = {}
    else:
        name = data.draw(st.sampled_from([*FUNCTIONS, "subscribe"]), label="function")
        rt = data.draw(runtimes, label="runtime")
        args, kwargs = [], {}
        # Mostly one value per parameter; sometimes one too few or too many.
        for param in list(inspect.signature(getattr(api, name)).parameters.values())[1:]:
            if param.kind is param.VAR_KEYWORD:
                kwargs = data.draw(st.dictionaries(st.sampled_from(KEYWORDS), arg, max_size=2))
            elif param.default is param.empty or data.draw(st.booleans()):
                args.append(data.draw(arg, label=param.name))
        shape = data.draw(st.integers(0, 9), label="shape")
        if shape == 0 and args:
            args.pop()
        elif shape == 1:
            args.append(data.draw(arg, label="extra"))
    event(f"{name}: {anyio.from_thread.run(_call, name, rt, args, kwargs)}")


async def _call(name: str, rt: Any, args: list[Any], kwargs: dict[str, Any]) -> str:
    """Call ``name``, check its answer; how it answered."""
    fn = getattr(api, name)
    try:
        inspect.signature(fn).bind(rt, *args, **kwargs)
        fits = True
    except TypeError:
        fits = False
    if name == "subscribe":
        try:
            manager = fn(rt, *args, **kwargs)
        except AiobambooError:
            return "refused"
        except TypeError:
            assert not fits
            return "signature mismatch"
        assert fits
        async with manager:
            return "subscribed"
    res = None
    try:
        # wait_pipeline may rightly wait for a pipeline that waits for a callback.
        with anyio.move_on_after(0.5) if name == "wait_pipeline" else anyio.fail_after(10):
            res = await fn(rt, *args, **kwargs)
    except TypeError:
        assert not fits, f"{name} raised TypeError for arguments that fit its signature"
        return "signature mismatch"
    if res is None and name == "wait_pipeline":
        return "still waiting"  # as it should, for a pipeline waiting for a callback
    assert fits, f"{name} accepted arguments that do not fit its signature"
    assert isinstance(res, EngineAPIResult), res
    assert "internal error" not in res.message, res.message
    if not res.result:
        assert isinstance(res.exc, AiobambooError), (res.message, res.exc)
        assert res.message
        return "refused"
    return "done"


async def test_api_functions_answer_arbitrary_arguments(runtime: Any) -> None:
    target = Target(runtime)
    await anyio.to_thread.run_sync(_fuzz, target)

    # The scheduler survived: a plain pipeline still runs to the end.
    start_event, end = EmptyStartEvent(), EmptyEndEvent()
    echo = _activity("echo", text="still alive")
    start_event.extend(echo).extend(end)
    root_id = await start(runtime, build_tree(start_event))
    await finish(runtime, root_id)
    res = await api.get_execution_data_outputs(runtime, echo.id)
    assert res.result, res.message
