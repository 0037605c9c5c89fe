"""Gateway conditions: a boolrule-compatible language with normal precedence.

:func:`evaluate_condition` does what the original's exclusive and conditional
parallel gateways do with a condition: the ``${...}`` fragments are
evaluated in the sandbox, and the condition is parsed and evaluated with a
dedicated small grammar (no Python is evaluated at this stage).

A value never becomes part of the condition's syntax. The original renders the
fragments into the text and parses the result, so a value such as
``guest" == "guest" and "admin`` adds operators to the condition and changes
the branch taken. Here the condition is parsed with each fragment as a
placeholder, and the placeholder is bound to the fragment's value:

- ``"${x}"`` (a fragment inside quotes, possibly with other text) is a
  string: the quoted text with the fragment's text in place, whatever quotes,
  operators or parentheses the value holds. As in the original, string values
  of the namespace are escaped first (a raw newline, carriage return or tab
  becomes the two characters ``\\n``, ``\\r``, ``\\t``, unless the string
  already holds one of those escapes) and the quoted text is then unescaped;
  a value still holding a raw line break is a syntax error, as in the original.
- ``${x}`` outside quotes (possibly run together with letters or digits, as in
  ``v${n}``) is one value: its text must read as exactly one value of the
  grammar -- a number, a quoted string, ``true``/``false``, an identifier
  path or a parenthesised tuple of values -- and is that value, so numbers
  still compare as numbers. Text that reads as anything else (operators,
  several values) fails with :class:`ConditionSyntaxError` naming the fragment.
- A condition that is nothing but one fragment (``${rule}``) takes the whole
  condition from the value: a ``bool`` is the result, any other value is
  parsed as a condition. No text of the author's surrounds the value there.
- A fragment that is left as it is (unknown name, not an expression) is its
  own text, as in a render.

Grammar (keywords and operators case-insensitive)::

    condition  := "*" | or
    or         := and ("or" and)*
    and        := not ("and" not)*
    not        := "not"* primary
    primary    := "(" or ")" | operand OP operand | "true" | "false"
    operand    := value | "(" value ("," value)* ")"          -> a list
    value      := int | real | "..." | '...' | true | false | identifier path
    OP         := == != < > <= >= in notin issuperset notissuperset

- Numbers: ``1``, ``-2``, ``+3``, ``1.5``, ``.5``, ``2.``, ``1e3`` (a float).
- Strings: ``"..."`` or ``'...'`` on one line; there is no quote escape, and
  the two-character sequences ``\\t \\n \\f \\r`` become the whitespace they
  name, as pyparsing's ``QuotedString`` does in the original.
- An identifier path (``abc``, ``_x``, ``a.b``) and an unresolved
  ``${name}`` evaluate to their own text, as boolrule does without a context.
- A ``${...}`` fragment is a placeholder for a value (see above).
- ``*`` alone is true; ``=`` is a syntax error; comparisons do not chain.

Coercion of the two operands of ``== != < > <= >=``:

- two numbers (booleans count as 1 and 0) compare as numbers, never truncated;
- a number and a string that reads as a number compare as numbers;
- a number and any other string compare as strings (``str()`` of the number);
- two lists are equal when their items are pairwise equal under these rules;
- anything else compares as it is; an impossible ordering (a list and a
  number) raises :class:`TemplateError`.

``in`` / ``notin``: against a list, true when some item is equal under the
rules above (this is the original's "extend the list with items cast to the
left operand's type", without truncation); against a string, a substring test
(``str()`` of a number); against a single value, equality. ``issuperset`` /
``notissuperset``: a single value on either side is a one-item list, then
every right item must equal some left item under the rules above.

Differences from the original (boolrule on pyparsing 2), with the standard
rules; ``rules=BAMBOO_RULES`` evaluates as boolrule does instead (left to
right, no ``not`` and no bare ``true``, ``int()`` truncation, its string and
set coercions), which removes differences 1 to 7; 8 to 10 remain:

1. Precedence: ``not`` binds tightest, then ``and``, then ``or``. The original
   has no precedence: it runs left to right and stops early (true before
   ``or`` -> true, false before ``and`` -> false). So
   ``1 > 2 and 1 == 1 or 2 == 2`` is **True** here and False there;
   ``1 == 1 or 1 > 2 and 1 > 3`` is True in both.
2. ``not`` exists here (the original has no negation but ``!=`` and ``notin``).
3. No truncation: ``1.5 > 1`` is True here, False in the original (it casts
   the float with ``int()``); ``1 == 1.9`` and ``1 in (1.9)`` are False here,
   True there.
4. Numeric strings: ``"1.0" == 1`` and ``"1.0" in (1)`` are True here; the
   original's ``int("1.0")`` fails, so they are False there.
5. A number against a non-numeric string compares as strings: ``123 < "abc"``
   is True here and a failure there; ``true == "True"`` is True here and
   False there (``true == "true"`` is False in both).
6. ``in`` against a string or a single value, and superset operators against
   a non-string single value, work here; the original raises ``TypeError``.
   Superset operators coerce items like ``==``: ``(1, 2) issuperset ("1")``
   is True here, False there.
7. A condition that is just ``true`` or ``false`` (possibly with ``not`` or in
   parentheses, also inside ``and``/``or``) is accepted; the original
   requires a comparison. A whole ``${flag}`` that renders to a ``bool`` is
   that bool; any other non-string rendering is parsed as ``str()`` of it.
8. Identifiers may use any Unicode letters, and a word that merely starts
   with a keyword (``trueish``, ``order``) is an identifier; ``1e3`` is a
   float. These are syntax or conversion errors in the original.
9. Parse errors raise :class:`ConditionSyntaxError` (the original raises
   pyparsing's ``ParseException``); a failed comparison raises
   :class:`TemplateError`; parentheses nested more than 100 deep raise
   :class:`ExpressionLimitError`.
10. Values are bound, not spliced (see above): a value holding quotes or
    operators stays one value; unquoted, it fails instead of changing the
    condition.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import lru_cache
from itertools import islice
from typing import Any

from aiobamboo.exceptions import (
    ConditionSyntaxError,
    ExpressionLimitError,
    TemplateError,
    UnsafeExpressionError,
)

from ._budget import RenderBudget
from ._render import Renderer, fragment_label
from ._sandbox import DEFAULT_SANDBOX, Sandbox
from ._tokenizer import FRAGMENT_PATTERN, whole_fragment

__all__ = ["MAX_CONDITION_DEPTH", "escape_value", "evaluate_condition", "parse_condition"]

MAX_CONDITION_DEPTH = 100
_MAX_SUPERSET_PAIRS = 1_000_000

_TOKEN_SOURCE = r"""
    (?P<ws>[ \t\r\n]+)
    |(?P<lparen>\()
    |(?P<rparen>\))
    |(?P<comma>,)
    |(?P<op>==|!=|<=|>=|<|>)
    |(?P<bad_op>=|!)
    |(?P<string>"[^"\r\n]*"|'[^'\r\n]*')
    |(?P<real>[+-]?(?:\d+\.\d*|\.\d+)(?:[eE][+-]?\d+)?(?!\w))
    |(?P<int>[+-]?\d+(?:[eE]\+?\d+)?(?!\w))
    |(?P<placeholder>\$\{\s*[^\W\d]\w*(?:\.[^\W\d]\w*)*\s*\})
    |(?P<word>[^\W\d]\w*(?:\.[^\W\d]\w*)*)
    """
_TOKEN = re.compile(_TOKEN_SOURCE, re.VERBOSE)
_NUMERIC = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_KEYWORD_OPS = frozenset({"in", "notin", "issuperset", "notissuperset"})
_LOGIC = frozenset({"and", "or", "not"})
_WHITESPACE_ESCAPES = (("\\t", "\t"), ("\\n", "\n"), ("\\f", "\f"), ("\\r", "\r"))
_VALUE_ESCAPES = (("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"))

Value = Any  # int | float | bool | str | list[...]


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # lparen rparen comma op value and or not eof
    text: str
    position: int
    value: Value = None


# Parsed condition nodes: ("const", bool) | ("not", node) | ("and", [nodes])
# | ("or", [nodes]) | ("cmp", op, left, right)
Node = tuple[Any, ...]


def escape_value(value: Any) -> Any:
    """Escape raw ``\\n \\r \\t`` in a string, unless it already holds an escape."""
    if not isinstance(value, str):
        return value
    if any(escaped in value for _, escaped in _VALUE_ESCAPES):
        return value
    for raw, escaped in _VALUE_ESCAPES:
        value = value.replace(raw, escaped)
    return value


class _EscapedNamespace(Mapping[str, Any]):
    """A read-only view of a namespace with its string values escaped."""

    __slots__ = ("_namespace",)

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self._namespace = namespace

    def __getitem__(self, key: str) -> Any:
        return escape_value(self._namespace[key])

    def __contains__(self, key: object) -> bool:
        return key in self._namespace

    def __iter__(self) -> Iterator[str]:
        return iter(self._namespace)

    def __len__(self) -> int:
        return len(self._namespace)


#: Condition rules: normal precedence and no truncation (the default) ...
STANDARD_RULES = "standard"
#: ... or the original's boolrule: left to right, its truncation and coercions.
BAMBOO_RULES = "bamboo"
CONDITION_RULES = (STANDARD_RULES, BAMBOO_RULES)


def evaluate_condition(
    expression: str,
    namespace: Mapping[str, Any],
    *,
    sandbox: Sandbox | None = None,
    budget: RenderBudget | None = None,
    rules: str = STANDARD_RULES,
) -> bool:
    """Evaluate a gateway condition (see the module documentation).

    The fragments are evaluated within ``budget`` (a fresh
    :class:`RenderBudget` if none is given), as a render is. ``rules`` is
    :data:`STANDARD_RULES` or :data:`BAMBOO_RULES` (see :mod:`._boolrule`).
    """
    if rules not in CONDITION_RULES:
        raise ValueError(f"condition rules must be one of {CONDITION_RULES}, got {rules!r}")
    box = sandbox if sandbox is not None else DEFAULT_SANDBOX
    spent = budget if budget is not None else RenderBudget(box.limits)
    spent.begin()
    try:
        return _evaluate_condition(
            expression, Renderer(_EscapedNamespace(namespace), box, spent), rules == BAMBOO_RULES
        )
    finally:
        spent.end()


def _evaluate_condition(expression: str, renderer: Renderer, bamboo: bool = False) -> bool:
    stripped = expression.strip()
    evaluate = _evaluate_bamboo if bamboo else _evaluate
    if whole_fragment(stripped):
        # The value is the whole condition: no text of the author's around it
        # for it to change.
        rendered = renderer.string(stripped)
        if isinstance(rendered, bool) and not bamboo:
            return rendered
        text = rendered if isinstance(rendered, str) else str(rendered)
        try:
            tree = parse_condition(text, bamboo)
        except (ConditionSyntaxError, ExpressionLimitError) as exc:
            if text == stripped:
                raise
            raise type(exc)(f"{exc} (condition {expression!r})") from None
        shown = repr(expression) if text == stripped else f"{expression!r} (rendered: {text!r})"
        return evaluate(tree, _Bindings(expression, (), {}, label=shown))
    template = _parse_template(expression, bamboo)
    pieces: dict[str, str] = {}
    if template.fragments:
        try:
            pieces = renderer.condition_pieces(FRAGMENT_PATTERN.findall(expression))
        except (UnsafeExpressionError, ExpressionLimitError) as exc:
            raise type(exc)(f"{exc} (condition {expression!r})") from None
    bindings = _Bindings(expression, template.fragments, pieces, renderer.budget)
    if template.error is not None:
        raise ConditionSyntaxError(f"{template.error}{bindings.rendered_note()}")
    assert template.tree is not None
    return evaluate(template.tree, bindings)


@dataclass(frozen=True, slots=True)
class _Slot:
    """A value made of fragments: ``"a ${x} b"`` (quoted) or ``v${n}`` (bare).

    ``parts`` are literal text and indices into the condition's fragment
    occurrences.
    """

    quoted: bool
    parts: tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class _Tuple:
    """A parenthesised tuple holding at least one :class:`_Slot`."""

    items: tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class _Template:
    """A condition parsed with placeholders: its tree, or why it does not parse."""

    tree: Node | None
    error: str | None
    fragments: tuple[str, ...]  # one per occurrence, in order


class _Bindings:
    """The values bound to a parsed condition's placeholders, for one evaluation."""

    __slots__ = ("_budget", "_expression", "_fragments", "_pieces", "label")

    def __init__(
        self,
        expression: str,
        fragments: tuple[str, ...],
        pieces: dict[str, str],
        budget: RenderBudget | None = None,
        *,
        label: str | None = None,
    ) -> None:
        self._budget = budget
        self._expression = expression
        self.label = label if label is not None else repr(expression)
        self._fragments = fragments
        self._pieces = pieces

    def text(self, index: int) -> str:
        fragment = self._fragments[index]
        return self._pieces.get(fragment, fragment)

    def rendered_note(self) -> str:
        """`` (rendered: '...')`` for messages, each value shortened, or nothing."""
        if not self._pieces:
            return ""
        shown = FRAGMENT_PATTERN.sub(
            lambda match: fragment_label(self._pieces.get(match[0], match[0])), self._expression
        )
        return f" (rendered: {fragment_label(shown)!r})"

    def resolve(self, value: Value) -> Value:
        if isinstance(value, _Slot):
            return self._slot(value)
        if isinstance(value, _Tuple):
            return [self.resolve(item) for item in value.items]
        return value

    def _slot(self, slot: _Slot) -> Value:
        texts: list[str] = []
        for part in slot.parts:
            if isinstance(part, str):
                texts.append(part)
                continue
            text = self.text(part)
            if slot.quoted and ("\n" in text or "\r" in text):
                raise ConditionSyntaxError(
                    f"cannot parse condition {self.label}: the value of "
                    f"{fragment_label(self._fragments[part])} holds a line break inside quotes"
                )
            texts.append(text)
        if len(texts) > 1 and self._budget is not None:
            # A new string: its size is charged before it is built.
            self._budget.charge(sum(map(len, texts)), self.label)
        joined = "".join(texts)
        if slot.quoted:
            return _unescape(joined)
        return self._single_value(joined, slot)

    def _single_value(self, text: str, slot: _Slot) -> Value:
        """``text`` read as exactly one value of the grammar, or a syntax error."""
        try:
            tokens = list(_tokenize(text, repr(text), _TOKEN))[:-1]
        except ConditionSyntaxError:
            tokens = []
        if len(tokens) == 1 and tokens[0].kind == "value":
            return tokens[0].value
        if (
            len(tokens) >= 3
            and tokens[0].kind == "lparen"
            and tokens[-1].kind == "rparen"
            and all(t.kind == "value" for t in tokens[1:-1:2])
            and all(t.kind == "comma" for t in tokens[2:-1:2])
        ):
            return [t.value for t in tokens[1:-1:2]]
        names = ", ".join(
            fragment_label(self._fragments[p]) for p in slot.parts if isinstance(p, int)
        )
        raise ConditionSyntaxError(
            f"cannot evaluate condition {self.label}: {names} renders to {fragment_label(text)!r}, "
            "which is not one value (a value never adds operators to a condition; put the "
            "fragment in quotes to compare its text as a string)"
        )

    def shown(self) -> str:
        return f"{self.label}{self.rendered_note()}"


