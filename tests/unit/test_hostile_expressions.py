"""Hostile ``${...}`` expressions: refused or bounded, fast, and nothing runs.

Each expression is rendered through :func:`aiobamboo.template.render`, which
must raise :class:`UnsafeExpressionError` (refused), raise
:class:`ExpressionLimitError` (too big), or leave the text literally in place
(inert: not an expression, or no fragment at all because of braces). While it
runs, an audit hook watches for process, file, code and frame events, and the
namespace holds sentinels (a spy object, a side-effect function, a list) that
must stay untouched. Every case must finish within a second.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from aiobamboo.exceptions import ExpressionLimitError, TemplateError, UnsafeExpressionError
from aiobamboo.template import MODULE_NAMES, Sandbox, render

UNSAFE = "unsafe"
LIMIT = "limit"
LITERAL = "literal"

_WATCHED_EVENTS = frozenset(
    {
        "os.system",
        "os.exec",
        "os.posix_spawn",
        "os.spawn",
        "os.fork",
        "os.forkpty",
        "os.kill",
        "os.killpg",
        "os.remove",
        "os.listdir",
        "os.scandir",
        "subprocess.Popen",
        "pty.spawn",
        "shutil.rmtree",
        "open",
        "exec",
        "builtins.breakpoint",
        "builtins.input",
        "ctypes.dlopen",
        "ctypes.dlsym",
        "object.__getattr__",
        "object.__setattr__",
        "object.__delattr__",
        "sys._getframe",
        "sys.settrace",
        "sys.setprofile",
        "code.__new__",
        "function.__new__",
        "socket.connect",
        "socket.getaddrinfo",
        "urllib.Request",
    }
)
_recording = False
_events: list[tuple[str, tuple[Any, ...]]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if _recording and event in _WATCHED_EVENTS:
        _events.append((event, args))


sys.addaudithook(_audit)


class Spy:
    """Records any use: attribute access, calls, conversions, comparisons."""

    def __init__(self) -> None:
        self.__dict__["touched"] = []

    def __getattr__(self, name: str) -> Any:
        self.__dict__["touched"].append(("getattr", name))
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.__dict__["touched"].append(("call", args))
        return self

    def __str__(self) -> str:
        self.__dict__["touched"].append(("str",))
        return "spy"

    def __getitem__(self, key: Any) -> Any:
        self.__dict__["touched"].append(("getitem", key))
        return self


@pytest.fixture(params=["no modules", "modules"])
def sandbox(request: pytest.FixtureRequest) -> Sandbox:
    """Every case runs with the template modules off (the default) and all on."""
    return Sandbox(modules=MODULE_NAMES) if request.param == "modules" else Sandbox()


@pytest.fixture
def namespace(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    # The warning for a literal fragment would walk frames (logging.findCaller),
    # which the audit hook reports; silence it here (test_template checks it).
    monkeypatch.setattr(logging.getLogger("aiobamboo.template"), "disabled", True)
    fired: list[str] = []

    def side_effect(*_: Any) -> type[str]:
        fired.append("side_effect")
        return str

    ns: dict[str, Any] = {
        "x": 1,
        "fmt": "{0.__class__.__mro__}",
        "d": {"k": 1},
        "items": [1, 2, 3],
        "big": "a" * 100_000,
        "spy": Spy(),
        "side_effect": side_effect,
        "datetime": Spy(),  # even a context object named like a module stays inert
    }
    yield ns
    assert fired == []
    assert ns["spy"].__dict__["touched"] == []
    assert ns["datetime"].__dict__["touched"] == []
    assert ns["items"] == [1, 2, 3]
    assert ns["d"] == {"k": 1}


DEEP_PARENS = "(" * 500 + "1" + ")" * 500
DEEP_BRACKETS = "[" * 150 + "]" * 150
DEEP_UNARY = "-" * 150 + "1"
LONG_CHAIN = "+".join(["x"] * 3000)
VERY_LONG = "x" * 20_000
MANY_GENERATORS = "[1 for a in items " + "for b in items " * 600 + "]"

HOSTILE: list[tuple[str, str]] = [
    # dunder walks
    ("${().__class__.__bases__[0].__subclasses__()}", UNSAFE),
    ('${"".__class__.__mro__[-1].__subclasses__()[127].__init__.__globals__}', UNSAFE),
    ("${[].__class__}", UNSAFE),
    ("${x.__init__.__globals__}", UNSAFE),
    ("${().__reduce_ex__(2)}", UNSAFE),
    ("${[c for c in ().__class__.__base__.__subclasses__()]}", UNSAFE),
    ("${str.__dict__}", UNSAFE),
    ("${len.__self__}", UNSAFE),
    ("${__builtins__}", UNSAFE),
    ("${__builtins__.open('/etc/passwd')}", UNSAFE),
    ("${''.mro()}", UNSAFE),
    ("${str.mro()}", UNSAFE),
    # imports and forbidden builtins
    ("${__import__('os').system('id')}", UNSAFE),
    ("${getattr('', '__cl' + 'ass__')}", UNSAFE),
    ('${getattr("", dir(0)[0][0] + dir(0)[0][0] + "class" + dir(0)[0][0] + dir(0)[0][0])}', UNSAFE),
    ("${type(x)}", UNSAFE),
    ("${type(x).__subclasses__(type(x))}", UNSAFE),
    ("${vars()}", UNSAFE),
    ("${globals()}", UNSAFE),
    ("${locals()}", UNSAFE),
    ("${dir()}", UNSAFE),
    ("${open('/etc/passwd').read()}", UNSAFE),
    ("${compile('1', 'f', 'eval')}", UNSAFE),
    ("${eval('1+1')}", UNSAFE),
    ("${exec('import os')}", UNSAFE),
    ("${breakpoint()}", UNSAFE),
    ("${input()}", UNSAFE),
    ("${exit()}", UNSAFE),
    ("${print(x)}", UNSAFE),
    ("${setattr(x, 'y', 1)}", UNSAFE),
    ("${object()}", UNSAFE),
    ("${iter(items)}", UNSAFE),
    # format string lookups
    ("${fmt.format(x)}", UNSAFE),
    ("${fmt.format_map(d)}", UNSAFE),
    ('${"%s".format}', UNSAFE),
    ('${"{0.__class__}".format(x)}', LITERAL),  # braces: never a fragment
    ('${"{a.__class__}".format_map(d)}', LITERAL),
    ("${f'{x.__class__}'}", LITERAL),
    ("${f'{x!r:>{10**9}}'}", LITERAL),
    # subscripts
    ('${x["__class__"]}', UNSAFE),
    ('${d["__cl" + "ass__"]}', UNSAFE),
    ("${d['__globals__']}", UNSAFE),
    # generator and frame escapes
    ("${(i for i in ()).gi_frame.f_globals}", UNSAFE),
    ("${(i for i in ()).gi_frame}", UNSAFE),
    ("${items.gi_code}", UNSAFE),
    ("${x.f_back}", UNSAFE),
    ("${x.tb_frame}", UNSAFE),
    ("${x.cr_frame}", UNSAFE),
    # namespace and module chains
    ("${self.module.cache.util.os.popen('id').read()}", UNSAFE),
    ("${context.lookup}", UNSAFE),
    ("${local.something}", UNSAFE),
    ("${caller.body()}", UNSAFE),
    ("${os.path}", UNSAFE),
    ("${os.path.os.popen('id')}", UNSAFE),
    ("${sys.modules['os']}", UNSAFE),
    ("${datetime.sys.modules['os']}", UNSAFE),
    ("${re.enum.sys.modules['os']}", UNSAFE),
    ("${datetime.datetime.now()}", UNSAFE),  # no attribute access on unknown object types
    ("${spy.fire()}", UNSAFE),
    ("${spy.__class__}", UNSAFE),
    ("${spy['x']}", UNSAFE),
    ("${spy[0:1]}", UNSAFE),
    ("${sorted(items, key=spy)}", UNSAFE),
    ("${max(items, key=side_effect)}", UNSAFE),
    ("${side_effect()}", LITERAL),  # only safe functions can be called: unknown function
    ("${'x' | (side_effect() or str)}", LITERAL),  # the original's filter attack
    ("${_secret}", UNSAFE),
    ("${x[0]()}", UNSAFE),
    # syntax the sandbox refuses
    ("${lambda: 1}", UNSAFE),
    ("${(lambda: __import__('os'))()}", UNSAFE),
    ("${(y := 1)}", UNSAFE),
    ("${[y := 1, y]}", UNSAFE),
    ("${len(*items)}", UNSAFE),
    ("${(yield)}", UNSAFE),
    ("${items @ items}", UNSAFE),
    # side effects
    ("${items.append(4)}", UNSAFE),
    ("${items.extend(items)}", UNSAFE),
    ("${d.update(k=2)}", UNSAFE),
    ("${d.setdefault('z', 1)}", UNSAFE),
    ("${items.sort()}", UNSAFE),
    ("${(1).to_bytes(10**9, 'big')}", UNSAFE),
    ("${'a'.encode().decode()}", UNSAFE),
    ("${d.keys}", UNSAFE),
    # statements are not expressions
    ("${import os}", LITERAL),
    ("${while True: pass}", LITERAL),
    ("${x = 1}", LITERAL),
    ("${a; b}", LITERAL),
    # arithmetic bombs
    ("${10**10**10}", LIMIT),
    ("${9**999999}", LIMIT),
    ("${pow(9, 999999)}", LIMIT),
    ("${1 << 10**9}", LIMIT),
    ("${[[y*y for y in [z*z]] for z in [2**7000]]}", LIMIT),
    ("${round(10**3000, -10**9)}", LIMIT),
    ("${pow(3**8800, 3**8800, 3**8800 + 1)}", LIMIT),
    # size bombs
    ("${'a'*10**9}", LIMIT),
    ("${[0]*10**9}", LIMIT),
    ("${(0,)*10**9}", LIMIT),
    ("${10**9*'a'}", LIMIT),
    ("${'x'.center(10**9)}", LIMIT),
    ("${'x'.zfill(10**9)}", LIMIT),
    ("${('\\t'*100000).expandtabs(10**5)}", LIMIT),
    ("${big.replace('', big)}", LIMIT),
    ("${'-'.join([big]*100)}", LIMIT),
    ("${'%999999999d' % 1}", LIMIT),
    ("${'%.999999999f' % 1.0}", LIMIT),
    ("${'%*d' % (10**9, 1)}", LIMIT),
    ("${('%s' * 1000) % ((big,) * 1000)}", LIMIT),
    ("${str([[0]*100000]*100000)}", LIMIT),
    ("${[[0]*100000]*100000}", LIMIT),  # rendering it as text
    ("${[[0]*100000]*100000 == [[0]*100000]*100000}", LIMIT),
    ("${sorted([[0]*100000]*100000)}", LIMIT),
    ("${set([((0,)*100000,)*100000])}", LIMIT),
    ("${[list(r) for r in [[0]*100000]*10000]}", LIMIT),
    ("${[big + big for i in range(10000)]}", LIMIT),
    # loop bombs
    ("${[x for x in range(10**12)]}", LIMIT),
    ("${sum(range(10**12))}", LIMIT),
    ("${list(range(10**9))}", LIMIT),
    ("${[i*j for i in range(10000) for j in range(10000)]}", LIMIT),
    ("${[sorted(range(100000), key=str) for i in range(3)]}", LIMIT),  # steps or deadline
    ("${[[big.count(c) for c in big] for i in range(10)]}", LIMIT),
    # nesting and length
    ("${" + DEEP_PARENS + "}", LIMIT),
    ("${" + DEEP_BRACKETS + "}", LIMIT),
    ("${" + DEEP_UNARY + "}", LIMIT),
    ("${" + "not " * 3000 + "x}", LIMIT),
    ("${" + LONG_CHAIN + "}", LIMIT),
    ("${" + VERY_LONG + "}", LIMIT),
    ("${" + MANY_GENERATORS + "}", LIMIT),
    ("${[" + ", ".join(["*big"] * 20) + "]}", LIMIT),
    ("${[" + ", ".join(["*zip(big, big)"] * 20) + "]}", LIMIT),
]


@pytest.mark.parametrize(
    ("template", "outcome"), HOSTILE, ids=[f"{i:03d}" for i in range(len(HOSTILE))]
)
def test_hostile_expression(
    template: str, outcome: str, namespace: dict[str, Any], sandbox: Sandbox
) -> None:
    global _recording
    _events.clear()
    error: Exception | None = None
    result: Any = None
    started = time.perf_counter()
    _recording = True
    try:
        result = render(f"pre {template} post", namespace, sandbox=sandbox)
    except (UnsafeExpressionError, ExpressionLimitError) as exc:
        error = exc
    finally:
        _recording = False
    elapsed = time.perf_counter() - started

    assert elapsed < 1.0, f"took {elapsed:.2f} s"
    assert _events == []
    if outcome == UNSAFE:
        assert isinstance(error, UnsafeExpressionError), (error, result)
    elif outcome == LIMIT:
        assert isinstance(error, ExpressionLimitError), (error, result)
    else:
        assert error is None, error
        assert result == f"pre {template} post"
    if error is not None:
        message = str(error)
        assert message.startswith(template[:200]) or template[:100] in message


def test_there_are_at_least_30_hostile_expressions() -> None:
    assert len(HOSTILE) >= 30
    assert {outcome for _, outcome in HOSTILE} == {UNSAFE, LIMIT, LITERAL}


# Inert only because the fragment pattern excludes braces: the sandbox itself
# must refuse them too, for callers that evaluate expressions directly.
DIRECT: list[tuple[str, str]] = [
    ('"{0.__class__}".format(x)', UNSAFE),
    ('"{a.__class__}".format_map(d)', UNSAFE),
    ("f'{x.__class__}'", UNSAFE),
    ("f'{x!r:>{10**9}}'", UNSAFE),
    ("{x for x in items}", UNSAFE),
    ("{**d, '__class__': 1}['__class__']", UNSAFE),
    ("{'k': x.__class__}", UNSAFE),
    ("('%(k)s' * 100000) % {'k': 'a' * 1000}", LIMIT),
    ("big.translate({97: big})", LIMIT),
    ("{k: big * 10 for k in range(100)}", LIMIT),
    ("dict.fromkeys(range(10**9))", UNSAFE),
]


@pytest.mark.parametrize(("expression", "outcome"), DIRECT)
def test_hostile_expression_evaluated_directly(
    expression: str, outcome: str, namespace: dict[str, Any], sandbox: Sandbox
) -> None:
    global _recording
    expected = UnsafeExpressionError if outcome == UNSAFE else ExpressionLimitError
    _events.clear()
    started = time.perf_counter()
    _recording = True
    try:
        with pytest.raises(expected):
            sandbox.evaluate(expression, namespace)
    finally:
        _recording = False
    assert time.perf_counter() - started < 1.0
    assert _events == []


def test_audit_hook_is_live() -> None:
    """The watcher would notice if something did run."""
    global _recording
    _events.clear()
    _recording = True
    try:
        with open(__file__, encoding="utf-8"):
            pass
    finally:
        _recording = False
    assert [event for event, _ in _events] == ["open"]


def test_starred_expansion_is_charged_before_the_list_is_built(
    namespace: dict[str, Any], sandbox: Sandbox
) -> None:
    import tracemalloc

    expression = "[" + ", ".join(["*big"] * 200) + "]"  # 20 million items
    tracemalloc.start()
    try:
        with pytest.raises(ExpressionLimitError, match="the list display"):
            sandbox.evaluate(expression, namespace)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4_000_000  # the refused list would take 160 MB of pointers alone


def test_starred_expansion_within_the_limit_still_works(
    namespace: dict[str, Any], sandbox: Sandbox
) -> None:
    box = sandbox
    assert box.evaluate("[*items, *items, 4]", namespace) == [1, 2, 3, 1, 2, 3, 4]
    assert len(box.evaluate("[" + ", ".join(["*big"] * 9) + "]", namespace)) == 900_000
    assert box.evaluate("[*zip(items, items), *d]", namespace) == [(1, 1), (2, 2), (3, 3), "k"]
    with pytest.raises(TemplateError):
        box.evaluate("[*x]", namespace)  # an int cannot be expanded


# Through the template modules: (expression, outcome with them off, with them on).
# With them off the names are unknown and the fragment stays literal.
MODULE_HOSTILE: list[tuple[str, str, str]] = [
    ("${math.factorial(10**6)}", LITERAL, LITERAL),  # not a member
    ("${math.comb(10**6, 5*10**5)}", LITERAL, LITERAL),
    ("${math.prod(range(1, 10**5))}", LITERAL, LITERAL),
    ("${math.lcm(2**9000, 3**5000)}", LITERAL, LITERAL),
    ("${math.isqrt(2**20000)}", LITERAL, LIMIT),
    ("${math.trunc(huge_decimal)}", LITERAL, LIMIT),
    ("${math.floor(huge_decimal)}", LITERAL, LIMIT),
    ("${math.gcd(huge_int, 3)}", LITERAL, LIMIT),
    ("${math.__dict__}", UNSAFE, UNSAFE),
    ("${math.floor.__self__}", UNSAFE, UNSAFE),
    ("${math.floor}", LITERAL, UNSAFE),  # a function is never a value
    ("${sorted(items, key=math.floor)}", LITERAL, UNSAFE),
    ("${str(math).__class__}", UNSAFE, UNSAFE),
    ("${json.loads.__globals__}", UNSAFE, UNSAFE),
    ("${json.__loader__}", UNSAFE, UNSAFE),
    ("${json.codecs.sys}", UNSAFE, UNSAFE),
    ("${json.decoder}", LITERAL, LITERAL),  # not a member
    ("${json.JSONDecoder}", LITERAL, LITERAL),
    ("${json.loads}", LITERAL, UNSAFE),
    ("${json.dumps(items, default=spy)}", LITERAL, LITERAL),  # no callables passed in
    ("${json.dumps(items, cls=spy)}", LITERAL, LITERAL),
    ("${json.loads(s, object_hook=spy)}", LITERAL, LITERAL),
    ("${json.dumps(big * 10)}", LITERAL, LIMIT),
    ("${json.dumps([big] * 100)}", LITERAL, LIMIT),
    ("${json.loads('[' * 100000 + ']' * 100000)}", LITERAL, LIMIT),
    ("${json.loads(long_json)}", LITERAL, LIMIT),
    ("${datetime.datetime.strptime('2024', '%Y' * 1000)}", LITERAL, LIMIT),
    ("${datetime.timedelta(days=10**12)}", LITERAL, LITERAL),
    ("${datetime.datetime.__init__}", UNSAFE, UNSAFE),
    ("${datetime.datetime.now}", LITERAL, UNSAFE),
    ("${datetime.datetime.now().__class__}", UNSAFE, UNSAFE),
    ("${datetime.sys}", UNSAFE, UNSAFE),
    ("${datetime.datetime.now().strftime('%Y' * 100000)}", LITERAL, LIMIT),
    ("${time.sleep(100)}", LITERAL, LITERAL),
    ("${time.strftime('%Y' * 300000)}", LITERAL, LIMIT),
    ("${time.localtime().__class__}", UNSAFE, UNSAFE),
    ("${[math.exp(i) for i in range(10**9)]}", LIMIT, LIMIT),
    ("${[json.dumps(big) for i in range(100)]}", LITERAL, LIMIT),
]


@pytest.fixture
def module_namespace(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setattr(logging.getLogger("aiobamboo.template"), "disabled", True)
    import decimal

    return {
        "items": [1, 2, 3],
        "big": "a" * 100_000,
        "s": '{"k": 1}',
        "long_json": "[" + "1," * 600_000 + "1]",
        "huge_decimal": decimal.Decimal("1e999999999"),
        "huge_int": 1 << 20_000,
        "spy": Spy(),
    }


@pytest.mark.parametrize(
    ("template", "off", "on"), MODULE_HOSTILE, ids=[f"m{i:03d}" for i in range(len(MODULE_HOSTILE))]
)
def test_hostile_expression_through_modules(
    template: str, off: str, on: str, sandbox: Sandbox, module_namespace: dict[str, Any]
) -> None:
    outcome = on if sandbox.modules else off
    global _recording
    _events.clear()
    error: Exception | None = None
    result: Any = None
    started = time.perf_counter()
    _recording = True
    try:
        result = render(f"pre {template} post", module_namespace, sandbox=sandbox)
    except (UnsafeExpressionError, ExpressionLimitError) as exc:
        error = exc
    finally:
        _recording = False
    assert time.perf_counter() - started < 1.0
    assert _events == []
    assert module_namespace["spy"].__dict__["touched"] == []
    if outcome == UNSAFE:
        assert isinstance(error, UnsafeExpressionError), (error, result)
    elif outcome == LIMIT:
        assert isinstance(error, ExpressionLimitError), (error, result)
    else:
        assert error is None, error
        assert result == f"pre {template} post"
