"""Template modules (datetime, json, math, time): off by default, safe members only."""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import pytest

from aiobamboo.engine import Settings
from aiobamboo.exceptions import ExpressionLimitError, UnsafeExpressionError
from aiobamboo.template import MODULE_NAMES, Sandbox, evaluate_condition, render

BOX = Sandbox(modules=MODULE_NAMES)
NAMESPACE: dict[str, Any] = {"x": 2.4, "d": {"b": 2, "a": [1, "é"]}, "s": '{"k": [1, 2]}'}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${math.ceil(x)}", 3),
        ("${math.floor(x) + math.trunc(-x)}", 0),
        ("${round(math.sqrt(16))}", 4),
        ("${math.pi > 3.14}", True),
        ("${math.isclose(math.log(math.e), 1)}", True),
        ("${json.dumps(d)}", '{"b": 2, "a": [1, "\\u00e9"]}'),
        ("${json.dumps(d, sort_keys=True, ensure_ascii=False)}", '{"a": [1, "é"], "b": 2}'),
        ("${json.dumps(d, separators=(',', ':'))}", '{"b":2,"a":[1,"\\u00e9"]}'),
        ("${json.loads(s)['k'][1]}", 2),
        ("${json.loads(s).k[0]}", 1),
        ("${datetime.datetime(2024, 2, 28).isoformat()}", "2024-02-28T00:00:00"),
        ("${(datetime.date(2024, 2, 28) + datetime.timedelta(days=2)).isoformat()}", "2024-03-01"),
        ("${datetime.datetime.strptime('2024-05-06', '%Y-%m-%d').day}", 6),
        ("${datetime.datetime.fromisoformat('2024-05-06T07:08').hour}", 7),
        ("${datetime.datetime.now(datetime.timezone.utc).year >= 2024}", True),
        ("${datetime.date.today().year >= 2024}", True),
        ("${datetime.MAXYEAR}", 9999),
        ("${int(time.time()) > 1700000000}", True),
        ("${time.strftime('%Y', time.gmtime(0))}", "1970"),
    ],
)
def test_module_members(template: str, expected: Any) -> None:
    box_value = BOX.evaluate(template[2:-1], NAMESPACE)
    assert box_value == expected
    assert render(template, NAMESPACE, sandbox=BOX) == str(expected)


def test_modules_are_off_by_default(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="aiobamboo.template"):
        assert render("${math.ceil(x)}", NAMESPACE) == "${math.ceil(x)}"
    assert "math" in caplog.text
    assert Sandbox().modules == ()
    assert Settings().template_modules == ()


def test_only_the_modules_asked_for() -> None:
    box = Sandbox(modules=["math"])
    assert render("${math.floor(x)}", NAMESPACE, sandbox=box) == "2"
    assert render("${json.dumps(d)}", NAMESPACE, sandbox=box) == "${json.dumps(d)}"


def test_a_context_value_of_the_same_name_wins() -> None:
    assert render("${math.ceil}", {"math": {"ceil": "mine"}}, sandbox=BOX) == "mine"


@pytest.mark.parametrize(
    "template",
    [
        "${math}",  # a namespace renders as its name, nothing more
        "${datetime.datetime}",
    ],
)
def test_namespaces_render_as_their_names(template: str) -> None:
    assert render(template, {}, sandbox=BOX).startswith("<")


@pytest.mark.parametrize(
    "template",
    [
        "${math.floor}",
        "${json.loads}",
        "${datetime.datetime.now}",
        "${json.loads.__globals__}",
        "${datetime.datetime.__init__}",
        "${math.__dict__}",
    ],
)
def test_members_never_become_values(template: str) -> None:
    with pytest.raises(UnsafeExpressionError):
        render(template, NAMESPACE, sandbox=BOX)


@pytest.mark.parametrize(
    "template",
    [
        "${math.factorial(5)}",
        "${time.sleep(1)}",
        "${json.JSONDecoder}",
        "${json.dumps(d, default=str)}",
        "${json.dumps(d, indent=2)}",
    ],
)
def test_members_left_out_stay_literal(template: str) -> None:
    assert render(template, NAMESPACE, sandbox=BOX) == template


@pytest.mark.parametrize(
    "expression",
    [
        "json.dumps('a' * 900000)",
        "json.loads('[' * 100000 + ']' * 100000)",
        "math.gcd(2**9000 * 2**9000, 3)",
        "datetime.datetime.strptime('2024', '%Y' * 600)",
        "time.strftime('%Y' * 300000)",
    ],
)
def test_limits_apply(expression: str) -> None:
    with pytest.raises(ExpressionLimitError):
        BOX.evaluate(expression, NAMESPACE)


def test_decimal_arguments_are_bounded() -> None:
    import decimal

    with pytest.raises(ExpressionLimitError):
        BOX.evaluate("math.floor(v)", {"v": decimal.Decimal("1e999999999")})


def test_conditions_use_the_modules_too() -> None:
    assert evaluate_condition("${math.floor(x)} == 2", NAMESPACE, sandbox=BOX) is True


def test_settings_accept_names_and_the_originals_mapping() -> None:
    assert Settings(template_modules=["json", "math"]).template_modules == ("json", "math")
    assert Settings(template_modules={"datetime": "datetime"}).template_modules == ("datetime",)
    with pytest.raises(ValueError, match="not available"):
        Settings(template_modules=["os"])
    with pytest.raises(ValueError, match="renamed"):
        Settings(template_modules={"datetime": "dt"})
    with pytest.raises(ValueError, match="list of names"):
        Settings(template_modules="math")


def test_values_from_datetime_are_plain_datetimes() -> None:
    value = BOX.evaluate("datetime.datetime(2024, 1, 2, 3)", {})
    assert value == dt.datetime(2024, 1, 2, 3)
