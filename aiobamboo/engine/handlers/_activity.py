"""ServiceActivity: execute, then poll or wait for callbacks."""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Awaitable, Mapping
from typing import Any

import anyio

from ... import codec
from ...component import DataObject, Service
from ...exceptions import ValueCodecError
from .._context import hydrate, new_budget, references_of, render_values, render_within
from .._env import STALE, Outcome, Step, format_exc, go, logger
from .._observer import CallOutcome, Phase
from .._run import CALLBACK, MULTIPLE_CALLBACK, P_RUNNING, P_SLEEPING, POLL, Schedule, new_id
from .._spec import PLAIN, ContextVar, InputSpec


def _raw_inputs(step: Step) -> dict[str, InputSpec]:
    override = step.run.node_inputs.get(step.node.id)
    if override is None:
        return step.node.inputs
    return {k: InputSpec(bool(v["need_render"]), v["value"]) for k, v in override.items()}


def _counters(step: Step) -> dict[str, Any]:
    return {"_loop": step.state.loop, "_inner_loop": step.state.inner_loop}


def inject_counters(step: Step, keys: tuple[str, ...] = ("_loop", "_inner_loop")) -> None:
    """A node whose ``_loop`` is mapped into the context can read its own count."""
    counters = _counters(step)
    for source_key in keys:
        ctx_key = step.node.outputs.get(source_key)
        if ctx_key is not None:
            step.run.put_context(
                step.top_pipeline_id, ctx_key, ContextVar(PLAIN, counters[source_key])
            )


async def _render_inputs(step: Step, raw: dict[str, InputSpec]) -> dict[str, Any]:
    inject_counters(step)
    render = {k: v.value for k, v in raw.items() if v.need_render}
    inputs: dict[str, Any] = {}
    if render:
        # One budget for the variables resolved and all the inputs: limits
        # bound the node's whole render, not each value on its own.
        budget = new_budget()
        namespace = await hydrate(
            step.env,
            step.run,
            step.top_pipeline_id,
            references_of(render.values()),
            inner_loop=step.state.inner_loop,
            budget=budget,
        )
        namespace.update(_counters(step))
        inputs = await render_within(
            budget, render_values, render, namespace, sandbox=step.env.sandbox
        )
    inputs.update({k: v.value for k, v in raw.items() if not v.need_render})
    inputs.update(_counters(step))
    return inputs


def _make_service(step: Step, cls: type[Service]) -> Service:
    service = cls(step.node.name)
    service.id = step.node.id
    service.version = step.state.version
    service.root_pipeline_id = step.run.root_id
    service.top_pipeline_id = step.top_pipeline_id
    service.loop = step.state.loop
    service.inner_loop = step.state.inner_loop
    return service


async def _hook(
    step: Step,
    service: Service,
    name: str,
    data: DataObject,
    parent: DataObject,
    callback_data: Any = None,
    *,
    persist: bool = True,
) -> bool:
    """Run a hook of a service that asked for hooks; whether it succeeded.

    A hook succeeds when it returns None or something true, as in the
    original. What a successful hook did to ``data`` is stored at once, as the
    original stores it, while this attempt still owns the node.
    """
    if not service.need_run_hook():
        return False
    method = getattr(service, name, None)
    if method is None:
        return False
    args: tuple[Any, ...] = (data, parent)
    if callback_data is not None and _takes_callback_data(method):
        args = (data, parent, callback_data)
    try:
        ok = succeeded(await step.env.call(method, *args))
    except Exception:
        logger.exception("hook %s of node %s raised", name, step.node.id)
        return False
    if ok and persist and step.owns_state():
        try:
            step.run.put_exec_data(step.node.id, dict(data.inputs), dict(data.outputs))
        except ValueCodecError as exc:
            logger.warning("hook %s of node %s: data not stored: %s", name, step.node.id, exc)
    return ok


def _takes_callback_data(method: Any) -> bool:
    """Whether a hook can be given the callback's data as its third argument."""
    try:
        inspect.signature(method).bind(None, None, None)
    except (TypeError, ValueError):
        return False
    return True


