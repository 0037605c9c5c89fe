"""Service hooks: which are called, in what order, and where what they do is stored.

The expected orders below are read from bamboo-engine's service activity
handler and its engine loop:

- execute: ``node_enter``, ``pre_execute``, then ``post_execute`` when
  execute succeeded or ``node_execute_exception`` when it raised;
- schedule: ``pre_schedule``, then ``post_schedule`` or
  ``node_schedule_exception`` likewise;
- a failure that is not ignored then calls ``node_execute_fail`` or
  ``node_schedule_fail`` (which see ``_result`` False) before the node is FAILED;
- ``node_finish`` follows a node that finished (its error ignored or not), after
  an execute that needs no schedule as after a schedule that completed.

What a hook writes into ``data.outputs``: the fail hook's changes reach the
context; after an execute they are stored whatever the hook returned, after a
schedule only when it succeeded (returned None or something true).
``node_finish`` runs after the outputs went to the context: its changes are
stored when it succeeded and never reach the context.
"""

from __future__ import annotations

from typing import Any

import pytest

from aiobamboo import api, states
from aiobamboo.builder import (
    Data,
    EmptyEndEvent,
    EmptyStartEvent,
    NodeOutput,
    Var,
    build_tree,
)
from aiobamboo.component import Component, Service, StaticIntervalGenerator

from .helpers import (
    activity,
    deliver,
    finish,
    outputs,
    splice,
    start,
    uid,
    wait_for,
    wait_state,
    waiting_version,
)

#: node id -> [(hook, what it saw)], in call order.
CALLS: dict[str, list[tuple[str, dict[str, Any]]]] = {}

HOOKS = (
    "node_enter",
    "pre_execute",
    "post_execute",
    "pre_schedule",
    "post_schedule",
    "node_execute_fail",
    "node_schedule_fail",
    "node_execute_exception",
    "node_schedule_exception",
    "node_finish",
)


def _record(service: Service, name: str, data: Any) -> Any:
    CALLS.setdefault(service.id, []).append(
        (
            name,
            {
                "_result": data.outputs.get("_result"),
                "ex_data": "broke" in str(data.outputs.get("ex_data", "")),
            },
        )
    )
    data.outputs[f"seen_{name}"] = True
    # A hook named in ``falsy_hooks`` says it did not succeed.
    return name not in data.get_one_of_inputs("falsy_hooks", [])


def _outcome(data: Any, where: str) -> bool:
    if data.get_one_of_inputs("fail_at") != where:
        return True
    if data.get_one_of_inputs("how") == "raise":
        raise RuntimeError(f"{where} broke")
    return False


class HookRecorder(Service):
    """Records every hook; fails at ``fail_at`` (execute or schedule) by ``how``."""

    __need_run_hook__ = True

    async def execute(self, data: Any, parent_data: Any) -> bool:
        data.outputs.executed = True
        return _outcome(data, "execute")

    async def schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> bool:
        data.outputs.rounds = data.outputs.get("rounds", 0) + 1
        if data.outputs.rounds < data.get_one_of_inputs("rounds", 1):
            return True
        self.finish_schedule()
        return _outcome(data, "schedule")

    # Written out as the original declares them: node_finish and the execute
    # hooks take no callback data.
    def node_enter(self, data: Any, parent_data: Any) -> Any:
        return _record(self, "node_enter", data)

    def pre_execute(self, data: Any, parent_data: Any) -> Any:
        return _record(self, "pre_execute", data)

    def post_execute(self, data: Any, parent_data: Any) -> Any:
        return _record(self, "post_execute", data)

    async def pre_schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> Any:
        return _record(self, "pre_schedule", data)

    async def post_schedule(self, data: Any, parent_data: Any, callback_data: Any = None) -> Any:
        return _record(self, "post_schedule", data)

    def node_execute_fail(self, data: Any, parent_data: Any) -> Any:
        return _record(self, "node_execute_fail", data)

    def node_schedule_fail(self, data: Any, parent_data: Any, callback_data: Any = None) -> Any:
        return _record(self, "node_schedule_fail", data)

    def node_execute_exception(self, data: Any, parent_data: Any) -> Any:
        return _record(self, "node_execute_exception", data)

    async def node_schedule_exception(
        self, data: Any, parent_data: Any, callback_data: Any = None
    ) -> Any:
        return _record(self, "node_schedule_exception", data)

    def node_finish(self, data: Any, parent_data: Any) -> Any:
        return _record(self, "node_finish", data)