# Placeholders stand for fragments in the text the tokenizer sees. Their
# characters are private-use code points absent from the condition, and each
# placeholder is as long as its fragment, so positions in messages stay right.
_PLACEHOLDER_CANDIDATES = [chr(code) for code in range(0xE000, 0xE100)]


@lru_cache(maxsize=8)
def _token_pattern(start: str, fill: str) -> re.Pattern[str]:
    slot = rf"(?P<slot>[\w.+-]*{start}{fill}*(?:[\w.+-]|{start}{fill}*)*)"
    return re.compile(_TOKEN_SOURCE.replace("(?P<string>", slot + "\n    |(?P<string>"), re.VERBOSE)


@lru_cache(maxsize=2048)
def _parse_template(expression: str, bamboo: bool = False) -> _Template:
    label = repr(expression)
    occurrences = list(FRAGMENT_PATTERN.finditer(expression))
    fragments = tuple(match[0] for match in occurrences)
    parser = _BambooParser if bamboo else _Parser
    if not occurrences:
        try:
            return _Template(parse_condition(expression, bamboo), None, ())
        except ConditionSyntaxError as exc:
            return _Template(None, str(exc), ())
    free = list(islice((c for c in _PLACEHOLDER_CANDIDATES if c not in expression), 2))
    if len(free) < 2:
        return _Template(
            None, f"cannot parse condition {label}: too many unusual characters", fragments
        )
    start, fill = free[0], free[1]
    pieces: list[str] = []
    position = 0
    at: dict[int, int] = {}
    for index, match in enumerate(occurrences):
        pieces.append(expression[position : match.start()])
        pieces.append(start + fill * (len(match[0]) - 1))
        at[match.start()] = index
        position = match.end()
    pieces.append(expression[position:])
    source = "".join(pieces)
    marker = re.compile(f"{start}{fill}*")

    def parts(text: str, offset: int) -> tuple[str | int, ...]:
        result: list[str | int] = []
        position = 0
        for found in marker.finditer(text):
            if found.start() > position:
                result.append(text[position : found.start()])
            result.append(at[offset + found.start()])
            position = found.end()
        if position < len(text):
            result.append(text[position:])
        return tuple(result)

    try:
        tokens: list[_Token] = []
        for token in _tokenize(source, label, _token_pattern(start, fill)):
            if token.kind == "slot":
                slot = _Slot(False, parts(token.text, token.position))
                tokens.append(_Token("value", token.text, token.position, slot))
            elif token.kind == "value" and isinstance(token.value, str) and start in token.text:
                body = parts(token.text[1:-1], token.position + 1)
                tokens.append(_Token("value", token.text, token.position, _Slot(True, body)))
            else:
                tokens.append(token)
        tree = parser(tokens, label).parse()
    except ConditionSyntaxError as exc:
        return _Template(None, str(exc), fragments)
    except RecursionError:
        raise ExpressionLimitError(f"condition {label} is nested too deeply") from None
    return _Template(tree, None, fragments)