def _extract_outputs(step: Step, outputs: dict[str, Any]) -> None:
    """Write mapped outputs into the pipeline context; loops append."""
    node, run = step.node, step.run
    pipeline_id = step.top_pipeline_id
    if node.loop is not None:
        key = node.loop.outputs_key
        ctx = run.contexts.get(pipeline_id, {})
        current = ctx.get(key)
        items = (
            list(current.value) if current is not None and isinstance(current.value, list) else []
        )
        raw = outputs.get("outputs") or {}
        if not isinstance(raw, Mapping):
            raise TypeError(
                f'outputs["outputs"] of loop node {node.id} must be a dict, '
                f"got {type(raw).__name__}: {raw!r:.200}"
            )
        payload = dict(raw)
        payload.update(result=outputs.get("_result"), inner_loop=outputs.get("_inner_loop"))
        items.append(payload)
        run.put_context(pipeline_id, key, ContextVar(PLAIN, items))
        return
    for source_key, ctx_key in node.outputs.items():
        if source_key in outputs:
            run.put_context(pipeline_id, ctx_key, ContextVar(PLAIN, outputs[source_key]))


def _next_node(step: Step) -> str:
    loop = step.node.loop
    if loop is not None and loop.loop_times is not None and step.state.inner_loop < loop.loop_times:
        return step.node.id
    return step.node.first_target


def _save(step: Step, inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, Any]:
    """Store execution data; a value the codec refuses fails the node with its key named."""
    try:
        step.run.put_exec_data(step.node.id, inputs, outputs)
    except ValueCodecError as exc:
        safe_inputs = _encodable(inputs)
        outputs = {**_encodable(outputs), "_result": False, "ex_data": str(exc)}
        step.run.put_exec_data(step.node.id, safe_inputs, outputs)
    return outputs


def _record(step: Step, data: DataObject, success: bool, ex_data: str | None) -> bool:
    """Add ``_result``, the counters and ``ex_data`` to the outputs and store them.

    Returns the outcome: False also when an output could not be stored.
    """
    if ex_data is not None:
        data.outputs["ex_data"] = ex_data
    data.outputs.update(_result=success, **_counters(step))
    saved = _save(step, dict(data.inputs), dict(data.outputs))
    if saved.get("_result") is False and success:
        data.outputs.clear()
        data.outputs.update(saved)
        return False
    return success


def _encodable(values: dict[str, Any]) -> dict[str, Any]:
    kept = {}
    for key, value in values.items():
        try:
            # Checked as stored, one level down in the dict: depth counts from there.
            codec.check({key: value})
        except ValueCodecError:
            continue
        kept[key] = value
    return kept


async def _conclude(
    step: Step,
    service: Service,
    data: DataObject,
    parent: DataObject,
    success: bool,
    *,
    scheduled: bool,
    callback_data: Any = None,
) -> Outcome:
    """Finish, finish with the error ignored, or fail; with the original's hooks.

    ``node_finish`` follows a finished schedule, and an execute that leaves the
    node (not one that loops back to it). The fail hook sees ``_result``; what
    it changes is in the outputs extracted to the context, and in the stored
    outputs after an execute (after a schedule, only when the hook succeeded).
    """
    outputs = dict(data.outputs)
    node = step.node
    ignorable = node.error_ignorable or (node.loop is not None and node.loop.fail_skip)
    fail_hook = "node_schedule_fail" if scheduled else "node_execute_fail"
    if success or ignorable:
        # Outputs go to the context before the node is FINISHED: one that
        # cannot be extracted fails the node, which then never runs again.
        try:
            _extract_outputs(step, outputs)
        except Exception as exc:
            logger.warning("node %s: outputs not extracted: %s", node.id, exc)
            data.outputs.update(_result=False, ex_data=format_exc(exc))
            _save(step, dict(data.inputs), dict(data.outputs))
            await _hook(step, service, fail_hook, data, parent, callback_data)
            return step.fail()
        step.finish(error_ignored=not success)
        if success or not node.error_ignorable:
            next_id = _next_node(step)
        else:
            next_id = node.first_target
        if (scheduled or next_id != node.id) and service.need_run_hook():
            await _hook(step, service, "node_finish", data, parent, callback_data)
        return go(next_id)
    await _hook(step, service, fail_hook, data, parent, callback_data, persist=scheduled)
    if not scheduled:
        _save(step, dict(data.inputs), dict(data.outputs))
    try:
        _extract_outputs(step, dict(data.outputs))
    except Exception as exc:
        logger.warning("node %s: outputs not extracted: %s", node.id, exc)
    return step.fail()


def _plain_inputs(raw: dict[str, InputSpec]) -> dict[str, Any]:
    return {k: v.value for k, v in raw.items() if not v.need_render}


def _unrendered_inputs(step: Step, raw: dict[str, InputSpec]) -> dict[str, Any]:
    """What _render_inputs returns for inputs none of which is rendered, without awaiting."""
    inject_counters(step)
    inputs = {k: v.value for k, v in raw.items()}
    inputs.update(_counters(step))
    return inputs