class PollHookRecorder(HookRecorder):
    __need_schedule__ = True
    interval = StaticIntervalGenerator(0)


class CallbackHookRecorder(HookRecorder):
    __need_schedule__ = True


class MultiCallbackHookRecorder(HookRecorder):
    __need_schedule__ = True
    __multi_callback_enabled__ = True


class HookRecorderComponent(Component):
    code = "hooks_execute"
    name = "Hooks (execute only)"
    bound_service = HookRecorder


class PollHookRecorderComponent(Component):
    code = "hooks_poll"
    name = "Hooks (polling)"
    bound_service = PollHookRecorder


class CallbackHookRecorderComponent(Component):
    code = "hooks_callback"
    name = "Hooks (callback)"
    bound_service = CallbackHookRecorder


class MultiCallbackHookRecorderComponent(Component):
    code = "hooks_multi_callback"
    name = "Hooks (several callbacks)"
    bound_service = MultiCallbackHookRecorder


#: kind -> (component code, schedule rounds, where a failure is made).
KINDS = {
    "execute": ("hooks_execute", 0, "execute"),
    "poll": ("hooks_poll", 1, "schedule"),
    "callback": ("hooks_callback", 1, "schedule"),
    "multi_callback": ("hooks_multi_callback", 2, "schedule"),
}

EXECUTE = ["node_enter", "pre_execute"]
EXECUTED = [*EXECUTE, "post_execute"]

#: (kind, outcome, error_ignorable) -> the hooks the original calls, in order.
EXPECTED = {
    ("execute", "success", False): [*EXECUTED, "node_finish"],
    ("execute", "false", False): [*EXECUTE, "node_execute_fail"],
    ("execute", "false", True): [*EXECUTE, "node_finish"],
    ("execute", "raise", False): [*EXECUTE, "node_execute_exception", "node_execute_fail"],
    ("execute", "raise", True): [*EXECUTE, "node_execute_exception", "node_finish"],
    ("poll", "success", False): [*EXECUTED, "pre_schedule", "post_schedule", "node_finish"],
    ("poll", "false", False): [*EXECUTED, "pre_schedule", "node_schedule_fail"],
    ("poll", "false", True): [*EXECUTED, "pre_schedule", "node_finish"],
    ("poll", "raise", False): [
        *EXECUTED,
        "pre_schedule",
        "node_schedule_exception",
        "node_schedule_fail",
    ],
    ("poll", "raise", True): [*EXECUTED, "pre_schedule", "node_schedule_exception", "node_finish"],
    ("callback", "success", False): [*EXECUTED, "pre_schedule", "post_schedule", "node_finish"],
    ("callback", "false", False): [*EXECUTED, "pre_schedule", "node_schedule_fail"],
    ("callback", "false", True): [*EXECUTED, "pre_schedule", "node_finish"],
    ("callback", "raise", False): [
        *EXECUTED,
        "pre_schedule",
        "node_schedule_exception",
        "node_schedule_fail",
    ],
    ("callback", "raise", True): [
        *EXECUTED,
        "pre_schedule",
        "node_schedule_exception",
        "node_finish",
    ],
    ("multi_callback", "success", False): [
        *EXECUTED,
        "pre_schedule",
        "post_schedule",
        "pre_schedule",
        "post_schedule",
        "node_finish",
    ],
    ("multi_callback", "false", False): [
        *EXECUTED,
        "pre_schedule",
        "post_schedule",
        "pre_schedule",
        "node_schedule_fail",
    ],
    ("multi_callback", "false", True): [
        *EXECUTED,
        "pre_schedule",
        "post_schedule",
        "pre_schedule",
        "node_finish",
    ],
    ("multi_callback", "raise", False): [
        *EXECUTED,
        "pre_schedule",
        "post_schedule",
        "pre_schedule",
        "node_schedule_exception",
        "node_schedule_fail",
    ],
    ("multi_callback", "raise", True): [
        *EXECUTED,
        "pre_schedule",
        "post_schedule",
        "pre_schedule",
        "node_schedule_exception",
        "node_finish",
    ],
}