@lru_cache(maxsize=2048)
def parse_condition(text: str, bamboo: bool = False) -> Node:
    """Parse condition text (already rendered) into a small tree; cached."""
    label = repr(text)
    if text.strip() == "*":
        return ("const", True)
    tokens = list(_tokenize(text, label, _TOKEN))
    try:
        return (_BambooParser if bamboo else _Parser)(tokens, label).parse()
    except RecursionError:
        raise ExpressionLimitError(f"condition {label} is nested too deeply") from None


def _syntax_error(label: str, detail: str) -> ConditionSyntaxError:
    return ConditionSyntaxError(f"cannot parse condition {label}: {detail}")


def _unescape(body: str) -> str:
    if "\\" in body:
        for escaped, raw in _WHITESPACE_ESCAPES:
            body = body.replace(escaped, raw)
    return body


def _tokenize(text: str, label: str, pattern: re.Pattern[str] = _TOKEN) -> Iterator[_Token]:
    position = 0
    length = len(text)
    while position < length:
        match = pattern.match(text, position)
        if match is None:
            raise _syntax_error(
                label, f"unexpected character {text[position]!r} at position {position}"
            )
        kind = match.lastgroup
        lexeme = match[0]
        start = position
        position = match.end()
        if kind == "ws":
            continue
        if kind == "bad_op":
            hint = " (use '==')" if lexeme == "=" else ""
            raise _syntax_error(label, f"{lexeme!r} at position {start} is not an operator{hint}")
        if kind == "string":
            yield _Token("value", lexeme, start, _unescape(lexeme[1:-1]))
        elif kind == "real":
            yield _Token("value", lexeme, start, float(lexeme))
        elif kind == "int":
            number: int | float = float(lexeme) if "e" in lexeme.lower() else int(lexeme)
            yield _Token("value", lexeme, start, number)
        elif kind == "placeholder":
            yield _Token("value", lexeme, start, lexeme)
        elif kind == "slot":
            yield _Token("slot", lexeme, start)
        elif kind == "word":
            lowered = lexeme.lower()
            if lowered in _LOGIC:
                yield _Token(lowered, lexeme, start)
            elif lowered in _KEYWORD_OPS:
                yield _Token("op", lowered, start)
            elif lowered in ("true", "false"):
                yield _Token("value", lexeme, start, lowered == "true")
            else:
                yield _Token("value", lexeme, start, lexeme)
        else:  # lparen rparen comma op
            yield _Token(kind or "", lexeme, start)
    yield _Token("eof", "end of condition", length)


