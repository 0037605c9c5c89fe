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
    Sandbox,
    SandboxLimits,
    dependency_order,
    find_fragments,
    references,
    render,
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
