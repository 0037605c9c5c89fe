"""Parsing one ``${...}`` expression and checking it before anything runs.

The result of :func:`analyse` is cached per expression text. It holds:

- the parsed tree (``mode="eval"``: one expression, never statements);
- the free names the expression reads (for :func:`aiobamboo.template.references`);
- why it cannot be evaluated at all, if so: a syntax error (the fragment stays
  literal), a size limit (:class:`ExpressionLimitError`), or a construct the
  sandbox refuses whatever the namespace (:class:`UnsafeExpressionError`);
- the names that are refused unless the namespace itself provides them:
  single-underscore names, and dangerous roots such as ``os`` or ``self`` used
  as the base of an attribute, a subscript or a call.

The walk is iterative and bounded by the depth limit, so hostile nesting can
not exhaust the interpreter stack.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

__all__ = [
    "DANGEROUS_ATTR_NAMES",
    "DANGEROUS_ATTR_PREFIXES",
    "DANGEROUS_ROOT_NAMES",
    "FORBIDDEN_CALLS",
    "Analysis",
    "analyse",
    "attribute_refusal",
]

#: The original's shield words (``MAKO_SANDBOX_SHIELD_WORDS``) plus a few more
#: builtins that have no business in a template. Calling one is refused.
FORBIDDEN_CALLS = frozenset(
    {
        "ascii",
        "breakpoint",
        "bytearray",
        "bytes",
        "callable",
        "chr",
        "classmethod",
        "compile",
        "delattr",
        "dir",
        "divmod",
        "exec",
        "eval",
        "filter",
        "format",
        "frozenset",
        "getattr",
        "globals",
        "hasattr",
        "hash",
        "help",
        "id",
        "input",
        "isinstance",
        "issubclass",
        "iter",
        "locals",
        "map",
        "memoryview",
        "next",
        "object",
        "open",
        "print",
        "property",
        "repr",
        "setattr",
        "staticmethod",
        "super",
        "type",
        "vars",
        "__import__",
        # beyond the original's list
        "exit",
        "quit",
        "license",
        "credits",
        "copyright",
        "aiter",
        "anext",
        "reload",
        "import_module",
    }
)

#: Mako's reserved namespaces (always refused by the original) and modules that
#: the original's attacks walked through. Used as the base of an attribute,
#: subscript or call, they are refused unless the namespace defines the name.
DANGEROUS_ROOT_NAMES = frozenset(
    {
        "self",
        "context",
        "local",
        "parent",
        "next",
        "caller",
        "pageargs",
        "UNDEFINED",
        "STOP_RENDERING",
        "os",
        "sys",
        "subprocess",
        "shutil",
        "ctypes",
        "socket",
        "threading",
        "builtins",
        "importlib",
        "posix",
        "nt",
        "pty",
        "signal",
        "pickle",
        "marshal",
        "gc",
        "inspect",
        "types",
        "operator",
        "functools",
        "codecs",
        "io",
    }
    | FORBIDDEN_CALLS
)

#: Attribute names that are refused on any object.
DANGEROUS_ATTR_NAMES = frozenset(
    {
        # the original's FORBIDDEN_TEMPLATE_METHODS and DANGEROUS_ATTR_NAMES
        "format",
        "format_map",
        "os",
        "sys",
        "subprocess",
        "shutil",
        "ctypes",
        "socket",
        "threading",
        "builtins",
        "modules",
        "system",
        "fork",
        "forkpty",
        "kill",
        # type and frame machinery
        "mro",
        "globals",
        "locals",
        "vars",
        "eval",
        "compile",
        "open",
        "importlib",
        "import_module",
        "loader",
        "spec",
        "code",
        "gi_frame",
        "gi_code",
        "gi_yieldfrom",
        "cr_frame",
        "cr_code",
        "cr_await",
        "ag_frame",
        "ag_code",
        "ag_await",
        "tb_frame",
        "tb_next",
        "f_globals",
        "f_locals",
        "f_back",
        "f_builtins",
        "f_code",
        "func_globals",
        "func_code",
        "im_func",
        "im_self",
        "im_class",
    }
)

#: Attribute name prefixes that are refused on any object.
DANGEROUS_ATTR_PREFIXES = (
    "_",
    "popen",
    "spawn",
    "exec",
    "posix_spawn",
    "gi_",
    "cr_",
    "ag_",
    "tb_",
    "f_",
    "co_",
    "func_",
    "im_",
)

_ALLOWED_NODES: frozenset[type[ast.AST]] = frozenset(
    {
        ast.BoolOp,
        ast.BinOp,
        ast.UnaryOp,
        ast.IfExp,
        ast.Dict,
        ast.Set,
        ast.ListComp,
        ast.GeneratorExp,
        ast.DictComp,
        ast.comprehension,
        ast.Compare,
        ast.Call,
        ast.keyword,
        ast.Constant,
        ast.JoinedStr,
        ast.Attribute,
        ast.Subscript,
        ast.Name,
        ast.List,
        ast.Tuple,
        ast.Slice,
    }
)

_ALLOWED_BINOPS: frozenset[type[ast.operator]] = frozenset(
    {
        ast.Add,
        ast.Sub,
        ast.Mult,
        ast.Div,
        ast.FloorDiv,
        ast.Mod,
        ast.Pow,
        ast.LShift,
        ast.RShift,
        ast.BitOr,
        ast.BitXor,
        ast.BitAnd,
    }
)

_REFUSED_NODE_REASONS: dict[type[ast.AST], str] = {
    ast.Lambda: "lambda is not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.FormattedValue: "f-string interpolation is not allowed",
    ast.Starred: "unpacking with * is only allowed inside a list display",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.SetComp: "set comprehensions are not supported",
}

_COMPREHENSIONS = (ast.ListComp, ast.GeneratorExp, ast.DictComp, ast.SetComp)
_Scope = frozenset[str]


@dataclass(frozen=True, slots=True)
class Analysis:
    """What is known about an expression before it runs."""

    expression: str
    tree: ast.expr | None = None
    free_names: frozenset[str] = frozenset()
    guarded_names: frozenset[str] = frozenset()
    syntax_error: str | None = None
    limit: str | None = None
    unsafe: str | None = None


def attribute_refusal(attr: str) -> str | None:
    """Why ``.attr`` is refused on every object, or None."""
    if attr.startswith("_"):
        return f"attribute {attr!r} starts with an underscore"
    if attr in DANGEROUS_ATTR_NAMES or attr.startswith(DANGEROUS_ATTR_PREFIXES):
        return f"attribute {attr!r} is not allowed"
    return None


_CACHED_LENGTH = 1_000


def analyse(expression: str, max_length: int, max_depth: int) -> Analysis:
    """Parse and check ``expression`` (already stripped of ``${``/``}``).

    Results for expressions up to 1000 characters are cached.
    """
    if len(expression) > _CACHED_LENGTH:
        return _analyse(expression, max_length, max_depth)
    return _analyse_cached(expression, max_length, max_depth)


def _analyse(expression: str, max_length: int, max_depth: int) -> Analysis:
    if len(expression) > max_length:
        return Analysis(
            expression,
            limit=f"expression is {len(expression)} characters long, the limit is {max_length}",
        )
    try:
        parsed = ast.parse(expression, mode="eval")
    except SyntaxError as exc:
        message = str(exc.msg)
        if "too many nested" in message or "too complex" in message:
            return Analysis(expression, limit=f"expression is nested too deeply ({message})")
        return Analysis(expression, syntax_error=f"not a valid expression: {message}")
    except (RecursionError, MemoryError):
        return Analysis(expression, limit="expression is nested too deeply")
    except ValueError as exc:  # e.g. NUL bytes
        return Analysis(expression, syntax_error=f"not a valid expression: {exc}")
    return _walk(expression, parsed.body, max_depth)


_analyse_cached = lru_cache(maxsize=4096)(_analyse)


def _walk(expression: str, root: ast.expr, max_depth: int) -> Analysis:
    free: set[str] = set()
    guarded: set[str] = set()
    unsafe: list[str] = []
    stack: list[tuple[ast.AST, int, _Scope]] = [(root, 1, frozenset())]

    def refuse(reason: str) -> None:
        if not unsafe:
            unsafe.append(reason)

    while stack:
        node, depth, bound = stack.pop()
        if depth > max_depth:
            return Analysis(
                expression, limit=f"expression is nested more than {max_depth} levels deep"
            )
        node_type = type(node)
        if node_type not in _ALLOWED_NODES:
            refuse(_REFUSED_NODE_REASONS.get(node_type, f"{node_type.__name__} is not allowed"))
        child_depth = depth + 1

        if isinstance(node, ast.Name):
            _check_name(node, bound, free, guarded, refuse)
            continue
        if isinstance(node, _COMPREHENSIONS):
            _push_comprehension(node, child_depth, bound, stack, refuse)
            continue
        if isinstance(node, ast.Lambda):
            args = node.args
            params = {a.arg for a in (*args.posonlyargs, *args.args, *args.kwonlyargs)}
            for extra in (args.vararg, args.kwarg):
                if extra is not None:
                    params.add(extra.arg)
            stack.append((node.body, child_depth, bound | params))
            defaults = (*args.defaults, *(d for d in args.kw_defaults if d is not None))
            stack.extend((default, child_depth, bound) for default in defaults)
            continue
        if isinstance(node, ast.Attribute):
            reason = attribute_refusal(node.attr)
            if reason is not None:
                refuse(reason)
            _guard_root(node.value, bound, guarded)
        elif isinstance(node, ast.Subscript):
            key = node.slice
            if (
                isinstance(key, ast.Constant)
                and isinstance(key.value, str)
                and key.value.startswith("__")
            ):
                refuse(f"subscript {key.value!r} starts with a double underscore")
            _guard_root(node.value, bound, guarded)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name):
                if func.id in FORBIDDEN_CALLS and func.id not in bound:
                    refuse(f"calling {func.id}() is not allowed")
                _guard_root(func, bound, guarded)
            elif not isinstance(func, ast.Attribute):
                refuse("only named functions and methods can be called")
            if any(kw.arg is None for kw in node.keywords):
                refuse("unpacking with ** is not allowed")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _ALLOWED_BINOPS:
                refuse(f"operator {type(node.op).__name__} is not supported")
        elif isinstance(node, ast.List):
            # ``[*x]`` is the one place where unpacking is supported.
            for elt in node.elts:
                target = elt.value if isinstance(elt, ast.Starred) else elt
                stack.append((target, child_depth, bound))
            continue
        elif isinstance(node, ast.Constant):
            continue

        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr_context | ast.operator | ast.boolop | ast.cmpop):
                continue
            if isinstance(child, ast.unaryop):
                continue
            stack.append((child, child_depth, bound))

    return Analysis(
        expression,
        tree=root,
        free_names=frozenset(free),
        guarded_names=frozenset(guarded),
        unsafe=unsafe[0] if unsafe else None,
    )


def _check_name(
    node: ast.Name,
    bound: _Scope,
    free: set[str],
    guarded: set[str],
    refuse: Callable[[str], None],
) -> None:
    name = node.id
    if name.startswith("__"):
        refuse(f"name {name!r} starts with a double underscore")
    if not isinstance(node.ctx, ast.Load) or name in bound:
        return
    free.add(name)
    if name.startswith("_"):
        guarded.add(name)


def _guard_root(node: ast.expr, bound: _Scope, guarded: set[str]) -> None:
    if isinstance(node, ast.Name) and node.id not in bound and node.id in DANGEROUS_ROOT_NAMES:
        guarded.add(node.id)


def _targets(target: ast.expr) -> set[str]:
    names: set[str] = set()
    pending = [target]
    while pending:
        item = pending.pop()
        if isinstance(item, ast.Name):
            names.add(item.id)
        elif isinstance(item, ast.Tuple | ast.List):
            pending.extend(item.elts)
        elif isinstance(item, ast.Starred):
            pending.append(item.value)
    return names


def _push_comprehension(
    node: ast.ListComp | ast.GeneratorExp | ast.DictComp | ast.SetComp,
    depth: int,
    bound: _Scope,
    stack: list[tuple[ast.AST, int, _Scope]],
    refuse: Callable[[str], None],
) -> None:
    scope = bound
    for index, generator in enumerate(node.generators):
        if generator.is_async:
            refuse("async comprehensions are not allowed")
        # The first iterable is evaluated in the enclosing scope, the others
        # see the targets bound so far.
        stack.append((generator.iter, depth, bound if index == 0 else scope))
        scope = scope | _targets(generator.target)
        stack.append((generator.target, depth, scope))
        stack.extend((condition, depth, scope) for condition in generator.ifs)
    if isinstance(node, ast.DictComp):
        stack.append((node.key, depth, scope))
        stack.append((node.value, depth, scope))
    else:
        stack.append((node.elt, depth, scope))