class _Parser:
    def __init__(self, tokens: list[_Token], label: str) -> None:
        self._tokens = tokens
        self._pos = 0
        self._label = label

    def _peek(self, offset: int = 0) -> _Token:
        return self._tokens[min(self._pos + offset, len(self._tokens) - 1)]

    def _next(self) -> _Token:
        token = self._peek()
        self._pos += 1
        return token

    def _error(self, token: _Token, expected: str) -> ConditionSyntaxError:
        found = "the end" if token.kind == "eof" else repr(token.text)
        return _syntax_error(
            self._label, f"expected {expected} but found {found} at position {token.position}"
        )

    def parse(self) -> Node:
        node = self._or(0)
        token = self._peek()
        if token.kind != "eof":
            raise self._error(token, "'and', 'or' or the end")
        return node

    def _or(self, depth: int) -> Node:
        items = [self._and(depth)]
        while self._peek().kind == "or":
            self._next()
            items.append(self._and(depth))
        return items[0] if len(items) == 1 else ("or", items)

    def _and(self, depth: int) -> Node:
        items = [self._not(depth)]
        while self._peek().kind == "and":
            self._next()
            items.append(self._not(depth))
        return items[0] if len(items) == 1 else ("and", items)

    def _not(self, depth: int) -> Node:
        negations = 0
        while self._peek().kind == "not":
            self._next()
            negations += 1
        node = self._primary(depth)
        return ("not", node) if negations % 2 else node

    def _parenthesised(self, depth: int, inner: Callable[[int], Node]) -> Node:
        """At a '(': a tuple compared to something, or ``inner`` between parentheses."""
        start = self._pos
        items = self._try_tuple()
        if items is not None and self._peek().kind == "op":
            return self._comparison(items)
        self._pos = start
        if depth + 1 > MAX_CONDITION_DEPTH:
            raise ExpressionLimitError(
                f"condition {self._label} nests parentheses more than {MAX_CONDITION_DEPTH} deep"
            )
        self._next()
        node = inner(depth + 1)
        closing = self._next()
        if closing.kind != "rparen":
            raise self._error(closing, "')'")
        return node

    def _primary(self, depth: int) -> Node:
        token = self._peek()
        if token.kind == "lparen":
            return self._parenthesised(depth, self._or)
        if token.kind != "value":
            raise self._error(token, "a value, 'not' or '('")
        self._next()
        if self._peek().kind == "op":
            return self._comparison(token.value)
        if isinstance(token.value, bool):
            return ("const", token.value)
        if isinstance(token.value, _Slot) and not token.value.quoted:
            # Only the value can tell whether it is true or false.
            return ("truth", token.value, token.position)
        raise self._error(self._peek(), "a comparison operator")

    def _try_tuple(self) -> list[Value] | None:
        """``( value (, value)* )`` at the current position, or None (position moved)."""
        self._next()  # "("
        items: list[Value] = []
        while True:
            token = self._next()
            if token.kind != "value":
                return None
            items.append(token.value)
            separator = self._next()
            if separator.kind == "rparen":
                if any(isinstance(item, _Slot) for item in items):
                    return _Tuple(tuple(items))  # type: ignore[return-value]
                return items
            if separator.kind != "comma":
                return None

    def _operand(self) -> Value:
        token = self._peek()
        if token.kind == "lparen":
            items = self._try_tuple()
            if items is None:
                raise self._error(self._peek(-1), "a value or a tuple of values")
            return items
        if token.kind != "value":
            raise self._error(token, "a value")
        self._next()
        return token.value

    def _comparison(self, left: Value) -> Node:
        op = self._next().text.lower()
        right = self._operand()
        return ("cmp", op, left, right)


