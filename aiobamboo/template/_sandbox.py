"""The expression sandbox: simpleeval, restricted and bounded.

Evaluation is done by ``simpleeval.EvalWithCompoundTypes`` (a maintained,
AST-walking evaluator that never calls ``eval``/``compile``). This module only
configures it and adds checks:

Before anything runs (:mod:`._analysis`, cached per expression):
    length limit, parse as one expression, nesting-depth limit, an allow-list
    of syntax (no lambda, walrus, f-string interpolation, ``*``/``**`` in calls,
    yield/await), no name starting with ``__``, no attribute starting with ``_``
    or on the dangerous list (``format``, ``format_map``, ``mro``, ``os``,
    ``sys``, ``modules``, ``popen*``, ``system``, frame and generator
    attributes such as ``gi_frame``, ``f_globals``, ``tb_frame``, ...), no
    ``x["__..."]`` subscript, no call to the original's shield words
    (``getattr``, ``type``, ``eval``, ``exec``, ``open``, ``breakpoint``,
    ``vars``, ``globals``, ...). Single-underscore names (``_loop``) and
    dangerous roots used as a base (``self.module``, ``os.path``) are refused
    unless the namespace itself defines them.

While it runs:
    names resolve to the namespace first, then to the safe functions ``bool int
    float str list tuple dict set abs round pow sum min max len range slice
    enumerate zip sorted reversed all any`` (wrapped, with limits); attributes
    of a mapping (a dict, or a ``Mapping`` a lazy variable returned) read its
    keys first (``${_system.task_id}`` is ``_system["task_id"]``); other
    attributes are read only from values of allow-listed types (``str``, ``int``,
    ``float``, ``bool``, ``list``, ``tuple``, ``dict``, ``set``, ``frozenset``,
    ``datetime``/``date``/``time``/``timedelta``, ``Decimal``) and only
    allow-listed, side-effect-free attributes (no ``append``, ``update``,
    ``pop``, ...); a method may only be called, never passed around; only the
    safe functions and such methods can be called at all.

Modules (off unless a :class:`Sandbox` is given ``modules``):
    ``datetime``, ``json``, ``math`` and ``time`` as fixed tables of their
    side-effect-free members (:mod:`._modules`), never the modules themselves.

Limits (:class:`SandboxLimits`), each failure an :class:`ExpressionLimitError`:
    expression length, nesting depth, the length of every string, bytes or
    container produced (``'a'*10**9`` and ``[0]*10**9`` are refused before
    they are built), the total size of everything produced, the bit length of
    integers (``10**10**10``, ``9**999999``, ``1 << 10**9``), the power
    exponent, ``range()`` length, the number of elements compared, hashed or
    turned into text by one operation (this defeats shared-reference bombs
    such as ``str([[0]*10**5]*10**5)``), width and precision in ``%``
    formatting and the padding methods (``center``, ``ljust``, ``zfill``,
    ...), comprehension iterations (simpleeval's own 10 000), evaluation steps,
    and a wall-clock deadline checked between steps. Every single step is
    bounded by the static limits, so no thread or signal is needed.

    A :class:`~aiobamboo.template.RenderBudget` adds the limits of a whole
    render: its deadline is checked between the steps of every fragment, and
    the render stops with :class:`~aiobamboo.template.SliceExpired` when its
    time slice on the event loop is used up.
"""

from __future__ import annotations

import ast
import datetime as _dt
import decimal
import itertools
import math
import operator
import re
import threading
import time
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import simpleeval

from aiobamboo.exceptions import ExpressionLimitError, TemplateError, UnsafeExpressionError

from ._analysis import Analysis, analyse, attribute_refusal
from ._budget import RenderBudget, SliceExpired
from ._modules import SafeNamespace, build_modules, check_module_names

__all__ = ["DEFAULT_SANDBOX", "SAFE_FUNCTION_NAMES", "Sandbox", "SandboxLimits"]


@dataclass(frozen=True, slots=True)
class SandboxLimits:
    """The bounds every evaluation runs within."""

    #: characters in one expression (the text inside ``${...}``)
    max_expression_length: int = 10_000
    #: levels of syntax nesting
    max_depth: int = 100
    #: length of any one string, bytes, list, tuple, dict or set produced
    max_string_length: int = 1_000_000
    #: sum of the lengths of everything produced by one evaluation
    max_total_allocation: int = 5_000_000
    #: elements one comparison, hash, or conversion to text may traverse
    max_weight: int = 1_000_000
    #: bits of any integer produced by ``*``, ``**``, ``<<`` or ``pow()``
    max_int_bits: int = 14_000
    #: largest exponent of ``**`` and ``pow()`` between integers
    max_power_exponent: int = 10_000
    #: items of one ``range()``
    max_range_length: int = 100_000
    #: syntax nodes evaluated (loops included)
    max_steps: int = 200_000
    #: wall-clock seconds of one expression, checked between steps
    timeout: float = 0.3
    #: characters of one rendered string (the text around and the text of
    #: every fragment in it); a whole ``${x}`` passes ``x`` through unchanged
    max_rendered_length: int = 1_000_000
    #: characters built by one whole render: for a node, its context
    #: variables, all its inputs or all its conditions. A value passed through
    #: whole counts from its second use on (each use is stored again).
    max_render_size: int = 4_000_000
    #: wall-clock seconds of rendering for one whole render, all fragments
    render_timeout: float = 1.0
    #: seconds of one node's rendering done on the event loop; the engine
    #: finishes a render that takes longer in a worker thread
    loop_slice: float = 0.02


