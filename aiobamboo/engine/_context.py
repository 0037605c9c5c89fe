"""Context hydration: resolve the ${...} values a node needs, in dependency order.

Rendering is bounded per node: one :class:`~aiobamboo.template.RenderBudget`
covers the context variables a node resolves and all its inputs (or all its
conditions). Renders are pure, so :func:`render_within` runs them on the event
loop while the node's short slice of loop time lasts (the common ``${x}`` costs
microseconds and never leaves the loop), and redoes one whose slice runs out in
a worker thread, so an expensive template cannot stall other pipelines.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

import anyio

from .. import template
from ..exceptions import ComponentError
from ._env import Env
from ._run import Run
from ._spec import COMPUTE, PLAIN, bare_name, context_key

_T = TypeVar("_T")


def new_budget() -> template.RenderBudget:
    """The budget of one node's rendering."""
    return template.RenderBudget(template.DEFAULT_SANDBOX.limits)


async def render_within(
    budget: template.RenderBudget, fn: Callable[..., _T], *args: Any, **kwargs: Any
) -> _T:
    """``fn(*args, **kwargs, budget=budget)``, a pure render: on the loop while the slice lasts.

    When the budget's slice of loop time runs out part way, the partial work is
    dropped and the whole call is redone in a worker thread with what is left
    of the budget; from then on the node renders in threads.
    """
    if budget.slice_left > 0:
        mark = budget.mark()
        budget.use_slice = True
        try:
            return fn(*args, **kwargs, budget=budget)
        except template.SliceExpired:
            budget.restore(mark)
        finally:
            budget.use_slice = False
    call = functools.partial(fn, *args, **kwargs, budget=budget)
    return await anyio.to_thread.run_sync(call)


#: Each of a mapping's values rendered in one budget; an error names the key.
render_values = template.render_mapping


async def hydrate(
    env: Env,
    run: Run,
    pipeline_id: str,
    names: Iterable[str],
    *,
    inner_loop: int = 1,
    budget: template.RenderBudget | None = None,
) -> dict[str, Any]:
    """Values of ``names`` (bare) and everything they reference, keyed by bare name.

    Names missing from the context are left out, so their ``${x}`` stays literal.
    Raises TemplateError (unsafe template, a limit of ``budget`` exceeded,
    reference cycle) or whatever a lazy variable raised.
    """
    ctx = run.contexts.get(pipeline_id, {})
    needed: dict[str, Any] = {}
    pending = [context_key(n) for n in names]
    while pending:
        key = pending.pop()
        if key in needed or key not in ctx:
            continue
        var = ctx[key]
        needed[key] = var
        pending.extend(context_key(r) for r in var.references)
    if not needed:
        return {}
    order = template.dependency_order({bare_name(k): set(v.references) for k, v in needed.items()})
    spent = budget if budget is not None else new_budget()
    resolved: dict[str, Any] = {}
    for name in order:
        key = context_key(name)
        var = needed[key]
        if var.type == PLAIN:
            resolved[name] = var.value
            continue
        rendered = await render_within(
            spent,
            render_values,
            {key: var.value},
            resolved,
            what="context variable",
            aliases=True,
            sandbox=env.sandbox,
        )
        value = rendered[key]
        if var.type == COMPUTE:
            cls = env.components.get_lazy_variable(var.custom_type or "")
            if cls is None:
                raise ComponentError(f"lazy variable type {var.custom_type!r} is not registered")
            lazy = cls(value, run.root_data, name=key, inner_loop=inner_loop)
            value = await env.call(lazy.get_value)
            if isinstance(value, Mapping) and not isinstance(value, dict):
                # Read in templates by key or attribute, stored as the dict it
                # holds; copied like any user code call (its methods are user code).
                value = await env.call(dict, value)
        resolved[name] = value
    return resolved


def references_of(values: Iterable[Any]) -> set[str]:
    refs: set[str] = set()
    for value in values:
        refs |= template.references(value)
    return refs
