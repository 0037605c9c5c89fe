"""aiobamboo.template: fragments, references, render, dependency_order, Sandbox."""

from __future__ import annotations

import datetime
import decimal
import logging
from typing import Any

import pytest

from aiobamboo.exceptions import (
    ExpressionLimitError,
    ReferenceCycleError,
    TemplateError,
    UnsafeExpressionError,
)
from aiobamboo.template import (
    RenderBudget,
    Sandbox,
    SandboxLimits,
    SliceExpired,
    dependency_order,
    find_fragments,
    references,
    render,
    render_mapping,
)

# -- fragments ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("no template", []),
        ("${a}", ["${a}"]),
        ("${a}-${b}-${a}", ["${a}", "${b}"]),
        ("${{'k': 1}}", []),  # a dict literal is never a template
        ("${a{b}}", []),
        ("${a#b}", []),
        ("${a$b}", []),
        ("${}", []),
        ("$ {a}", []),
        ("x${ a }y", ["${ a }"]),
        ("${LOG_FILE:-x}", ["${LOG_FILE:-x}"]),
        ("${a}${b}", ["${a}", "${b}"]),
    ],
)
def test_find_fragments(text: str, expected: list[str]) -> None:
    assert find_fragments(text) == expected


# -- references -------------------------------------------------------------------


def test_references_of_the_original_examples() -> None:
    assert references('${l.split(",")[a_i]}') == {"l", "a_i"}
    # builtins are references too, as in the original (a context key may shadow them)
    assert references(["${a}", ["${a}", "${a+int(b)}"]]) == {"a", "b", "int"}
    assert references(['${a["c"]}', ['${"%s" % a}', "${a+int(b)}"]]) == {"a", "b", "int"}


def test_references_recurse_into_dict_values_lists_and_tuples() -> None:
    value = {"k": ("${a}", ["${b}", {"n": "${c}"}]), "${key}": 1, "x": 5, "y": None}
    assert references(value) == {"a", "b", "c"}  # dict keys are not templates


def test_references_exclude_names_bound_inside_the_fragment() -> None:
    assert references("${[x * 2 for x in items]}") == {"items"}
    assert references("${[x for x in x]}") == {"x"}  # the iterable is the outer x
    assert references("${[y for x in xs for y in x if y > limit]}") == {"xs", "limit"}
    assert references("${{k: v for k, v in pairs}}") == set()  # braces: not a template
    assert references("${dict((k, v) for k, v in pairs)}") == {"dict", "pairs"}
    assert references("${(lambda y: y + seed)(1)}") == {"seed"}


def test_references_skip_fragments_that_do_not_parse_or_are_too_big() -> None:
    assert references("${LOG_FILE:-x} ${HOME} ${a b}") == {"HOME"}
    assert references("${" + "(" * 300 + "a" + ")" * 300 + "}") == set()
    assert references("${" + "a+" * 6000 + "a}") == set()
    assert references(42) == set()
    assert references(None) == set()


def test_references_of_a_string_are_a_fresh_set_each_time() -> None:
    # The names of a string are cached: what a caller does to its set stays its own.
    first = references("${cached_a + cached_b}")
    first.add("changed")
    assert references("${cached_a + cached_b}") == {"cached_a", "cached_b"}
    assert references("no fragment") == set()
    long_text = "${long_a} " + "x" * 5000  # beyond the cached length: found each time
    assert references(long_text) == {"long_a"}
    assert references(long_text) == {"long_a"}


def test_references_of_deeply_nested_data_do_not_recurse() -> None:
    value: Any = "${leaf}"
    for _ in range(5000):
        value = [value]
    assert references(value) == {"leaf"}


# -- render: the whole-string fast path -----------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [1, 1.5, None, True, [1, 2], {"a": [1]}, ("t",), datetime.date(2024, 1, 2), "s"],
)
def test_whole_string_reference_returns_the_object(raw: Any) -> None:
    assert render("${v}", {"v": raw}) is raw