# -- evaluation --------------------------------------------------------------


def _evaluate(node: Node, bindings: _Bindings) -> bool:
    kind = node[0]
    if kind == "const":
        return bool(node[1])
    if kind == "not":
        return not _evaluate(node[1], bindings)
    if kind == "and":
        return all(_evaluate(child, bindings) for child in node[1])
    if kind == "or":
        return any(_evaluate(child, bindings) for child in node[1])
    if kind == "truth":
        value = bindings.resolve(node[1])
        if isinstance(value, bool):
            return value
        raise ConditionSyntaxError(
            f"cannot parse condition {bindings.shown()}: expected a comparison operator "
            f"after the value at position {node[2]}"
        )
    _, op, left, right = node
    left, right = bindings.resolve(left), bindings.resolve(right)
    try:
        return _compare(op, left, right)
    except TypeError as exc:
        raise TemplateError(
            f"cannot evaluate condition {bindings.shown()}: {_show(left)} {op} {_show(right)}: "
            f"{exc}"
        ) from exc


def _show(value: Value) -> str:
    return repr(tuple(value)) if isinstance(value, list) else repr(value)


def _is_number(value: Value) -> bool:
    return isinstance(value, int | float)


def _as_number(text: str) -> int | float | None:
    candidate = text.strip()
    if not _NUMERIC.fullmatch(candidate):
        return None
    if any(char in candidate for char in ".eE"):
        return float(candidate)
    return int(candidate)