class _Refused(Exception):
    """Internal: the sandbox refuses this (becomes UnsafeExpressionError)."""


class _Exceeded(Exception):
    """Internal: a limit is exceeded (becomes ExpressionLimitError)."""


SAFE_FUNCTION_NAMES = (
    "bool",
    "int",
    "float",
    "str",
    "list",
    "tuple",
    "dict",
    "set",
    "abs",
    "round",
    "pow",
    "sum",
    "min",
    "max",
    "len",
    "range",
    "slice",
    "enumerate",
    "zip",
    "sorted",
    "reversed",
    "all",
    "any",
)

_NUMBER_ATTRS = frozenset(
    {"bit_length", "bit_count", "conjugate", "denominator", "numerator", "real", "imag"}
)
_STR_ATTRS = frozenset(
    {
        "capitalize",
        "casefold",
        "center",
        "count",
        "encode",
        "endswith",
        "expandtabs",
        "find",
        "index",
        "isalnum",
        "isalpha",
        "isascii",
        "isdecimal",
        "isdigit",
        "isidentifier",
        "islower",
        "isnumeric",
        "isprintable",
        "isspace",
        "istitle",
        "isupper",
        "join",
        "ljust",
        "lower",
        "lstrip",
        "maketrans",
        "partition",
        "removeprefix",
        "removesuffix",
        "replace",
        "rfind",
        "rindex",
        "rjust",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "translate",
        "upper",
        "zfill",
    }
)
_SET_ATTRS = frozenset(
    {
        "copy",
        "difference",
        "intersection",
        "isdisjoint",
        "issubset",
        "issuperset",
        "symmetric_difference",
        "union",
    }
)
_DATE_ATTRS = frozenset(
    {
        "year",
        "month",
        "day",
        "weekday",
        "isoweekday",
        "isoformat",
        "isocalendar",
        "strftime",
        "toordinal",
        "ctime",
        "replace",
    }
)
_TIME_ATTRS = frozenset(
    {"hour", "minute", "second", "microsecond", "isoformat", "strftime", "replace", "tzname"}
)

#: Side-effect-free attributes per type (looked up along the value's MRO).
_ALLOWED_ATTRS: dict[type, frozenset[str]] = {
    str: _STR_ATTRS,
    bool: _NUMBER_ATTRS | {"as_integer_ratio"},
    int: _NUMBER_ATTRS | {"as_integer_ratio"},
    float: frozenset({"as_integer_ratio", "conjugate", "hex", "imag", "is_integer", "real"}),
    complex: frozenset({"conjugate", "imag", "real"}),
    list: frozenset({"copy", "count", "index"}),
    tuple: frozenset({"count", "index"}),
    dict: frozenset({"copy", "get", "items", "keys", "values"}),
    set: _SET_ATTRS,
    frozenset: _SET_ATTRS,
    _dt.datetime: _DATE_ATTRS | _TIME_ATTRS | {"date", "time", "timestamp", "utcoffset", "weekday"},
    _dt.date: _DATE_ATTRS,
    _dt.time: _TIME_ATTRS,
    _dt.timedelta: frozenset({"days", "seconds", "microseconds", "total_seconds"}),
    decimal.Decimal: frozenset(
        {
            "adjusted",
            "copy_abs",
            "copy_negate",
            "is_finite",
            "is_infinite",
            "is_nan",
            "is_signed",
            "is_zero",
            "quantize",
        }
    ),
}

_CONTAINERS: tuple[type, ...] = (
    list,
    tuple,
    set,
    frozenset,
    dict,
    type({}.keys()),
    type({}.values()),
    type({}.items()),
)

_UNSAFE_RESULTS = (
    types.ModuleType,
    types.FunctionType,
    types.MethodType,
    types.BuiltinFunctionType,
    types.FrameType,
    types.CodeType,
    types.TracebackType,
    types.GeneratorType,
    types.CoroutineType,
    types.AsyncGeneratorType,
    type,
    simpleeval.ModuleWrapper,
)

_CHARGED_NODES = frozenset(
    {
        ast.BinOp,
        ast.List,
        ast.Tuple,
        ast.Dict,
        ast.Set,
        ast.ListComp,
        ast.GeneratorExp,
        ast.DictComp,
        ast.JoinedStr,
    }
)