def test_whole_string_fast_path_ignores_surrounding_blanks() -> None:
    # Decision: ``${ a }`` is ``${a}``. The original leaves it literal (a Mako
    # indentation error); blanks carry no meaning in an expression.
    assert render("${ a }", {"a": [1]}) == [1]
    assert render("x${ a }", {"a": 1}) == "x1"


def test_whole_string_expression_renders_to_a_string() -> None:
    assert render("${a+int(b)}", {"a": 2, "b": "3"}) == "5"
    assert render("${a[0]}", {"a": [1, 2]}) == "1"  # no ENABLE_RENDER_OBJ_BY_MAKO_STRING
    assert render('${a["b"]}', {"a": {"b": 1}}) == "1"


def test_context_key_shadows_a_builtin() -> None:
    assert render("${int}", {"int": "cover"}) == "cover"
    assert render("${int + '!'}", {"int": "cover"}) == "cover!"


# -- render: text --------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "None"), (True, "True"), (False, "False"), ([1, "a"], "[1, 'a']"), (1.5, "1.5")],
)
def test_values_in_text_render_like_mako_str(value: Any, text: str) -> None:
    assert render("<${v}>", {"v": value}) == f"<{text}>"


def test_mixed_text_and_expressions() -> None:
    ns = {"t": False, "a": "c", "b": "1", "c": 2}
    assert render("a-${1 if t else 2}-${a}", ns) == "a-2-c"
    assert render("${'a-%s-c' % 1 if not t else 2}", ns) == "a-1-c"
    assert render("${b}_${c}", ns) == "1_2"
    assert render("${a}${a}${a}", ns) == "ccc"


@pytest.mark.parametrize(
    ("template", "namespace", "expected"),
    [
        ("${int(111)}", {}, "111"),
        ("${str('aaa')}", {}, "aaa"),
        ("${name.upper()}", {"name": "abc"}, "ABC"),
        ("${name.split('-')}", {"name": "a-b-c"}, "['a', 'b', 'c']"),
        ("${name.strip().replace('a', 'b')}", {"name": " aa "}, "bb"),
        ("${','.join(items)}", {"items": ["x", "y"]}, "x,y"),
        ("${[x * 2 for x in items]}", {"items": [1, 2, 3]}, "[2, 4, 6]"),
        ("${a if a else 'default'}", {"a": ""}, "default"),
        ("${len(items)}", {"items": [1, 2, 3]}, "3"),
        ("${d.get('k')} ${sorted(d.keys())}", {"d": {"k": 1, "j": 2}}, "1 ['j', 'k']"),
        ("${l[1:]} ${l[::-1]}", {"l": [1, 2, 3]}, "[2, 3] [3, 2, 1]"),
        ("${'%05.1f|%-3s|' % (x, 'a')}", {"x": 2.25}, "002.2|a  |"),
        (
            "${max(l)}-${min(l)}-${sum(l)}-${abs(-2)}-${round(2.567, 1)}",
            {"l": [3, 1]},
            "3-1-4-2-2.6",
        ),
        ("${list(zip(l, l))}", {"l": [1, 2]}, "[(1, 1), (2, 2)]"),
        ("${list(enumerate(l))}", {"l": ["a"]}, "[(0, 'a')]"),
        ("${list(reversed(range(3)))}", {}, "[2, 1, 0]"),
        ("${all(l)} ${any(l)} ${bool(0)}", {"l": [1, 0]}, "False True False"),
        ("${2 ** 10} ${7 // 2} ${7 % 3} ${1 << 4}", {}, "1024 3 1 16"),
        ("${d.year}-${d.strftime('%m')}", {"d": datetime.date(2024, 5, 6)}, "2024-05"),
        ("${x * 2}", {"x": decimal.Decimal("1.5")}, "3.0"),
        ("${_loop + 1}", {"_loop": 1}, "2"),  # engine keys starting with _ are readable
        ("${x is None}", {"x": None}, "True"),
    ],
)
def test_supported_expressions(template: str, namespace: dict[str, Any], expected: str) -> None:
    assert render(template, namespace) == expected