def _tree(kind: str, outcome: str, ignorable: bool, falsy_hooks: list[str]) -> tuple[Any, Any]:
    code, rounds, where = KINDS[kind]
    act = activity(
        code,
        fail_at="" if outcome == "success" else where,
        how=outcome,
        rounds=rounds,
        falsy_hooks=falsy_hooks,
    )
    act.error_ignorable = ignorable
    # What the hooks wrote, as the context holds it after the node (a key the
    # node did not output stays undefined, and its fragment literal).
    after = activity("echo", text=splice("${fail_seen}|${finish_seen}|${executed}"))
    start_event, end = EmptyStartEvent(), EmptyEndEvent()
    start_event.extend(act).extend(after).extend(end)
    fail_hook = "node_execute_fail" if where == "execute" else "node_schedule_fail"
    data = Data(
        inputs={
            "${fail_seen}": NodeOutput(source_act=act.id, source_key=f"seen_{fail_hook}"),
            "${finish_seen}": NodeOutput(source_act=act.id, source_key="seen_node_finish"),
            "${executed}": NodeOutput(source_act=act.id, source_key="executed"),
        }
    )
    return build_tree(start_event, data=data), (act, after)


async def _drive(runtime: Any, kind: str, act_id: str) -> None:
    """Send the callbacks a callback kind waits for."""
    if kind in ("callback", "multi_callback"):
        for i in range(KINDS[kind][1]):
            version = await waiting_version(runtime, act_id)
            res = await deliver(runtime, act_id, version, {"i": i})
            assert res.result, res.message
            if i + 1 < KINDS[kind][1]:

                async def took_it(taken: int = i + 1) -> bool:
                    return (await outputs(runtime, act_id)).get("rounds") == taken

                await wait_for(took_it, what=f"callback {i} taken")


async def _run_case(
    runtime: Any, kind: str, outcome: str, ignorable: bool, falsy_hooks: list[str] | None = None
) -> tuple[str, Any, Any]:
    tree, (act, after) = _tree(kind, outcome, ignorable, falsy_hooks or [])
    root_id = await start(runtime, tree)
    await _drive(runtime, kind, act.id)
    if outcome != "success" and not ignorable:
        await wait_state(runtime, act.id, states.FAILED)
        # Skipping shows what reached the context when the node failed.
        res = await api.skip_node(runtime, act.id)
        assert res.result, res.message
    await finish(runtime, root_id)
    return root_id, act, after


CASES = sorted(EXPECTED)