# One %-conversion: %[(key)][flags][width][.precision][length]type
_PERCENT_SPEC = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<prec>\*|\d*))?[hlL]?(?P<conv>.?)",
    re.DOTALL,
)
_INT_CONVERSIONS = frozenset("diouxXc")
_MAX_INT_DIGITS = 4_000
_MAX_MODPOW_BITS = 4_096
_SUBSCRIPTABLE = (str, bytes, bytearray, list, tuple, dict, range, Mapping, Sequence)


#: A key a mapping does not hold.
_ABSENT = object()


def _allowed_attrs(value: Any) -> frozenset[str] | None:
    for klass in type(value).__mro__:
        found = _ALLOWED_ATTRS.get(klass)
        if found is not None:
            return found
    return None


def _is_container(value: Any) -> bool:
    return isinstance(value, _CONTAINERS)


def _scalar_weight(value: Any) -> int | None:
    """The text-size estimate of a non-container, or None for containers."""
    if isinstance(value, str | bytes | bytearray):
        return len(value) + 2
    if isinstance(value, bool) or value is None:
        return 5
    if isinstance(value, int):
        return value.bit_length() * 3 // 10 + 2
    if isinstance(value, float):
        return 24
    if isinstance(value, decimal.Decimal):
        return len(value.as_tuple().digits) + 12
    if isinstance(value, _CONTAINERS):
        return None
    return 32


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    return list(value)