def _text(value: Value) -> str:
    return str(value)


def _coerce(left: Value, right: Value) -> tuple[Value, Value]:
    """Bring a number and a string to a common type (see the module docs)."""
    if _is_number(left) and isinstance(right, str):
        number = _as_number(right)
        return (left, number) if number is not None else (_text(left), right)
    if isinstance(left, str) and _is_number(right):
        number = _as_number(left)
        return (number, right) if number is not None else (left, _text(right))
    return left, right


def _equal(left: Value, right: Value) -> bool:
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(_equal, left, right))
    left, right = _coerce(left, right)
    return bool(left == right)


_ORDERINGS: dict[str, Callable[[Any, Any], Any]] = {
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}


def _compare(op: str, left: Value, right: Value) -> bool:
    if op == "==":
        return _equal(left, right)
    if op == "!=":
        return not _equal(left, right)
    if op in _ORDERINGS:
        left, right = _coerce(left, right)
        return bool(_ORDERINGS[op](left, right))
    if op in ("in", "notin"):
        found = _contains(right, left)
        return found if op == "in" else not found
    # issuperset / notissuperset
    container = left if isinstance(left, list) else [left]
    wanted = right if isinstance(right, list) else [right]
    if len(container) * len(wanted) > _MAX_SUPERSET_PAIRS:
        raise ExpressionLimitError(
            f"superset test of {len(container)} by {len(wanted)} items exceeds the limit"
        )
    result = all(any(_equal(item, have) for have in container) for item in wanted)
    return result if op == "issuperset" else not result