@pytest.mark.parametrize(("kind", "outcome", "ignorable"), CASES)
async def test_hooks_are_called_in_the_original_order(
    runtime: Any, kind: str, outcome: str, ignorable: bool
) -> None:
    _, act, after = await _run_case(runtime, kind, outcome, ignorable)
    calls = CALLS.pop(act.id)
    assert [name for name, _ in calls] == EXPECTED[(kind, outcome, ignorable)]
    seen = dict(calls)
    stored = await outputs(runtime, act.id)
    downstream = (await outputs(runtime, after.id))["echo"]
    fail_hook = "node_execute_fail" if KINDS[kind][2] == "execute" else "node_schedule_fail"
    if outcome == "raise":
        exception_hook = f"node_{KINDS[kind][2]}_exception"
        # The exception hook sees the traceback in ex_data.
        assert seen[exception_hook]["ex_data"] is True
        assert stored[f"seen_{exception_hook}"] is True
    if outcome != "success" and not ignorable:
        # The fail hook sees the outcome; its writes are stored and reach the context.
        assert seen[fail_hook]["_result"] is False
        assert stored[f"seen_{fail_hook}"] is True
        assert stored["_result"] is False
        assert downstream == "True|${finish_seen}|True"
        assert "node_finish" not in seen
    else:
        # node_finish sees the stored outcome; its writes are stored, not extracted.
        assert seen["node_finish"]["_result"] is (outcome == "success")
        assert stored["seen_node_finish"] is True
        assert stored["_result"] is (outcome == "success")
        assert downstream == "${fail_seen}|${finish_seen}|True"


@pytest.mark.parametrize("kind", ["execute", "poll", "callback", "multi_callback"])
async def test_a_fail_hook_that_does_not_succeed(runtime: Any, kind: str) -> None:
    """The execute fail hook's data is stored anyway; the schedule one's only on success.

    Both reach the context, as in the original.
    """
    fail_hook = "node_execute_fail" if KINDS[kind][2] == "execute" else "node_schedule_fail"
    _, act, after = await _run_case(runtime, kind, "false", False, falsy_hooks=[fail_hook])
    calls = CALLS.pop(act.id)
    assert [name for name, _ in calls] == EXPECTED[(kind, "false", False)]
    stored = await outputs(runtime, act.id)
    assert (f"seen_{fail_hook}" in stored) is (kind == "execute")
    assert (await outputs(runtime, after.id))["echo"] == "True|${finish_seen}|True"


@pytest.mark.parametrize("kind", ["execute", "poll", "callback", "multi_callback"])
async def test_node_finish_that_does_not_succeed_is_not_stored(runtime: Any, kind: str) -> None:
    _, act, _after = await _run_case(runtime, kind, "success", False, falsy_hooks=["node_finish"])
    calls = CALLS.pop(act.id)
    assert [name for name, _ in calls] == EXPECTED[(kind, "success", False)]
    stored = await outputs(runtime, act.id)
    assert "seen_node_finish" not in stored
    assert stored["seen_post_execute"] is True


async def test_node_finish_follows_the_last_iteration_of_a_loop_only(runtime: Any) -> None:
    """An execute that loops back to its own node does not finish it, as in the original."""
    act = activity("hooks_execute", rounds=0)
    act.loop_config = {"enable": True, "loop_times": 3, "outputs_key": "${collected}"}
    start_event, end = EmptyStartEvent(), EmptyEndEvent()
    start_event.extend(act).extend(end)
    tree = build_tree(
        start_event, data=Data(inputs={"${collected}": Var(type=Var.PLAIN, value=[])})
    )
    root_id = await start(runtime, tree)
    await finish(runtime, root_id)
    names = [name for name, _ in CALLS.pop(act.id)]
    assert names == [*EXECUTED, *EXECUTED, *EXECUTED, "node_finish"]


async def test_hooks_are_not_called_without_need_run_hook(runtime: Any) -> None:
    class Quiet(HookRecorder):
        __need_run_hook__ = False

    class QuietComponent(Component):
        code = f"hooks_quiet_{uid()}"
        name = "No hooks"
        bound_service = Quiet
        auto_register = False

    from aiobamboo.component import ComponentLibrary

    ComponentLibrary.default.register(QuietComponent)
    try:
        act = activity(QuietComponent.code)
        start_event, end = EmptyStartEvent(), EmptyEndEvent()
        start_event.extend(act).extend(end)
        root_id = await start(runtime, build_tree(start_event))
        await finish(runtime, root_id)
        assert act.id not in CALLS
        assert not [k for k in await outputs(runtime, act.id) if k.startswith("seen_")]
    finally:
        ComponentLibrary.default.unregister(QuietComponent)