@pytest.mark.parametrize(
    "template",
    [
        "${LOG_FILE:-x}",  # shell syntax: not an expression
        "${missing}",
        "${a.b}",  # attribute a dict does not have
        "${1/0}",
        "${int('x')}",
        "${l[10]}",
        "${unknown_function(1)}",
        "${'x' | h}",  # Mako filters are not supported: h is an unknown name
        "${' x ' | trim}",
        "${while True: pass}",
        "${import os}",
        "${ }",
    ],
)
def test_fragments_that_fail_stay_literal(template: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aiobamboo.template"):
        assert render(f"echo {template} done", {"a": {}, "l": []}) == f"echo {template} done"
        assert render(template, {"a": {}, "l": []}) == template
    assert caplog.records
    assert all(record.name == "aiobamboo.template" for record in caplog.records)


def test_failing_fragment_does_not_stop_the_others() -> None:
    assert (
        render("${a}/${LOG_FILE:-x}/${missing}/${a}", {"a": 1}) == "1/${LOG_FILE:-x}/${missing}/1"
    )


def test_replacement_text_is_not_rendered_again() -> None:
    assert render("${a} ${b}", {"a": "${b}", "b": "B"}) == "${b} B"


def test_render_is_recursive_and_keeps_container_kinds() -> None:
    ns = {"a": 2, "b": "3"}
    assert render(["${a}", ["${a}", "${a+int(b)}"]], ns) == [2, [2, "5"]]
    assert render(("${a}", ("${a}", "${a+int(b)}")), ns) == (2, (2, "5"))
    assert render({"aaaa": {"a": "${a}", "b": "${a+int(b)}"}}, ns) == {"aaaa": {"a": 2, "b": "5"}}
    assert render({"${a}": "${a}"}, ns) == {"${a}": 2}  # keys are not rendered


def test_render_passes_other_values_through_and_does_not_modify_its_input() -> None:
    marker = object()
    data = {"x": ["${a}", marker, 3, None], "t": ("${a}",)}
    result = render(data, {"a": 1})
    assert result == {"x": [1, marker, 3, None], "t": (1,)}
    assert data == {"x": ["${a}", marker, 3, None], "t": ("${a}",)}
    assert render(marker, {}) is marker
    assert render(5, {}) == 5


def test_unsafe_fragment_raises_and_names_the_fragment() -> None:
    with pytest.raises(UnsafeExpressionError, match=r"\$\{x\.__class__\}"):
        render("ok ${a} then ${x.__class__}", {"a": 1, "x": 1})


def test_limit_fragment_raises_and_names_the_fragment() -> None:
    with pytest.raises(ExpressionLimitError, match=r"\$\{'a' \* 10 \*\* 9\}"):
        render("${'a' * 10 ** 9}", {})


def test_lambda_is_refused() -> None:
    # The original's Mako allowed ``${(lambda y: y + 1)(seed)}``; this sandbox does not.
    with pytest.raises(UnsafeExpressionError, match="lambda"):
        render("${(lambda y: y + 1)(seed)}", {"seed": 4})


def test_mutating_methods_are_refused() -> None:
    items = [1]
    with pytest.raises(UnsafeExpressionError, match="append"):
        render("${items.append(2)}", {"items": items})
    assert items == [1]


def test_errors_are_template_errors() -> None:
    assert issubclass(UnsafeExpressionError, TemplateError)
    assert issubclass(ExpressionLimitError, TemplateError)


# -- Sandbox --------------------------------------------------------------------------


def test_sandbox_evaluate_returns_typed_values() -> None:
    sandbox = Sandbox()
    assert sandbox.evaluate("a + 1", {"a": 1}) == 2
    assert sandbox.evaluate("[x for x in l if x]", {"l": [0, 1]}) == [1]
    assert sandbox.evaluate("{'k': v}", {"v": 1}) == {"k": 1}
    assert sandbox.evaluate("  a  ", {"a": "x"}) == "x"


def test_sandbox_ordinary_failures_are_plain_template_errors() -> None:
    sandbox = Sandbox()
    for expression in ("missing", "1/0", "a:-b", "int('x')"):
        with pytest.raises(TemplateError) as info:
            sandbox.evaluate(expression, {})
        assert type(info.value) is TemplateError


def test_sandbox_limits_are_configurable() -> None:
    small = Sandbox(SandboxLimits(max_string_length=10, max_expression_length=20, max_depth=5))
    assert small.evaluate("'a' * 10", {}) == "a" * 10
    with pytest.raises(ExpressionLimitError):
        small.evaluate("'a' * 11", {})
    with pytest.raises(ExpressionLimitError):
        small.evaluate("1 + " * 6 + "1", {})
    with pytest.raises(ExpressionLimitError):
        small.evaluate("[[[[[[1]]]]]]", {})
    with pytest.raises(ExpressionLimitError):
        render("${1 + 1 + 1 + 1 + 1 + 1 + 1 + 1}", {}, sandbox=small)


def test_sandbox_step_limit() -> None:
    sandbox = Sandbox(SandboxLimits(max_steps=100))
    with pytest.raises(ExpressionLimitError, match="steps"):
        sandbox.evaluate("[x for x in range(1000)]", {})


def test_sandbox_deadline() -> None:
    sandbox = Sandbox(SandboxLimits(timeout=0.0))
    assert sandbox.evaluate("1 + 1", {}) == 2  # checked every 64 steps
    with pytest.raises(ExpressionLimitError, match="longer than"):
        sandbox.evaluate("[x for x in range(1000)]", {})


def test_sandbox_is_reusable_after_errors() -> None:
    sandbox = Sandbox()
    with pytest.raises(ExpressionLimitError):
        sandbox.evaluate("[x for x in range(10**9)]", {})
    with pytest.raises(TemplateError):
        sandbox.evaluate("[y for y in l] + missing", {"l": [1]})
    assert sandbox.evaluate("[y for y in l]", {"l": [1]}) == [1]
    assert sandbox.evaluate("y", {"y": 3}) == 3


# -- dependency_order -------------------------------------------------------------


def _assert_topological(order: list[str], refs: dict[str, set[str]]) -> None:
    assert sorted(order) == sorted(refs)
    position = {key: index for index, key in enumerate(order)}
    for key, deps in refs.items():
        for dep in deps:
            if dep in refs:
                assert position[dep] < position[key], (dep, key)


def test_dependency_order_puts_references_first() -> None:
    refs = {"a": {"b", "c"}, "b": {"c"}, "c": set(), "d": set()}
    order = dependency_order(refs)
    _assert_topological(order, refs)
    assert order == ["c", "b", "a", "d"]


def test_dependency_order_ignores_references_outside_the_mapping() -> None:
    refs = {"a": {"int", "missing"}, "b": {"a", "x"}}
    assert dependency_order(refs) == ["a", "b"]


def test_dependency_order_is_deterministic() -> None:
    refs = {"z": {"y", "x", "w"}, "y": set(), "x": set(), "w": set()}
    assert dependency_order(refs) == ["w", "x", "y", "z"]
    assert dependency_order({}) == []


def test_dependency_order_diamond() -> None:
    refs = {"top": {"l", "r"}, "l": {"base"}, "r": {"base"}, "base": set()}
    order = dependency_order(refs)
    _assert_topological(order, refs)
    assert order.count("base") == 1


def test_dependency_order_self_reference() -> None:
    with pytest.raises(ReferenceCycleError) as info:
        dependency_order({"a": {"a"}})
    assert info.value.keys == ("a",)


def test_dependency_order_cycle_names_its_keys() -> None:
    refs = {"start": {"a"}, "a": {"b"}, "b": {"c"}, "c": {"a"}, "free": set()}
    with pytest.raises(ReferenceCycleError) as info:
        dependency_order(refs)
    assert set(info.value.keys) == {"a", "b", "c"}
    assert "start" not in info.value.keys
    assert "a -> b -> c -> a" in str(info.value)


def test_dependency_order_long_chain() -> None:
    size = 10_000
    refs = {f"k{i}": {f"k{i + 1}"} for i in range(size - 1)}
    refs[f"k{size - 1}"] = set()
    order = dependency_order(refs)
    assert order == [f"k{i}" for i in reversed(range(size))]
    reverse_refs = {f"k{i}": ({f"k{i - 1}"} if i else set()) for i in range(size)}
    assert dependency_order(reverse_refs) == [f"k{i}" for i in range(size)]


def test_dependency_order_long_cycle() -> None:
    size = 10_000
    refs = {f"k{i}": {f"k{(i + 1) % size}"} for i in range(size)}
    with pytest.raises(ReferenceCycleError) as info:
        dependency_order(refs)
    assert len(info.value.keys) == size


def test_references_feed_dependency_order() -> None:
    values = {"a": "${b}_${c}", "b": "1", "c": "${d}", "d": 2}
    refs = {key: references(value) for key, value in values.items()}
    order = dependency_order(refs)
    resolved: dict[str, Any] = {}
    for key in order:
        resolved[key] = render(values[key], resolved)
    assert resolved == {"a": "1_2", "b": "1", "c": 2, "d": 2}


# -- whole-render limits: size ---------------------------------------------------------------


def _peak_memory(fn: Any) -> int:
    """Peak bytes allocated by Python while ``fn()`` runs (it must raise TemplateError)."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(TemplateError) as info:
            fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        del info


def test_a_repeated_fragment_cannot_render_past_the_value_limit() -> None:
    chunk = "x" * 100_000
    text = "${a}" * 100  # 10 MB if rendered
    with pytest.raises(ExpressionLimitError) as info:
        render(text, {"a": chunk})
    message = str(info.value)
    assert "${a}" in message
    assert "1000000 characters" in message
    assert "100 times" in message


def test_the_value_limit_is_checked_before_the_string_is_built() -> None:
    chunk = "x" * 100_000
    peak = _peak_memory(lambda: render("${a}" * 100, {"a": chunk}))
    assert peak < 3_000_000  # the 10 MB result is never built


def test_values_just_under_the_limit_render() -> None:
    chunk = "x" * 99_999
    rendered = render("${a}" * 10, {"a": chunk})
    assert rendered == chunk * 10
    # A fragment rendering shorter than itself leaves room for the others.
    assert len(render("${b}" * 200_000 + "${a}" * 10, {"a": chunk, "b": ""})) == 999_990


def test_the_render_size_counts_every_string_of_one_render() -> None:
    chunk = "x" * 900_000
    value = {f"k{i}": "<${a}>" for i in range(5)}  # 4.5 MB in all, each under 1 MB
    with pytest.raises(ExpressionLimitError, match="4000000 characters in total"):
        render(value, {"a": chunk})
    assert len(render(dict(list(value.items())[:4]), {"a": chunk})) == 4


def test_a_shared_budget_bounds_several_renders() -> None:
    budget = RenderBudget()
    chunk = "x" * 900_000
    for _ in range(4):
        render("<${a}>", {"a": chunk}, budget=budget)
    with pytest.raises(ExpressionLimitError, match="in total"):
        render("<${a}>", {"a": chunk}, budget=budget)
    # A fresh budget starts again.
    assert len(render("<${a}>", {"a": chunk})) == 900_002


def test_a_value_passed_through_whole_counts_from_its_second_use() -> None:
    big = "x" * 3_000_000  # bigger than one rendered value may be: passing it is fine
    assert render("${big}", {"big": big}) is big
    assert render(["${big}"], {"big": big})[0] is big
    assert len(render(["${big}", "${big}"], {"big": big})) == 2  # 3 MB more
    with pytest.raises(ExpressionLimitError, match="in total"):
        render(["${big}", "${big}", "${big}"], {"big": big})  # 6 MB more
    items = [list(range(100))] * 10  # about 8_000 units
    assert len(render(["${items}"] * 100, {"items": items})) == 100
    with pytest.raises(ExpressionLimitError, match="in total"):
        render(["${items}"] * 1_000, {"items": items})


def _render_levels(namespace: dict[str, Any], budget: RenderBudget) -> None:
    for level in range(1, 8):
        namespace[f"v{level}"] = render(f"${{v{level - 1}}}" * 10, namespace, budget=budget)


def test_variables_referencing_variables_cannot_amplify() -> None:
    # What hydrate does: each variable renders with the ones before it, one budget.
    namespace: dict[str, Any] = {"v0": "x" * 100}
    with pytest.raises(ExpressionLimitError) as info:
        _render_levels(namespace, RenderBudget())
    assert "${v4}" in str(info.value)  # 100 * 10**4 = 1 MB: the fifth level is refused
    assert "v5" not in namespace


def test_render_size_limits_are_configurable() -> None:
    box = Sandbox(SandboxLimits(max_rendered_length=10, max_render_size=15))
    assert render("${a}${a}", {"a": "12345"}, sandbox=box) == "1234512345"
    with pytest.raises(ExpressionLimitError, match="more than 10 characters"):
        render("${a}${a}!", {"a": "12345"}, sandbox=box)
    with pytest.raises(ExpressionLimitError, match="more than 15 characters in total"):
        render(["${a}${a}", "${a}${a}"], {"a": "12345"}, sandbox=box)


# -- whole-render limits: time ---------------------------------------------------------------

#: About 10-20 ms of sandbox steps per fragment; ``{}`` makes each one distinct.
_HEAVY = "${len([1 for x in range(9999)]) + %d}"


def test_one_deadline_bounds_all_the_fragments_of_a_render() -> None:
    import time

    box = Sandbox(SandboxLimits(timeout=5.0, render_timeout=0.2))
    text = "".join(_HEAVY % i for i in range(400))  # seconds of work in all
    started = time.monotonic()
    with pytest.raises(ExpressionLimitError, match=r"render took longer than 0\.2 s in total"):
        render(text, {}, sandbox=box)
    assert time.monotonic() - started < 2.0


def _render_each(budget: RenderBudget, box: Sandbox) -> None:
    for i in range(400):
        render(_HEAVY % i, {}, sandbox=box, budget=budget)


def test_a_shared_budget_bounds_the_time_of_several_renders() -> None:
    box = Sandbox(SandboxLimits(timeout=5.0, render_timeout=0.2))
    budget = RenderBudget(box.limits)
    with pytest.raises(ExpressionLimitError, match="in total"):
        _render_each(budget, box)
    assert budget.time_left <= 0


def test_the_loop_slice_stops_a_render_that_takes_long() -> None:
    budget = RenderBudget(SandboxLimits(loop_slice=0.01))
    budget.use_slice = True
    with pytest.raises(SliceExpired):
        render("".join(_HEAVY % i for i in range(100)), {}, budget=budget)
    assert budget.slice_left <= 0
    budget.use_slice = False  # then the rest of the budget applies, and no slice
    assert render(_HEAVY % 1, {}, budget=budget) == "10000"


def test_a_slice_is_not_a_template_error_and_a_cheap_render_does_not_use_it_up() -> None:
    assert not issubclass(SliceExpired, TemplateError)
    budget = RenderBudget()
    budget.use_slice = True
    for _ in range(100):
        assert render("${a} and ${a + 1}", {"a": 1}, budget=budget) == "1 and 2"
    assert budget.slice_left > 0


# -- the engine's renders: on the loop while cheap, in a thread once expensive ---------------


async def test_a_cheap_render_stays_on_the_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    import anyio.to_thread

    from aiobamboo.engine._context import new_budget, render_values, render_within

    def no_thread(*_: Any, **__: Any) -> Any:
        raise AssertionError("a cheap render must not hop to a thread")

    monkeypatch.setattr(anyio.to_thread, "run_sync", no_thread)
    budget = new_budget()
    for _ in range(200):
        rendered = await render_within(
            budget, render_values, {"a": "${x}", "b": "<${x + 1}>"}, {"x": 1}
        )
        assert rendered == {"a": 1, "b": "<2>"}


async def test_an_expensive_render_moves_to_a_thread_and_the_loop_keeps_ticking() -> None:
    import threading
    import time

    import anyio

    from aiobamboo.engine._context import render_values, render_within

    threads: list[str] = []

    class Recording(dict[str, Any]):
        def __contains__(self, key: object) -> bool:
            threads.append(threading.current_thread().name)
            return super().__contains__(key)

    budget = RenderBudget(SandboxLimits(render_timeout=30.0, timeout=5.0))
    text = "${n}" + "".join(_HEAVY % i for i in range(60)) + "${n + 0}"  # about a second
    gaps: list[float] = []
    done = anyio.Event()

    async def tick() -> None:
        last = time.monotonic()
        while not done.is_set():
            await anyio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async with anyio.create_task_group() as tg:
        tg.start_soon(tick)
        started = time.monotonic()
        rendered = await render_within(budget, render_values, {"k": text}, Recording(n=1))
        took = time.monotonic() - started
        done.set()
    assert rendered["k"] == "1" + "".join(str(9999 + i) for i in range(60)) + "1"
    assert threads[0] == threading.main_thread().name  # tried on the loop first
    assert threads[-1] != threading.main_thread().name  # finished in a worker thread
    assert budget.slice_left <= 0
    # Relative, so that a loaded machine slows both alike: on the loop, one gap
    # would be about as long as the whole render.
    assert max(gaps) < took / 2, (max(gaps), took)


async def test_a_render_error_in_a_thread_names_the_key() -> None:
    from aiobamboo.engine._context import render_values, render_within

    budget = RenderBudget(SandboxLimits(render_timeout=0.2, timeout=5.0, loop_slice=0.001))
    text = "".join(_HEAVY % i for i in range(400))
    with pytest.raises(ExpressionLimitError, match=r"^input 'k': .*in total"):
        await render_within(budget, render_values, {"k": text}, {})


def test_render_mapping_names_the_key_of_a_failing_value() -> None:
    with pytest.raises(ExpressionLimitError, match=r"^input 'b': \$\{a\}\$\{a\}"):
        render_mapping({"a": "${a}", "b": "${a}${a}"}, {"a": "x" * 600_000})
    assert render_mapping({"k": "<${a}>"}, {"a": 1}, what="context variable") == {"k": "<1>"}


def test_a_variable_that_is_just_another_name_is_not_a_use_of_the_value() -> None:
    # As hydrate resolves variables: ``${b}`` and ``${c}`` name the big value.
    big = "x" * 5_000_000
    budget = RenderBudget()
    namespace: dict[str, Any] = {"big": big}
    for name, value in (("b", "${big}"), ("c", "${b}")):
        namespace.update(render_mapping({name: value}, namespace, budget=budget, aliases=True))
    assert render({"input": "${c}"}, namespace, budget=budget) == {"input": big}
    with pytest.raises(ExpressionLimitError, match="in total"):
        render({"again": "${b}"}, namespace, budget=budget)  # stored a second time
    # Inside a container, each reference is a use.
    with pytest.raises(ExpressionLimitError, match="in total"):
        render_mapping({"d": ["${big}", "${big}"]}, {"big": big}, aliases=True)
