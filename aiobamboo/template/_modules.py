"""Modules usable inside ``${...}`` when allowed: the counterpart of the original's
``MAKO_SANDBOX_IMPORT_MODULES``.

A module is never handed to a template. Each allowed name is a
:class:`SafeNamespace`: a fixed table of the module's side-effect-free members
(functions, constants, and classes as nested namespaces whose call constructs
a value), and nothing else is reachable from it. Members whose cost a template
could blow up are left out (``math.factorial``, ``comb``, ``perm``, ``prod``,
``lcm``; ``time.sleep``) or wrapped with the sandbox's limits (integer sizes,
``Decimal`` conversions, the size of ``json`` text, ``strftime`` output).
"""

from __future__ import annotations

import datetime as _dt
import decimal
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NoReturn, Protocol

__all__ = ["MODULE_NAMES", "Guard", "SafeNamespace", "build_modules", "check_module_names"]


class Guard(Protocol):
    """The checks of one evaluation that module members apply to their arguments."""

    def check_int(self, value: int, what: str) -> None: ...

    def check_decimal(self, value: decimal.Decimal) -> None: ...

    def check_length(self, size: int, what: str) -> None: ...

    def check_weight(self, *values: Any) -> None: ...

    def weight(self, value: Any) -> int: ...

    def exceeded(self, reason: str) -> NoReturn: ...


class SafeNamespace:
    """A module or class as templates see it: named members, and maybe a constructor."""

    __slots__ = ("_constructor", "_members", "name")

    def __init__(
        self,
        name: str,
        members: Mapping[str, Any],
        constructor: Callable[..., Any] | None = None,
    ) -> None:
        self.name = name
        self._members = dict(members)
        self._constructor = constructor

    def member(self, attr: str) -> Any:
        try:
            return self._members[attr]
        except KeyError:
            raise AttributeError(f"{self.name} has no member {attr!r} in templates") from None

    @property
    def constructor(self) -> Callable[..., Any] | None:
        return self._constructor

    def __repr__(self) -> str:
        return f"<{self.name}>"


_MAX_FORMAT = 1_000

#: The modules templates may be allowed to use.
MODULE_NAMES = ("datetime", "json", "math", "time")


def check_module_names(value: Iterable[str] | Mapping[str, str]) -> tuple[str, ...]:
    """Module names from a list, or from the original's ``{module: alias}`` mapping."""
    if isinstance(value, str):
        raise ValueError(f"template modules must be a list of names, got {value!r}")
    if isinstance(value, Mapping):
        renamed = [f"{k} as {v}" for k, v in value.items() if k != v]
        if renamed:
            raise ValueError(f"template modules cannot be renamed: {', '.join(renamed)}")
    names = tuple(dict.fromkeys(value))
    unknown = [name for name in names if name not in MODULE_NAMES]
    if unknown:
        raise ValueError(
            f"template modules must be among {', '.join(MODULE_NAMES)}; "
            f"not available: {', '.join(map(repr, unknown))}"
        )
    return names


def build_modules(names: Iterable[str], guard: Guard) -> dict[str, SafeNamespace]:
    builders = {"datetime": _datetime, "json": _json, "math": _math, "time": _time}
    return {name: builders[name](guard) for name in names}