async def execute_activity(step: Step) -> Outcome:
    node, run, state = step.node, step.run, step.state
    raw = _raw_inputs(step)
    cls = step.env.components.get_service(node.code, node.version)
    if cls is None:
        return step.fail(
            {
                "ex_data": f"component {node.code!r} (version {node.version or 'legacy'}) "
                "is not registered",
                "_result": False,
                **_counters(step),
            },
            inputs=_encodable(_plain_inputs(raw)),
        )
    try:
        for spec in raw.values():
            if spec.need_render:
                inputs = await _render_inputs(step, raw)
                break
        else:
            inputs = _unrendered_inputs(step, raw)
    except Exception as exc:
        return step.fail(
            {
                "ex_data": f"inputs hydrate failed({exc}), check node log for details",
                "_result": False,
                **_counters(step),
            },
            inputs=_encodable(_plain_inputs(raw)),
        )
    data = DataObject(inputs, {})
    parent = DataObject(run.root_data, {})
    service = _make_service(step, cls)
    # The node's RUNNING state is durable before user code runs.
    await run.checkpoint("node-running")
    if not step.is_current():
        return STALE
    # Each hook is awaited only when the service asks for hooks (asked at every
    # hook, as _hook itself asks): most services do not, and a coroutine per
    # hook would cost them on every node.
    if service.need_run_hook():
        await _hook(step, service, "node_enter", data, parent)
    if service.need_run_hook():
        await _hook(step, service, "pre_execute", data, parent)
    success, ex_data = await _call(step, "execute", service.execute, data, parent)
    if success:
        if service.need_run_hook():
            await _hook(step, service, "post_execute", data, parent)
    elif ex_data is not None:
        # The exception hook sees the traceback, as in the original.
        data.outputs["ex_data"] = ex_data
        if service.need_run_hook():
            await _hook(step, service, "node_execute_exception", data, parent)
    if not step.is_current():
        return STALE
    success = _record(step, data, success, ex_data)
    if success and service.need_schedule():
        if service.interval is not None:
            kind = POLL
        elif service.multi_callback_enabled():
            kind = MULTIPLE_CALLBACK
        else:
            kind = CALLBACK
        sched = Schedule(
            id=new_id("s"),
            node_id=node.id,
            version=state.version,
            type=kind,
            process_id=step.proc.id,
        )
        run.put_schedule(sched)
        # The wait may be long and every waiting activity holds its frame: what
        # only execute needed goes now rather than when the schedule ends.
        del inputs, data, parent, service
        return await _schedule_loop(step, sched, cls)
    return await _conclude(step, service, data, parent, success, scheduled=False)


def _call(step: Step, phase: Phase, fn: Any, *args: Any) -> Awaitable[tuple[bool, str | None]]:
    """Call a component method; an operator may abandon it (forced fail, revoke).

    An abandoned call is cancelled (a plain ``def`` one is left to finish on
    its thread); its result is never looked at, since the attempt is stale.
    """
    if step.env.observer is None:
        return _call_abandonable(step, fn, *args)
    return _observed_call(step, phase, fn, *args)


async def _observed_call(step: Step, phase: Phase, fn: Any, *args: Any) -> tuple[bool, str | None]:
    observer = step.env.observer
    assert observer is not None
    started = time.perf_counter()
    success, ex_data = await _call_abandonable(step, fn, *args)
    if success:
        outcome: CallOutcome = "success"
    elif ex_data is None:
        outcome = "failure"
    elif ex_data == _ABANDONED:
        outcome = "abandoned"
    else:
        outcome = "raised"
    observer.component_called(step, phase, time.perf_counter() - started, outcome)
    return success, ex_data


_ABANDONED = "abandoned by an operator"


async def _call_abandonable(step: Step, fn: Any, *args: Any) -> tuple[bool, str | None]:
    key = (step.node.id, step.state.version)
    with anyio.CancelScope() as scope:
        step.run.in_flight[key] = scope
        try:
            result = await step.env.call(fn, *args)
            success = succeeded(result)
        except Exception as exc:
            return False, format_exc(exc)
        finally:
            step.run.in_flight.pop(key, None)
    if scope.cancelled_caught:
        return False, _ABANDONED
    return success, None


def succeeded(result: Any) -> bool:
    """None is success, anything else counts by its truth value, as in the original."""
    return True if result is None else bool(result)


async def resume_schedule(step: Step, sched: Schedule) -> Outcome:
    """Continue waiting on a schedule after a restart."""
    cls = step.env.components.get_service(step.node.code, step.node.version)
    if cls is None:
        return step.fail(
            {
                **step.run.exec_outputs(step.node.id),
                "ex_data": f"component {step.node.code!r} is not registered",
                "_result": False,
            }
        )
    return await _schedule_loop(step, sched, cls)