def _contains(haystack: Value, needle: Value) -> bool:
    if isinstance(haystack, list):
        return any(_equal(needle, item) for item in haystack)
    if isinstance(haystack, str):
        if isinstance(needle, list):
            raise TypeError("a tuple cannot be searched for in a string")
        return (needle if isinstance(needle, str) else _text(needle)) in haystack
    return _equal(needle, haystack)


# -- the original's rules (boolrule) -------------------------------------------


class _BambooParser(_Parser):
    """boolrule's grammar: comparisons joined by ``and`` / ``or``, no precedence.

    ``expression := condition (("and" | "or") condition)*`` and ``condition :=
    operand OP operand | "(" expression ")"``. There is no ``not`` and no bare
    ``true`` / ``false``: every condition is a comparison, as in the original.
    The tree is ``("seq", [condition, ...], ["and" | "or", ...])``.
    """

    def parse(self) -> Node:
        node = self._sequence(0)
        token = self._peek()
        if token.kind != "eof":
            raise self._error(token, "'and', 'or' or the end")
        return node

    def _sequence(self, depth: int) -> Node:
        items = [self._condition(depth)]
        joins: list[str] = []
        while self._peek().kind in ("and", "or"):
            joins.append(self._next().kind)
            items.append(self._condition(depth))
        return ("seq", items, joins)

    def _condition(self, depth: int) -> Node:
        token = self._peek()
        if token.kind == "lparen":
            return self._parenthesised(depth, self._sequence)
        if token.kind != "value":
            raise self._error(token, "a value or '('")
        self._next()
        if self._peek().kind != "op":
            raise self._error(self._peek(), "a comparison operator")
        return self._comparison(token.value)


