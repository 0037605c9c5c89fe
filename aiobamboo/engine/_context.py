"""Context hydration: resolve the ${...} values a node needs, in dependency order (§7.2)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import template
from ..exceptions import ComponentError
from ._env import Env
from ._run import Run
from ._spec import COMPUTE, PLAIN, bare_name, context_key


async def hydrate(
    env: Env, run: Run, pipeline_id: str, names: Iterable[str], *, inner_loop: int = 1
) -> dict[str, Any]:
    """Values of ``names`` (bare) and everything they reference, keyed by bare name.

    Names missing from the context are left out, so their ``${x}`` stays literal.
    Raises TemplateError (unsafe template, reference cycle) or whatever a lazy
    variable raised.
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
    resolved: dict[str, Any] = {}
    for name in order:
        var = needed[context_key(name)]
        if var.type == PLAIN:
            resolved[name] = var.value
            continue
        value = template.render(var.value, resolved)
        if var.type == COMPUTE:
            cls = env.components.get_lazy_variable(var.custom_type or "")
            if cls is None:
                raise ComponentError(f"lazy variable type {var.custom_type!r} is not registered")
            lazy = cls(value, run.root_data, name=context_key(name), inner_loop=inner_loop)
            value = await env.call(lazy.get_value)
        resolved[name] = value
    return resolved


def references_of(values: Iterable[Any]) -> set[str]:
    refs: set[str] = set()
    for value in values:
        refs |= template.references(value)
    return refs
