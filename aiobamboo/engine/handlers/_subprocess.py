"""SubProcess: render params into the child context and descend."""

from __future__ import annotations

from .._context import hydrate, new_budget, references_of, render_values, render_within
from .._env import Outcome, Step, go
from .._spec import PLAIN, ContextVar, InputSpec
from ._activity import inject_counters


async def execute_subprocess(step: Step) -> Outcome:
    node, run, proc = step.node, step.run, step.proc
    sub = node.subprocess
    assert sub is not None
    # Direct children count inner loops afresh for each entry of the sub-process.
    for st in run.states.values():
        if st.parent_id == node.id and st.root_id == run.root_id:
            st.inner_loop = 0
            run.put_state(st)
    override = run.node_inputs.get(node.id)
    raw = (
        {k: InputSpec(bool(v["need_render"]), v["value"]) for k, v in override.items()}
        if override is not None
        else node.inputs
    )
    inject_counters(step, ("_loop",))
    render = {k: v.value for k, v in raw.items() if v.need_render}
    try:
        # One budget for the variables resolved and all the params, as for an activity's inputs.
        budget = new_budget()
        namespace = await hydrate(
            step.env,
            run,
            step.top_pipeline_id,
            references_of(render.values()),
            inner_loop=step.state.inner_loop,
            budget=budget,
        )
        params = await render_within(
            budget, render_values, render, namespace, sandbox=step.env.sandbox
        )
        params.update({k: v.value for k, v in raw.items() if not v.need_render})
        for key, value in params.items():
            run.put_context(node.id, key, ContextVar(PLAIN, value))
        run.put_exec_data(node.id, params, {})
    except Exception as exc:
        return step.fail({"ex_data": f"context hydrate failed({exc}), check node log for details."})
    if proc.stack[-1] != node.id:
        proc.stack.append(node.id)
    return go(sub.start_id)
