"""``references`` and ``render``: the template side of the original's ``Template``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiobamboo.exceptions import ExpressionLimitError, TemplateError, UnsafeExpressionError

from ._budget import RenderBudget
from ._sandbox import DEFAULT_SANDBOX, Sandbox
from ._tokenizer import FRAGMENT_PATTERN, find_fragments, inner_text, iter_strings, whole_fragment

__all__ = ["Renderer", "fragment_label", "references", "render", "render_mapping"]

logger = logging.getLogger("aiobamboo.template")


def references(value: Any, *, sandbox: Sandbox | None = None) -> set[str]:
    """The bare names read by the ``${...}`` fragments anywhere in ``value``.

    Strings, dict values, list and tuple items are searched. Names bound inside
    a fragment (comprehension variables, lambda parameters) are not references;
    builtins used by a fragment (``int`` in ``${int(a)}``) are, as in the
    original, since a context key may shadow them. Fragments that do not parse,
    or exceed the size or depth limits, contribute nothing.
    """
    box = sandbox if sandbox is not None else DEFAULT_SANDBOX
    if type(value) is str:
        # A node's inputs are mostly strings, and the same ones come round at
        # every step of every run of a tree: their names are looked up, not found again.
        if "${" not in value:
            return set()
        if len(value) <= _CACHED_TEXT and box is DEFAULT_SANDBOX:
            found = _text_names.get(value)
            if found is None:
                found = _string_references(value, box)
                if len(_text_names) >= _CACHED_TEXTS:
                    _text_names.clear()
                _text_names[value] = found
            return set(found)
        return set(_string_references(value, box))
    names: set[str] = set()
    for text in iter_strings(value):
        names.update(_string_references(text, box))
    return names


#: Strings up to this long have their references cached, up to this many of them;
#: the cache starts over when it is full (a bound, not an eviction policy).
_CACHED_TEXT = 1_000
_CACHED_TEXTS = 4_096
_text_names: dict[str, frozenset[str]] = {}


def _string_references(text: str, box: Sandbox) -> frozenset[str]:
    names: set[str] = set()
    for fragment in find_fragments(text):
        analysis = box.analyse(inner_text(fragment))
        if analysis.tree is not None:
            names.update(analysis.free_names)
    return frozenset(names)


def render(
    value: Any,
    namespace: Mapping[str, Any],
    *,
    sandbox: Sandbox | None = None,
    budget: RenderBudget | None = None,
) -> Any:
    """Render every ``${...}`` fragment in ``value`` with ``namespace``.

    Strings are rendered; dicts (values only), lists and tuples are rendered
    item by item into new containers of the same kind; anything else is
    returned as it is. The input is never modified.

    A string that is exactly one fragment whose expression is a name in
    ``namespace`` returns that object itself, type kept. Otherwise each
    fragment is evaluated in the sandbox and replaced by ``str()`` of its value
    (as the original's Mako does: ``None`` -> ``"None"``, ``True`` ->
    ``"True"``, ``[1, 2]`` -> ``"[1, 2]"``).

    A fragment that is not an expression (``${LOG_FILE:-x}``), names something
    unknown (``${missing}``), or fails at run time (``${1/0}``) stays in the
    text literally, with a warning logged on ``aiobamboo.template``. A
    fragment the sandbox refuses raises :class:`UnsafeExpressionError`; one
    exceeding a limit raises :class:`ExpressionLimitError`.

    The whole call is bounded by ``budget`` (a fresh :class:`RenderBudget` if
    none is given): its time, the length of each rendered string
    (:attr:`SandboxLimits.max_rendered_length`) and the characters built in
    total (:attr:`SandboxLimits.max_render_size`). Sizes are checked before a
    string is built.
    """
    box = sandbox if sandbox is not None else DEFAULT_SANDBOX
    spent = budget if budget is not None else RenderBudget(box.limits)
    spent.begin()
    try:
        return Renderer(namespace, box, spent).value(value)
    finally:
        spent.end()


def render_mapping(
    values: Mapping[str, Any],
    namespace: Mapping[str, Any],
    *,
    sandbox: Sandbox | None = None,
    budget: RenderBudget | None = None,
    what: str = "input",
    aliases: bool = False,
) -> dict[str, Any]:
    """:func:`render` of each of ``values``, in one budget; an error names the key.

    ``what`` says what the keys are (``input``, ``context variable``) in the
    message of the :class:`TemplateError` raised for one of them. With
    ``aliases``, a value that is just ``${name}`` is another name for that
    value, not a use of it: the budget counts the uses of the objects that are
    stored (inputs), not of the variables that lead to them.
    """
    box = sandbox if sandbox is not None else DEFAULT_SANDBOX
    spent = budget if budget is not None else RenderBudget(box.limits)
    renderer = Renderer(namespace, box, spent)
    rendered: dict[str, Any] = {}
    spent.begin()
    try:
        for key, value in values.items():
            try:
                rendered[key] = renderer.alias(value) if aliases else renderer.value(value)
            except TemplateError as exc:
                raise type(exc)(f"{what} {key!r}: {exc}") from None
    finally:
        spent.end()
    return rendered


class Renderer:
    """Renders values and strings against one namespace, within one budget."""

    __slots__ = ("_box", "_namespace", "budget")

    def __init__(self, namespace: Mapping[str, Any], box: Sandbox, budget: RenderBudget) -> None:
        self._namespace = namespace
        self._box = box
        self.budget = budget

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.string(value)
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, tuple):
            return tuple(self.value(item) for item in value)
        if isinstance(value, dict):
            return {key: self.value(item) for key, item in value.items()}
        return value

    def alias(self, value: Any) -> Any:
        """:meth:`value`, except that a whole ``${name}`` is not counted as a use."""
        if isinstance(value, str) and "${" in value and whole_fragment(value):
            name = inner_text(value)
            if name in self._namespace:
                return self._namespace[name]
        return self.value(value)

    def string(self, text: str) -> Any:
        if "${" not in text:
            return text
        matches = FRAGMENT_PATTERN.findall(text)
        if not matches:
            return text
        if len(matches) == 1 and matches[0] == text:
            name = inner_text(text)
            if name in self._namespace:
                found = self._namespace[name]
                self.budget.reuse(found, text)
                return found
        pieces = self.fragments(text, matches)
        if not pieces:
            return text
        return FRAGMENT_PATTERN.sub(lambda match: pieces.get(match[0], match[0]), text)

    def fragments(self, text: str, matches: list[str]) -> dict[str, str]:
        """The text of each fragment of ``text``; the length of the result is checked first."""
        counts: dict[str, int] = {}
        for fragment in matches:
            counts[fragment] = counts.get(fragment, 0) + 1
        budget = self.budget
        room = min(self._box.limits.max_rendered_length, budget.size_left)
        # The result's length so far, and how much the fragments still to be
        # rendered could shrink it (to nothing): a result that cannot fit any
        # more is refused before more of it is built.
        size = len(text)
        shrink = sum(len(fragment) * count for fragment, count in counts.items())
        pieces: dict[str, str] = {}
        for fragment, count in counts.items():
            shrink -= len(fragment) * count
            try:
                piece = self._box.evaluate_text(
                    inner_text(fragment), self._namespace, label=fragment, budget=budget
                )
            except (UnsafeExpressionError, ExpressionLimitError):
                raise
            except TemplateError as exc:
                _left_literal(exc)
                continue
            pieces[fragment] = piece
            size += (len(piece) - len(fragment)) * count
            if size - shrink > room:
                self._refuse(text, size - shrink, fragment, count)
        if pieces:
            budget.charge(size, text)
        return pieces

    def condition_pieces(self, matches: list[str]) -> dict[str, str]:
        """The text of each fragment of a condition, left literal as in a render.

        Nothing is joined or stored here, so a name's existing string costs
        nothing; text the sandbox builds is charged to the budget.
        """
        pieces: dict[str, str] = {}
        for fragment in dict.fromkeys(matches):
            name = inner_text(fragment)
            if name in self._namespace:
                found = self._namespace[name]
                if isinstance(found, str):
                    pieces[fragment] = found
                    continue
            try:
                piece = self._box.evaluate_text(
                    name, self._namespace, label=fragment, budget=self.budget
                )
            except (UnsafeExpressionError, ExpressionLimitError):
                raise
            except TemplateError as exc:
                _left_literal(exc)
                continue
            self.budget.charge(len(piece), fragment)
            pieces[fragment] = piece
        return pieces

    def _refuse(self, text: str, size: int, fragment: str, count: int) -> None:
        limit = self._box.limits.max_rendered_length
        if size > limit:
            raise ExpressionLimitError(
                f"{fragment_label(text)} would render to more than {limit} characters "
                f"(at {fragment_label(fragment)}, used {count} times)"
            )
        self.budget.charge(size, text)  # over what is left of the whole render: raises


def _left_literal(exc: TemplateError) -> None:
    # The message starts with the fragment (shortened); a value in the reason
    # (a long key, a long expression) is cut short too.
    logger.warning("template fragment left as it is: %s", fragment_label(str(exc), 500))


def fragment_label(text: str, limit: int = 200) -> str:
    """``text`` shortened for a message."""
    return text if len(text) <= limit else f"{text[:limit]}...({len(text)} characters)"