class _SafeFunction:
    """A builtin made available to expressions, with its limits applied."""

    __slots__ = ("_evaluator", "_impl", "name")

    def __init__(self, name: str, impl: Callable[..., Any], evaluator: _Evaluator) -> None:
        self.name = name
        self._impl = impl
        self._evaluator = evaluator

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._evaluator.tick()
        return self._impl(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<built-in function {self.name}>"


class _Evaluator(simpleeval.EvalWithCompoundTypes):  # type: ignore[misc]
    """One evaluation: simpleeval plus the checks of this module."""

    def __init__(self, limits: SandboxLimits, modules: tuple[str, ...] = ()) -> None:
        super().__init__(operators=self._operators(), functions={}, names={})
        self.ATTR_INDEX_FALLBACK = False
        self._namespace: Mapping[str, Any] = {}
        self._limits = limits
        self._steps = 0
        self._deadline = 0.0
        self._budget: RenderBudget | None = None
        self._allocated = 0
        self._weights: dict[int, tuple[Any, int]] = {}
        self.busy = False
        impls: dict[str, Callable[..., Any]] = {
            "bool": bool,
            "int": self._fn_int,
            "float": float,
            "str": self._fn_str,
            "list": self._fn_list,
            "tuple": self._fn_tuple,
            "dict": self._fn_dict,
            "set": self._fn_set,
            "abs": abs,
            "round": self._fn_round,
            "pow": self._fn_pow,
            "sum": self._fn_sum,
            "min": self._fn_min,
            "max": self._fn_max,
            "len": len,
            "range": self._fn_range,
            "slice": slice,
            "enumerate": enumerate,
            "zip": zip,
            "sorted": self._fn_sorted,
            "reversed": reversed,
            "all": all,
            "any": any,
        }
        self.functions = {name: _SafeFunction(name, fn, self) for name, fn in impls.items()}
        self.modules: dict[str, SafeNamespace] = build_modules(modules, self)

    # -- bookkeeping -----------------------------------------------------

    def start(self, namespace: Mapping[str, Any], budget: RenderBudget | None) -> None:
        """Prepare for one evaluation (evaluators are reused, one per thread)."""
        self.busy = True
        self._namespace = namespace
        self._steps = 0
        self._allocated = 0
        self._budget = budget
        now = time.monotonic()
        self._deadline = now + self._limits.timeout
        if budget is not None:
            # One comparison per check: the earliest of the three deadlines.
            self._deadline = min(self._deadline, budget.deadline, budget.slice_deadline)
            self._check_time(now)

    def finish(self) -> None:
        self._namespace = {}
        self._weights.clear()
        self._budget = None
        self.busy = False

    def _check_time(self, now: float) -> None:
        if now <= self._deadline:
            return
        if self._budget is not None:
            reason = self._budget.expired(now)
            if reason is not None:
                raise _Exceeded(reason)
        raise _Exceeded(f"evaluation took longer than {self._limits.timeout} s")

    def tick(self) -> None:
        self._steps += 1
        if self._steps > self._limits.max_steps:
            raise _Exceeded(f"more than {self._limits.max_steps} evaluation steps")
        if not self._steps & 63:
            self._check_time(time.monotonic())

    def _charge(self, value: Any) -> None:
        if isinstance(value, str | bytes | bytearray | list | tuple | dict | set | frozenset):
            size = len(value)
            if size > self._limits.max_string_length:
                raise _Exceeded(
                    f"a value of length {size} exceeds the limit of "
                    f"{self._limits.max_string_length}"
                )
            self._allocated += size
            if self._allocated > self._limits.max_total_allocation:
                raise _Exceeded(
                    f"the expression produces more than {self._limits.max_total_allocation} "
                    "items in total"
                )

    def _check_length(self, size: int, what: str) -> None:
        if size > self._limits.max_string_length:
            raise _Exceeded(
                f"{what} would have length {size}, the limit is {self._limits.max_string_length}"
            )

    # -- the checks module members apply (see _modules.Guard) ---------------

    def check_int(self, value: int, what: str) -> None:
        self._check_bits(value.bit_length(), what)

    def check_decimal(self, value: decimal.Decimal) -> None:
        self._check_decimal(value)

    def check_length(self, size: int, what: str) -> None:
        self._check_length(size, what)

    def check_weight(self, *values: Any) -> None:
        self._check_weight(*values)

    def exceeded(self, reason: str) -> NoReturn:
        raise _Exceeded(reason)

    def _check_bits(self, bits: int, what: str) -> None:
        if bits > self._limits.max_int_bits:
            raise _Exceeded(
                f"{what} would have about {bits} bits, the limit is {self._limits.max_int_bits}"
            )

    def weight(self, value: Any) -> int:
        """Elements (with repeats) and characters in ``value``, capped just above the limit.

        Iterative and memoised per evaluation (the memo keeps the objects alive,
        so ids are never reused); a cycle counts as over the limit.
        """
        cap = self._limits.max_weight
        scalar = _scalar_weight(value)
        if scalar is not None:
            return scalar
        memo = self._weights
        hit = memo.get(id(value))
        if hit is not None:
            return hit[1]
        over = cap + 1
        frames: list[list[Any]] = [[value, iter(_children(value)), 2]]
        active = {id(value)}
        visited = 0
        while frames:
            frame = frames[-1]
            descended = False
            for child in frame[1]:
                visited += 1
                if not visited & 4095:
                    self._check_time(time.monotonic())
                size = _scalar_weight(child)
                if size is None:
                    cached = memo.get(id(child))
                    if cached is not None:
                        size = cached[1]
                    elif id(child) in active:
                        size = over
                    else:
                        frames.append([child, iter(_children(child)), 2])
                        active.add(id(child))
                        descended = True
                        break
                frame[2] += size + 2
                if frame[2] > cap:
                    for pending in frames:
                        memo[id(pending[0])] = (pending[0], over)
                    return over
            if descended:
                continue
            frames.pop()
            active.discard(id(frame[0]))
            memo[id(frame[0])] = (frame[0], frame[2])
            if not frames:
                return int(frame[2])
            parent = frames[-1]
            parent[2] += frame[2] + 2
            if parent[2] > cap:
                for pending in frames:
                    memo[id(pending[0])] = (pending[0], over)
                return over
        return over  # pragma: no cover - the loop always returns

    def _check_weight(self, *values: Any) -> None:
        total = 0
        for value in values:
            if _is_container(value):
                total += self.weight(value)
        if total > self._limits.max_weight:
            raise _Exceeded(
                f"the operands hold more than {self._limits.max_weight} elements "
                "(counting repeated references)"
            )

    def to_text(self, value: Any) -> str:
        """``str(value)`` as the original's Mako renders it, within the limits."""
        if type(value) is str:
            return value
        size = _scalar_weight(value)
        if size is None:
            size = self.weight(value)
        self._check_length(size, "the text of the value")
        text = str(value)
        self._charge(text)
        return text

    # -- simpleeval hooks --------------------------------------------------

    def _eval(self, node: ast.AST) -> Any:
        self.tick()
        handler = self.nodes.get(type(node))
        if handler is None:
            raise _Refused(f"{type(node).__name__} is not allowed")
        result = handler(node)
        if isinstance(result, _UNSAFE_RESULTS):
            raise _Refused(f"a {type(result).__name__} object cannot be used in a template")
        if type(node) in _CHARGED_NODES:
            self._charge(result)
        return result

    def _eval_list(self, node: ast.List) -> list[Any]:
        # ``[*x, *x, ...]`` is charged before it is built: the length of each
        # starred operand is known (or bounded) before any item is copied.
        parts: list[tuple[bool, Any]] = []
        length = 0
        for item in node.elts:
            if isinstance(item, ast.Starred):
                operand = self._eval(item.value)
                if not hasattr(operand, "__len__"):
                    room = self._limits.max_string_length - length + 1
                    operand = list(itertools.islice(operand, max(room, 0)))
                length += len(operand)
                parts.append((True, operand))
            else:
                length += 1
                parts.append((False, self._eval(item)))
            self._check_length(length, "the list display")
            if self._allocated + length > self._limits.max_total_allocation:
                raise _Exceeded(
                    f"the expression produces more than {self._limits.max_total_allocation} "
                    "items in total"
                )
        result: list[Any] = []
        for starred, value in parts:
            if starred:
                result.extend(value)
            else:
                result.append(value)
        return result

    def _eval_name(self, node: ast.Name) -> Any:
        name = node.id
        if name.startswith("__"):
            raise _Refused(f"name {name!r} starts with a double underscore")
        if name in self._namespace:
            return self._namespace[name]
        if name.startswith("_"):
            raise _Refused(f"name {name!r} starts with an underscore and is not in the context")
        function = self.functions.get(name)
        if function is not None:
            return function
        module = self.modules.get(name)
        if module is not None:
            return module
        raise simpleeval.NameNotDefined(name, self.expr)

    def _attribute(self, value: Any, attr: str) -> Any:
        reason = attribute_refusal(attr)
        if reason is not None:
            raise _Refused(reason)
        if isinstance(value, SafeNamespace):
            return value.member(attr)
        allowed = _allowed_attrs(value)
        type_name = type(value).__name__
        if allowed is None:
            raise _Refused(f"attribute access is not allowed on {type_name} values (.{attr})")
        if attr not in allowed:
            if hasattr(type(value), attr):
                raise _Refused(f"'.{attr}' is not allowed on {type_name} values")
            raise AttributeError(f"{type_name!r} object has no attribute {attr!r}")
        return getattr(value, attr)

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        owner = self._eval(node.value)
        if isinstance(owner, Mapping):
            found = self._mapping_key(owner, node.attr)
            if found is not _ABSENT:
                return found
        result = self._attribute(owner, node.attr)
        if callable(result):
            raise _Refused(f"method '.{node.attr}' can only be called, not used as a value")
        return result

    def _mapping_key(self, owner: Mapping[Any, Any], attr: str) -> Any:
        """``owner[attr]`` for ``owner.attr``: templates of the bamboo products read
        context data (``${_system.task_id}``) with attribute syntax. Only keys are
        read this way, never Python attributes; a dict's own methods are still
        reached for calls and names its keys do not hold."""
        reason = attribute_refusal(attr)
        if reason is not None:
            raise _Refused(reason)
        self.tick()
        if attr in owner:
            return owner[attr]
        if _allowed_attrs(owner) is None:
            raise AttributeError(f"{type(owner).__name__!r} mapping has no key {attr!r}")
        return _ABSENT

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self._eval(node.value)
        if not isinstance(container, _SUBSCRIPTABLE):
            raise _Refused(f"subscripts are not allowed on {type(container).__name__} values")
        key = self._eval(node.slice)
        if isinstance(key, str) and key.startswith("__"):
            raise _Refused(f"subscript {key!r} starts with a double underscore")
        self._check_weight(key)
        result = container[key]
        if isinstance(key, slice):
            self._charge(result)
        return result

    def _eval_call(self, node: ast.Call) -> Any:
        func = node.func
        if isinstance(func, ast.Attribute):
            owner = self._eval(func.value)
            method = self._attribute(owner, func.attr)
            args = [self._eval(arg) for arg in node.args]
            kwargs = {str(kw.arg): self._eval(kw.value) for kw in node.keywords}
            if isinstance(method, SafeNamespace):
                # A class of an allowed module: calling it constructs a value.
                method = method.constructor
            if not callable(method):
                raise TypeError(f"'.{func.attr}' is not callable")
            self._check_weight(*args, *kwargs.values())
            if isinstance(owner, list | tuple) and func.attr in ("count", "index"):
                self._check_weight(owner)
            if isinstance(owner, str):
                if func.attr == "join":
                    result = self._join(owner, args, kwargs)
                    self._charge(result)
                    return result
                self._guard_str_method(owner, func.attr, args, kwargs)
            elif func.attr == "strftime" and args and isinstance(args[0], str):
                fmt = args[0]
                self._check_length(len(fmt) + 64 * fmt.count("%"), "strftime() output")
            self.tick()
            result = method(*args, **kwargs)
            self._charge(result)
            return result
        if isinstance(func, ast.Name):
            function = self.functions.get(func.id)
            if function is None:
                raise simpleeval.FunctionNotDefined(func.id, self.expr)
            args = [self._eval(arg) for arg in node.args]
            kwargs = {str(kw.arg): self._eval(kw.value) for kw in node.keywords}
            return function(*args, **kwargs)
        raise _Refused("only named functions and methods can be called")

    # -- guarded methods ---------------------------------------------------

    def _guard_str_method(
        self, text: str, name: str, args: list[Any], kwargs: dict[str, Any]
    ) -> None:
        if name in ("center", "ljust", "rjust", "zfill"):
            width = args[0] if args else kwargs.get("width")
            if isinstance(width, int):
                self._check_length(width, f"str.{name}()")
        elif name == "expandtabs":
            tabsize = args[0] if args else kwargs.get("tabsize", 8)
            if isinstance(tabsize, int) and tabsize > 0:
                self._check_length(len(text) + text.count("\t") * tabsize, "str.expandtabs()")
        elif name == "replace" and len(args) >= 2:
            old, new = args[0], args[1]
            if isinstance(old, str) and isinstance(new, str):
                hits = len(text) + 1 if old == "" else text.count(old)
                count = args[2] if len(args) > 2 else kwargs.get("count", -1)
                if isinstance(count, int) and count >= 0:
                    hits = min(hits, count)
                self._check_length(len(text) + hits * len(new), "str.replace()")
        elif name == "translate" and args:
            table = args[0]
            values: Any = table.values() if isinstance(table, dict) else table
            longest = 1
            if isinstance(values, list | tuple | type({}.values())):
                self._check_weight(table)
                for item in values:
                    if isinstance(item, str):
                        longest = max(longest, len(item))
            self._check_length(len(text) * longest, "str.translate()")

    def _join(self, separator: str, args: list[Any], kwargs: dict[str, Any]) -> str:
        if len(args) != 1 or kwargs:
            raise TypeError("str.join() takes exactly one argument")
        items = list(args[0])
        self._charge(items)
        if all(isinstance(item, str) for item in items):
            total = sum(len(item) for item in items) + len(separator) * max(len(items) - 1, 0)
            self._check_length(total, "str.join()")
        return separator.join(items)

    # -- operators -------------------------------------------------------

    def _operators(self) -> dict[type[ast.AST], Callable[..., Any]]:
        def compared(fn: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
            def compare(left: Any, right: Any) -> Any:
                if _is_container(left) and _is_container(right):
                    self._check_weight(left, right)
                return fn(left, right)

            return compare

        return {
            ast.Add: self._op_add,
            ast.Sub: compared(operator.sub),
            ast.Mult: self._op_mult,
            ast.Div: operator.truediv,
            ast.FloorDiv: operator.floordiv,
            ast.Mod: self._op_mod,
            ast.Pow: self._op_pow,
            ast.LShift: self._op_lshift,
            ast.RShift: operator.rshift,
            ast.BitOr: compared(operator.or_),
            ast.BitXor: compared(operator.xor),
            ast.BitAnd: compared(operator.and_),
            ast.Eq: compared(operator.eq),
            ast.NotEq: compared(operator.ne),
            ast.Lt: compared(operator.lt),
            ast.LtE: compared(operator.le),
            ast.Gt: compared(operator.gt),
            ast.GtE: compared(operator.ge),
            ast.In: compared(lambda needle, haystack: needle in haystack),
            ast.NotIn: compared(lambda needle, haystack: needle not in haystack),
            ast.Is: operator.is_,
            ast.IsNot: operator.is_not,
            ast.Not: operator.not_,
            ast.USub: operator.neg,
            ast.UAdd: operator.pos,
            ast.Invert: operator.invert,
        }

    def _op_add(self, left: Any, right: Any) -> Any:
        if hasattr(left, "__len__") and hasattr(right, "__len__"):
            self._check_length(len(left) + len(right), "the sum")
        return left + right

    def _op_mult(self, left: Any, right: Any) -> Any:
        if isinstance(left, int) and isinstance(right, int):
            self._check_bits(left.bit_length() + right.bit_length(), "the product")
        elif isinstance(right, int) and hasattr(left, "__len__"):
            self._check_length(len(left) * right, "the repetition")
        elif isinstance(left, int) and hasattr(right, "__len__"):
            self._check_length(len(right) * left, "the repetition")
        return left * right

    def _op_pow(self, base: Any, exponent: Any) -> Any:
        if isinstance(base, int) and isinstance(exponent, int):
            if abs(exponent) > self._limits.max_power_exponent:
                raise _Exceeded(
                    f"exponent {exponent} exceeds the limit of {self._limits.max_power_exponent}"
                )
            if exponent > 0 and abs(base) > 1:
                self._check_bits(math.ceil(math.log2(abs(base)) * exponent), "the power")
        return base**exponent

    def _op_lshift(self, left: Any, right: Any) -> Any:
        if isinstance(left, int) and isinstance(right, int) and right > 0:
            self._check_bits(left.bit_length() + right, "the shift")
        return left << right

    def _op_mod(self, left: Any, right: Any) -> Any:
        if isinstance(left, str | bytes):
            fmt = left if isinstance(left, str) else left.decode("latin-1")
            self._check_percent(fmt, right)
        return left % right

    def _check_percent(self, fmt: str, args: Any) -> None:
        limit = self._limits.max_string_length
        mapping = args if isinstance(args, Mapping) else None
        sequence = args if isinstance(args, tuple) else (args,)
        index = 0
        total = len(fmt)
        for match in _PERCENT_SPEC.finditer(fmt):
            conversion = match["conv"]
            if conversion == "%":
                continue
            width, precision = match["width"] or "", match["prec"] or ""
            if width == "*" or precision == "*":
                raise _Exceeded("'*' width or precision in % formatting is not supported")
            width_n, precision_n = int(width or 0), int(precision or 0)
            self._check_length(max(width_n, precision_n), "a % conversion")
            key = match["key"]
            if key is not None and mapping is not None:
                argument = mapping.get(key)
            else:
                argument = sequence[index] if index < len(sequence) else None
                index += 1
            total += width_n + precision_n + self._format_weight(argument, conversion)
            if total > limit:
                raise _Exceeded(f"% formatting would produce more than {limit} characters")

    def _format_weight(self, value: Any, conversion: str) -> int:
        if isinstance(value, float):
            return 330
        if isinstance(value, decimal.Decimal):
            if conversion in _INT_CONVERSIONS and value.is_finite():
                self._check_decimal(value)
            return 330 + len(value.as_tuple().digits)
        scalar = _scalar_weight(value)
        return self.weight(value) if scalar is None else scalar

    def _check_decimal(self, value: decimal.Decimal) -> None:
        if value.is_finite() and value.adjusted() > _MAX_INT_DIGITS:
            raise _Exceeded(f"converting {value} to an integer exceeds the limit")

    # -- safe functions ------------------------------------------------------

    def _fn_int(self, *args: Any, **kwargs: Any) -> int:
        if args and isinstance(args[0], decimal.Decimal):
            self._check_decimal(args[0])
        return int(*args, **kwargs)

    def _fn_round(self, number: Any, ndigits: Any = None) -> Any:
        if isinstance(ndigits, int) and abs(ndigits) > 1_000:
            raise _Exceeded(f"round() to {ndigits} digits exceeds the limit of 1000")
        if isinstance(number, decimal.Decimal):
            self._check_decimal(number)
        return round(number, ndigits)

    def _fn_pow(self, base: Any, exp: Any, mod: Any = None) -> Any:
        if mod is None:
            return self._op_pow(base, exp)
        # Modular exponentiation costs about bits(exp) * bits(mod)**1.6.
        for value in (base, exp, mod):
            if isinstance(value, int) and value.bit_length() > _MAX_MODPOW_BITS:
                raise _Exceeded(
                    f"pow() with a modulus takes integers of at most {_MAX_MODPOW_BITS} bits"
                )
        return pow(base, exp, mod)

    def _fn_str(self, *args: Any, **kwargs: Any) -> str:
        if len(args) == 1 and not kwargs:
            return self.to_text(args[0])
        if args and not isinstance(args[0], bytes | bytearray):
            raise TypeError("str() takes one argument in templates, or bytes and an encoding")
        text = str(*args, **kwargs)
        self._charge(text)
        return text

    def _materialise(self, iterable: Any) -> list[Any]:
        items = list(iterable)
        self._charge(items)
        return items

    def _fn_list(self, iterable: Any = ()) -> list[Any]:
        return self._materialise(iterable)

    def _fn_tuple(self, iterable: Any = ()) -> tuple[Any, ...]:
        return tuple(self._materialise(iterable))

    def _fn_set(self, iterable: Any = ()) -> set[Any]:
        items = self._materialise(iterable)
        self._check_weight(items)
        result = set(items)
        self._charge(result)
        return result

    def _fn_dict(self, *args: Any, **kwargs: Any) -> dict[Any, Any]:
        if args and not isinstance(args[0], dict):
            args = (self._materialise(args[0]), *args[1:])
        self._check_weight(*args, *kwargs.values())
        result = dict(*args, **kwargs)
        self._charge(result)
        return result

    def _check_key(self, key: Any) -> None:
        if key is not None and not isinstance(key, _SafeFunction):
            raise _Refused("key= must be one of the safe functions")

    def _fn_sorted(self, iterable: Any, *, key: Any = None, reverse: bool = False) -> list[Any]:
        self._check_key(key)
        items = self._materialise(iterable)
        self._check_weight(items)
        return sorted(items, key=key, reverse=reverse)

    def _extreme(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Any) -> Any:
        self._check_key(kwargs.get("key"))
        if len(args) == 1:
            args = (self._materialise(args[0]),)
        self._check_weight(*args)
        return fn(*args, **kwargs)

    def _fn_min(self, *args: Any, **kwargs: Any) -> Any:
        return self._extreme(min, args, kwargs)

    def _fn_max(self, *args: Any, **kwargs: Any) -> Any:
        return self._extreme(max, args, kwargs)

    def _fn_sum(self, iterable: Any, start: Any = 0) -> Any:
        # A numeric start makes sum() fail fast on sequences: no quadratic
        # list or tuple concatenation.
        if not isinstance(start, int | float | complex | decimal.Decimal):
            raise TypeError("sum() in templates adds numbers only")
        return sum(iterable, start)

    def _fn_range(self, *args: Any) -> range:
        result = range(*args)
        try:
            size = len(result)
        except OverflowError:
            size = self._limits.max_range_length + 1
        if size > self._limits.max_range_length:
            raise _Exceeded(
                f"range() of {size} items exceeds the limit of {self._limits.max_range_length}"
            )
        return result


def _label(text: str) -> str:
    return text if len(text) <= 200 else f"{text[:200]}...({len(text)} characters)"


class Sandbox:
    """Evaluates one ``${...}`` expression against a namespace, safely.

    :meth:`evaluate` raises :class:`UnsafeExpressionError` when the expression
    is refused, :class:`ExpressionLimitError` when it exceeds a limit, and a
    plain :class:`TemplateError` (the cause chained) for everything an ordinary
    Python evaluation would fail on: syntax errors, unknown names, and runtime
    errors such as ``ZeroDivisionError`` or ``TypeError``.
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        *,
        modules: Iterable[str] | Mapping[str, str] = (),
    ) -> None:
        self._limits = limits if limits is not None else SandboxLimits()
        self._modules = check_module_names(modules)
        self._local = threading.local()

    def _evaluator(self) -> _Evaluator:
        evaluator: _Evaluator | None = getattr(self._local, "evaluator", None)
        if evaluator is None or evaluator.busy:
            evaluator = _Evaluator(self._limits, self._modules)
            self._local.evaluator = evaluator
        return evaluator

    @property
    def limits(self) -> SandboxLimits:
        return self._limits

    @property
    def modules(self) -> tuple[str, ...]:
        """The modules expressions may use (``datetime``, ``json``, ``math``, ``time``)."""
        return self._modules

    def analyse(self, expression: str) -> Analysis:
        """The cached static analysis of ``expression`` (surrounding blanks ignored)."""
        return analyse(
            expression.strip(), self._limits.max_expression_length, self._limits.max_depth
        )

    def evaluate(
        self,
        expression: str,
        namespace: Mapping[str, Any],
        *,
        label: str | None = None,
        budget: RenderBudget | None = None,
    ) -> Any:
        """The value of ``expression``; ``label`` names it in error messages.

        With a ``budget``, its deadline applies too, and :class:`SliceExpired`
        is raised when its time slice runs out.
        """
        return self._run(expression, namespace, label, budget, as_text=False)

    def evaluate_text(
        self,
        expression: str,
        namespace: Mapping[str, Any],
        *,
        label: str | None = None,
        budget: RenderBudget | None = None,
    ) -> str:
        """The value of ``expression`` as text, as a fragment in a string renders."""
        result: str = self._run(expression, namespace, label, budget, as_text=True)
        return result

    def _run(
        self,
        expression: str,
        namespace: Mapping[str, Any],
        label: str | None,
        budget: RenderBudget | None,
        *,
        as_text: bool,
    ) -> Any:
        shown = _label(label if label is not None else expression)
        analysis = self.analyse(expression)
        if analysis.limit is not None:
            raise ExpressionLimitError(f"{shown} exceeds a sandbox limit: {analysis.limit}")
        if analysis.syntax_error is not None or analysis.tree is None:
            raise TemplateError(f"{shown} cannot be evaluated: {analysis.syntax_error}")
        if analysis.unsafe is not None:
            _refuse(shown, analysis.unsafe)
        for name in sorted(analysis.guarded_names):
            if name not in namespace:
                _refuse(shown, f"name {name!r} is not allowed unless the context defines it")
        evaluator = self._evaluator()
        try:
            evaluator.start(namespace, budget)
            value = evaluator.eval(analysis.expression, previously_parsed=analysis.tree)
            return evaluator.to_text(value) if as_text else value
        except SliceExpired:
            raise
        except _Refused as exc:
            _refuse(shown, str(exc))
        except (_Exceeded, simpleeval.IterableTooLong, simpleeval.NumberTooHigh) as exc:
            raise ExpressionLimitError(f"{shown} exceeds a sandbox limit: {exc}") from None
        except simpleeval.FeatureNotAvailable as exc:
            _refuse(shown, str(exc))
        except (RecursionError, MemoryError) as exc:
            raise ExpressionLimitError(
                f"{shown} exceeds a sandbox limit: {type(exc).__name__}"
            ) from None
        except Exception as exc:
            raise TemplateError(
                f"{shown} cannot be evaluated: {type(exc).__name__}: {exc}"
            ) from exc
        finally:
            evaluator.finish()


def _refuse(shown: str, reason: str) -> NoReturn:
    raise UnsafeExpressionError(f"{shown} is refused by the sandbox: {reason}") from None


DEFAULT_SANDBOX = Sandbox()