def _evaluate_bamboo(node: Node, bindings: _Bindings) -> bool:
    """boolrule's evaluation: left to right; true before ``or`` and false before
    ``and`` end the whole (parenthesised) expression at once."""
    kind = node[0]
    if kind == "const":
        return bool(node[1])
    if kind == "seq":
        _, items, joins = node
        passed = _evaluate_bamboo(items[0], bindings)
        for join, item in zip(joins, items[1:], strict=True):
            if join == "or" and passed:
                return True
            if join == "and" and not passed:
                return False
            passed = _evaluate_bamboo(item, bindings)
        return passed
    _, op, left, right = node
    left, right = bindings.resolve(left), bindings.resolve(right)
    try:
        return _compare_bamboo(op, left, right)
    except TypeError as exc:
        raise TemplateError(
            f"cannot evaluate condition {bindings.shown()}: {_show(left)} {op} {_show(right)}: "
            f"{exc}"
        ) from exc


def _bamboo_coerce(left: Value, right: Value, op: str) -> tuple[Value, Value]:
    """The original's ``double_equals_trans``: ``int()`` truncates floats, and a
    failed conversion leaves the rest of the conversions undone."""
    if op in ("in", "notin"):
        if isinstance(right, list) and right:
            extra: list[Value] = []
            if isinstance(left, int):
                for item in right:
                    try:
                        extra.append(int(item))
                    except (TypeError, ValueError, OverflowError):
                        pass
            elif isinstance(left, str):
                extra = [str(item) for item in right]
            right = right + extra
    elif op in ("issuperset", "notissuperset"):
        if isinstance(left, str):
            left = [left]
        if isinstance(right, str):
            right = [right]
    else:
        try:
            if isinstance(left, int):
                right = int(right)
            elif isinstance(right, int):
                left = int(left)
            if isinstance(left, str):
                right = str(right)
            elif isinstance(right, str):
                left = str(left)
        except (TypeError, ValueError, OverflowError):
            pass
    return left, right


def _compare_bamboo(op: str, left: Value, right: Value) -> bool:
    left, right = _bamboo_coerce(left, right, op)
    if op == "==":
        return bool(left == right)
    if op == "!=":
        return bool(left != right)
    if op in _ORDERINGS:
        return bool(_ORDERINGS[op](left, right))
    if op == "in":
        return left in right
    if op == "notin":
        return left not in right
    found = set(left).issuperset(set(right))
    return found if op == "issuperset" else not found