def _poll_delay(service: Service, times: int) -> float:
    if times == 0 or service.interval is None:
        return 0.0
    generator = copy.copy(service.interval)
    generator.count = times - 1
    return float(generator.next())


async def _next_trigger(step: Step, sched: Schedule) -> tuple[bool, Any]:
    """Wait for the next poll time or callback; (False, _) when the attempt went stale.

    Both waits let the run park: a parked run is loaded again by the callback,
    an operation, or its timer (``sched.due``) coming due.
    """
    run, key = step.run, (sched.node_id, sched.version)
    if sched.type == POLL:
        due = sched.due if sched.due is not None else step.env.clock.now()
        if not run.callbacks.get(key) and due > step.env.clock.now():
            waiter = run.waiter(*key)
            with run.resting(step.proc.id, waiter.event, due):
                await step.env.clock.wait(waiter.event, due)
            if waiter.stale:
                return False, None
            if waiter.event.is_set():
                run.waiters.pop(key, None)
        observer = step.env.observer
        if observer is not None and sched.times and not run.callbacks.get(key):
            observer.timer_fired(run, sched.node_id, step.env.clock.now() - due)
        sched.due = None
        if not step.is_current():
            return False, None
        # A callback to a polling activity is one more poll, with its data, as in
        # the original; it comes early rather than waiting out the interval.
        row = run.take_callback(key)
        return True, None if row is None else codec.loads(row.data_json)
    while True:
        # Checked before taking one: a callback taken is answered as delivered.
        if not step.is_current():
            return False, None
        row = run.take_callback(key)
        if row is not None:
            return True, codec.loads(row.data_json)
        waiter = run.waiter(*key)
        with run.resting(step.proc.id, waiter.event):
            await waiter.event.wait()
        if waiter.stale:
            return False, None
        run.waiters.pop(key, None)


def _refuse_queued(step: Step, sched: Schedule, what: str) -> None:
    """Refuse the callbacks queued behind the one that ended the schedule."""
    step.run.refuse_callbacks(
        (sched.node_id, sched.version),
        f"node {sched.node_id} version {sched.version} {what} before this callback was taken",
    )


async def _schedule_loop(step: Step, sched: Schedule, cls: type[Service]) -> Outcome:
    run, proc, node = step.run, step.proc, step.node
    # Only a polling schedule asks the service for its interval.
    probe = _make_service(step, cls) if sched.type == POLL else None
    while True:
        proc.status = P_SLEEPING
        run.put_process(proc)
        if probe is not None and sched.due is None:
            # Stored with the wait, so the poll fires on time after a restart, or
            # from storage while the run is parked.
            sched.due = step.env.clock.now() + _poll_delay(probe, sched.times)
            run.put_schedule(sched)
        await run.checkpoint("schedule-wait")
        current, callback_data = await _next_trigger(step, sched)
        if not current:
            if not sched.expired and not sched.finished:
                sched.expired = True
                run.put_schedule(sched)
            _refuse_queued(step, sched, "was failed or revoked")
            return STALE
        sched.times += 1
        service = _make_service(step, cls)
        data = DataObject(run.exec_inputs(node.id), run.exec_outputs(node.id))
        # Made for each call, as the original does (its outputs start empty),
        # and not held by an activity that waits.
        parent = DataObject(run.root_data, {})
        await _hook(step, service, "pre_schedule", data, parent, callback_data)
        success, ex_data = await _call(
            step, "schedule", service.schedule, data, parent, callback_data
        )
        if success:
            await _hook(step, service, "post_schedule", data, parent, callback_data)
        elif ex_data is not None:
            data.outputs["ex_data"] = ex_data
            await _hook(step, service, "node_schedule_exception", data, parent, callback_data)
        if not step.is_current():
            _refuse_queued(step, sched, "was failed or revoked")
            return STALE
        success = _record(step, data, success, ex_data)
        run.put_schedule(sched)
        done = success and (sched.type == CALLBACK or service.is_schedule_done())
        ignorable = node.error_ignorable or (node.loop is not None and node.loop.fail_skip)
        if done or (not success and ignorable):
            sched.finished = True
            run.put_schedule(sched)
        if done or not success:
            proc.status = P_RUNNING
            run.put_process(proc)
            _refuse_queued(
                step,
                sched,
                "finished its schedule" if done else "failed",
            )
            return await _conclude(
                step, service, data, parent, success, scheduled=True, callback_data=callback_data
            )