def _numbers(guard: Guard, fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """``fn`` with its numeric arguments and integer result checked against the limits."""

    def call(*args: Any) -> Any:
        for arg in args:
            if isinstance(arg, decimal.Decimal):
                guard.check_decimal(arg)
            elif isinstance(arg, int):
                guard.check_int(arg, f"an argument of math.{name}()")
        result = fn(*args)
        if isinstance(result, int):
            guard.check_int(result, f"the result of math.{name}()")
        return result

    call.__name__ = name
    return call


_MATH_FUNCTIONS = (
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atan2",
    "atanh",
    "ceil",
    "copysign",
    "cos",
    "cosh",
    "degrees",
    "dist",
    "erf",
    "erfc",
    "exp",
    "expm1",
    "fabs",
    "floor",
    "fmod",
    "frexp",
    "fsum",
    "gamma",
    "gcd",
    "hypot",
    "isclose",
    "isfinite",
    "isinf",
    "isnan",
    "isqrt",
    "ldexp",
    "lgamma",
    "log",
    "log10",
    "log1p",
    "log2",
    "modf",
    "pow",
    "radians",
    "remainder",
    "sin",
    "sinh",
    "sqrt",
    "tan",
    "tanh",
    "trunc",
)


def _math(guard: Guard) -> SafeNamespace:
    members: dict[str, Any] = {
        name: _numbers(guard, getattr(math, name), name) for name in _MATH_FUNCTIONS
    }
    members.update(pi=math.pi, e=math.e, tau=math.tau, inf=math.inf, nan=math.nan)
    return SafeNamespace("module math", members)


def _json(guard: Guard) -> SafeNamespace:
    def loads(text: str | bytes) -> Any:
        if not isinstance(text, str | bytes | bytearray):
            raise TypeError(f"json.loads() takes a string, got {type(text).__name__}")
        guard.check_length(len(text), "the text given to json.loads()")
        return json.loads(text)

    def dumps(
        value: Any,
        *,
        ensure_ascii: bool = True,
        sort_keys: bool = False,
        separators: tuple[str, str] | None = None,
    ) -> str:
        if separators is not None and not (
            isinstance(separators, tuple | list)
            and len(separators) == 2
            and all(isinstance(s, str) and len(s) <= 4 for s in separators)
        ):
            raise TypeError("json.dumps() separators must be two strings of at most 4 characters")
        guard.check_weight(value)
        # Escapes (\\uXXXX) and separators make the text at most a few times
        # the value's size: refused before it is built.
        guard.check_length(guard.weight(value) * 6, "json.dumps() output")
        return json.dumps(
            value,
            ensure_ascii=bool(ensure_ascii),
            sort_keys=bool(sort_keys),
            separators=None if separators is None else (separators[0], separators[1]),
        )

    return SafeNamespace("module json", {"loads": loads, "dumps": dumps})


def _datetime(guard: Guard) -> SafeNamespace:
    klass = _dt.datetime

    def strptime(text: str, fmt: str) -> _dt.datetime:
        # The format becomes a regular expression, compiled in one step.
        if isinstance(fmt, str) and len(fmt) > _MAX_FORMAT:
            guard.exceeded(f"a strptime() format longer than {_MAX_FORMAT} characters")
        return klass.strptime(text, fmt)

    datetime = SafeNamespace(
        "class datetime.datetime",
        {
            "now": klass.now,
            "today": klass.today,
            "fromtimestamp": klass.fromtimestamp,
            "fromisoformat": klass.fromisoformat,
            "fromordinal": klass.fromordinal,
            "strptime": strptime,
            "combine": klass.combine,
            "min": klass.min,
            "max": klass.max,
        },
        klass,
    )
    date = SafeNamespace(
        "class datetime.date",
        {
            "today": _dt.date.today,
            "fromtimestamp": _dt.date.fromtimestamp,
            "fromisoformat": _dt.date.fromisoformat,
            "fromordinal": _dt.date.fromordinal,
            "min": _dt.date.min,
            "max": _dt.date.max,
        },
        _dt.date,
    )
    time_ = SafeNamespace(
        "class datetime.time",
        {"fromisoformat": _dt.time.fromisoformat, "min": _dt.time.min, "max": _dt.time.max},
        _dt.time,
    )
    timedelta = SafeNamespace(
        "class datetime.timedelta",
        {"min": _dt.timedelta.min, "max": _dt.timedelta.max},
        _dt.timedelta,
    )
    timezone = SafeNamespace("class datetime.timezone", {"utc": _dt.UTC}, _dt.timezone)
    return SafeNamespace(
        "module datetime",
        {
            "datetime": datetime,
            "date": date,
            "time": time_,
            "timedelta": timedelta,
            "timezone": timezone,
            "MINYEAR": _dt.MINYEAR,
            "MAXYEAR": _dt.MAXYEAR,
        },
    )


def _time(guard: Guard) -> SafeNamespace:
    def strftime(fmt: str, *args: Any) -> str:
        if isinstance(fmt, str):
            guard.check_length(len(fmt) + 64 * fmt.count("%"), "time.strftime() output")
        return time.strftime(fmt, *args)

    return SafeNamespace(
        "module time",
        {
            "time": time.time,
            "time_ns": time.time_ns,
            "localtime": time.localtime,
            "gmtime": time.gmtime,
            "mktime": time.mktime,
            "strftime": strftime,
            "timezone": time.timezone,
        },
    )
