"""Conditions under the original's rules (``rules="bamboo"``).

Expected values are worked out from bamboo-engine's ``utils/boolrule``: the
tokens are tested left to right (a true value before ``or`` or a false one
before ``and`` ends the expression), and ``double_equals_trans`` converts the
operands (``int()`` of the other side when one is an int, which truncates
floats; ``str()`` when one is a string; a failed conversion skips the rest).
"""

from __future__ import annotations

from typing import Any

import pytest

from aiobamboo.exceptions import ConditionSyntaxError, TemplateError
from aiobamboo.template import BAMBOO_RULES, evaluate_condition

NAMESPACE: dict[str, Any] = {"x": 1.7, "s": "a b", "n": 3, "v": "1 or 1", "rule": "1.5 > 1"}


def bamboo(expression: str) -> bool:
    return evaluate_condition(expression, NAMESPACE, rules=BAMBOO_RULES)


def standard(expression: str) -> bool:
    return evaluate_condition(expression, NAMESPACE)


@pytest.mark.parametrize(
    ("expression", "original", "here"),
    [
        # left to right, no precedence
        ("1 > 2 and 1 == 1 or 2 == 2", False, True),
        ("1 > 2 and 1 > 3 or 1 == 1", False, True),
        ("1 == 1 or 1 > 2 and 1 > 3", True, True),
        ("1 > 2 or 1 == 1 and 2 == 3", False, False),
        ("(1 > 2 and 1 == 1) or 2 == 2", True, True),
        ("1 == 1 AND (2 == 3 or 3 == 3)", True, True),
        # truncation of floats against ints
        ("1.5 > 1", False, True),
        ("1.5 >= 2", False, False),
        ("2.9 == 2", True, False),
        ("1 == 1.9", True, False),
        ("${x} == 1", True, False),
        ("${x} > 0.5", True, True),
        ("1 in (1.9, 3)", True, False),
        ("2.5 in (2, 3)", False, False),
        # strings and numbers
        ('"1.0" == 1', False, True),
        ('"1" == 1', True, True),
        ('1 in ("1", "x")', True, True),
        ('"1" in (1, 2)', True, True),
        ('"abc" == abc', True, True),
        ('true == "True"', False, True),
        ("true == 1", True, True),
        ('"${s}" == "a b"', True, True),
        ("${n} notin (1, 2)", True, True),
        # sets
        ("(1, 2) issuperset (1)", True, True),
        ('(1, 2) issuperset ("1")', False, True),
        ('"ab" issuperset "ab"', True, True),
        ("(1, 2) notissuperset (3)", True, True),
        ("*", True, True),
        ("${rule}", False, True),
    ],
)
def test_the_originals_results(expression: str, original: bool, here: bool) -> None:
    assert bamboo(expression) is original
    assert standard(expression) is here


@pytest.mark.parametrize(
    "expression",
    ["not 1 == 1", "true", "1 == 1 and true", "(true)", "1 == 1 and", "1 = 1"],
)
def test_every_condition_is_a_comparison(expression: str) -> None:
    with pytest.raises(ConditionSyntaxError):
        bamboo(expression)


@pytest.mark.parametrize("expression", ['1 < "abc"', "1 in 5", "1 issuperset (1)"])
def test_what_the_original_cannot_compare_fails(expression: str) -> None:
    with pytest.raises(TemplateError):
        bamboo(expression)


def test_a_whole_boolean_fragment_is_no_comparison() -> None:
    with pytest.raises(ConditionSyntaxError):
        evaluate_condition("${flag}", {"flag": True}, rules=BAMBOO_RULES)
    assert evaluate_condition("${flag}", {"flag": True}) is True


def test_values_are_still_bound_not_spliced() -> None:
    # The original splices "1 or 1" into the text; here a value stays one value.
    with pytest.raises(ConditionSyntaxError, match="not one value"):
        bamboo("${v} == 1")


def test_unknown_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="condition rules"):
        evaluate_condition("1 == 1", {}, rules="pyparsing")
