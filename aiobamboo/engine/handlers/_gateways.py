"""Exclusive, parallel, conditional-parallel and converge gateways."""

from __future__ import annotations

import json
from typing import Any, assert_never

from ... import template
from ...exceptions import ConditionSyntaxError
from .._context import hydrate, new_budget, references_of, render_within
from .._env import STRATEGY_FIRST, Outcome, Step, Strategy, go

_Chosen = list[tuple[str, str]]  # (flow id, target)

# Enough of the data to see what a condition compared, not a copy of every
# big value into the node's error.
_MAX_DUMP = 10_000


def _short(text: str) -> str:
    if len(text) > _MAX_DUMP:
        return f"{text[:_MAX_DUMP]}...({len(text)} characters)"
    return text


def _dump(namespace: dict[str, Any]) -> str:
    return _short(json.dumps(namespace, default=repr, ensure_ascii=False))


async def _choose(step: Step, first_only: bool) -> _Chosen | Outcome:
    node = step.node
    # One budget for the variables resolved and every condition of the node.
    budget = new_budget()
    try:
        namespace = await hydrate(
            step.env,
            step.run,
            step.top_pipeline_id,
            references_of(expr for _, expr, _ in node.conditions),
            inner_loop=step.state.inner_loop,
            budget=budget,
        )
    except Exception as exc:
        return step.fail(
            {"ex_data": f"evaluation context hydrate failed({exc}), check node log for details."}
        )
    chosen: _Chosen = []
    for flow_id, expr, target in node.conditions:
        try:
            ok = await render_within(
                budget,
                template.evaluate_condition,
                expr,
                namespace,
                rules=step.run.condition_rules,
                sandbox=step.env.sandbox,
            )
        except ConditionSyntaxError as exc:
            return step.fail(
                {
                    "ex_data": f"evaluate[{expr}] fail with data[{_dump(namespace)}]: please check "
                    f"if some variable not exists or the expression is unsupported "
                    f"({_short(str(exc))})"
                }
            )
        except Exception as exc:
            return step.fail(
                {
                    "ex_data": f"evaluate[{expr}] fail with data[{_dump(namespace)}] "
                    f"message: {_short(str(exc))}"
                }
            )
        if ok:
            chosen.append((flow_id, target))
            if first_only:
                break
    if not chosen:
        if node.default_target is None:
            return step.fail({"ex_data": "all conditions of branches are not meet"})
        chosen.append(node.default_target)
    return chosen


def _strategy(step: Step) -> Strategy:
    """The gateway's own strategy (the tree's ``extra_info``), else the engine's setting."""
    strategy = step.node.extra_info.get("strategy")
    if strategy in ("FIRST", "first", STRATEGY_FIRST):
        return Strategy.FIRST
    if strategy is None:
        return step.env.settings.exclusive_gateway_strategy
    return Strategy.ONLY


def _first_only(step: Step) -> bool:
    match _strategy(step):
        case Strategy.FIRST:
            return True
        case Strategy.ONLY:
            return False
        case unknown:
            assert_never(unknown)


async def execute_exclusive(step: Step) -> Outcome:
    chosen = await _choose(step, _first_only(step))
    if isinstance(chosen, Outcome):
        return chosen
    if len(chosen) != 1:
        return step.fail({"ex_data": f"multiple conditions meet: {[f for f, _ in chosen]}"})
    step.finish()
    return go(chosen[0][1])


def fork(step: Step, targets: list[str]) -> Outcome:
    converge = step.node.converge_gateway_id
    if not converge:
        return step.fail({"ex_data": f"gateway {step.node.id} has no converge_gateway_id"})
    step.finish()
    return Outcome("fork", children=[(target, converge) for target in targets])


async def execute_parallel(step: Step) -> Outcome:
    return fork(step, list(step.node.targets.values()))


async def execute_conditional_parallel(step: Step) -> Outcome:
    chosen = await _choose(step, False)
    if isinstance(chosen, Outcome):
        return chosen
    return fork(step, [target for _, target in chosen])


async def execute_converge(step: Step) -> Outcome:
    step.finish()
    return go(step.node.first_target)
