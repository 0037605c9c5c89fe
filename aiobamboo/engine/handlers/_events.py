"""Start and end events."""

from __future__ import annotations

import time

from ... import states
from .._context import hydrate
from .._env import DIE, Outcome, Step, format_exc, go
from .._spec import PLAIN, ContextVar, bare_name

_EMPTY_END = "EmptyEndEvent"


async def execute_start(step: Step) -> Outcome:
    spec = step.node.inputs.get("pre_render_keys")
    if spec:
        keys: list[str] = list(spec.value)
        pipeline_id = step.top_pipeline_id
        try:
            values = await hydrate(step.env, step.run, pipeline_id, [bare_name(k) for k in keys])
            for key in keys:
                if bare_name(key) in values:
                    step.run.put_context(
                        pipeline_id, key, ContextVar(PLAIN, values[bare_name(key)])
                    )
        except Exception as exc:
            return step.fail(
                {"ex_data": f"context hydrate failed({exc}), check node log for details."}
            )
    step.finish()
    return go(step.node.first_target)


async def execute_end(step: Step) -> Outcome:
    node, run, proc = step.node, step.run, step.proc
    popped = proc.stack[-1]
    if node.code != _EMPTY_END:
        handler = step.env.components.get_end_event_handler(node.code)
        if handler is None:
            return step.fail({"ex_data": f"end event handler {node.code!r} is not registered"})
        try:
            await step.env.call(handler().execute, len(proc.stack) > 1, run.root_id, popped)
        except Exception as exc:
            return step.fail({"ex_data": format_exc(exc)})
    pipeline = run.spec.pipelines[popped]
    try:
        values = await hydrate(step.env, run, popped, [bare_name(k) for k in pipeline.outputs])
    except Exception as exc:
        return step.fail({"ex_data": f"pipeline outputs hydrate failed({exc})"})
    outputs = {key: values.get(bare_name(key), key) for key in pipeline.outputs}
    is_root = popped == run.root_id
    pstate = run.states[popped]
    if not is_root:
        outputs["_loop"] = pstate.loop
        outputs["_inner_loop"] = pstate.inner_loop
    run.put_exec_data(popped, run.exec_inputs(popped), outputs)
    step.finish()
    pstate.state = states.FINISHED
    pstate.archived_time = time.time()
    run.put_state(pstate)
    run.emit_state(pstate)
    if is_root:
        run.mark_finished()
        return DIE
    sub_node = run.spec.nodes[popped]
    parent_pipeline = proc.stack[-2]
    for source_key, ctx_key in sub_node.outputs.items():
        if source_key in outputs:
            run.put_context(parent_pipeline, ctx_key, ContextVar(PLAIN, outputs[source_key]))
    proc.stack.pop()
    return go(sub_node.first_target)
