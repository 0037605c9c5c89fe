"""``references`` and ``render``: the template side of the original's ``Template``."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from aiobamboo.exceptions import ExpressionLimitError, TemplateError, UnsafeExpressionError

from ._sandbox import DEFAULT_SANDBOX, Sandbox
from ._tokenizer import FRAGMENT_PATTERN, find_fragments, inner_text, iter_strings

__all__ = ["references", "render"]

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
    names: set[str] = set()
    for text in iter_strings(value):
        for fragment in find_fragments(text):
            analysis = box.analyse(inner_text(fragment))
            if analysis.tree is not None:
                names.update(analysis.free_names)
    return names


def render(value: Any, namespace: Mapping[str, Any], *, sandbox: Sandbox | None = None) -> Any:
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
    """
    box = sandbox if sandbox is not None else DEFAULT_SANDBOX
    return _render_value(value, namespace, box)


def _render_value(value: Any, namespace: Mapping[str, Any], box: Sandbox) -> Any:
    if isinstance(value, str):
        return _render_string(value, namespace, box)
    if isinstance(value, list):
        return [_render_value(item, namespace, box) for item in value]
    if isinstance(value, tuple):
        return tuple(_render_value(item, namespace, box) for item in value)
    if isinstance(value, dict):
        return {key: _render_value(item, namespace, box) for key, item in value.items()}
    return value


def _render_string(text: str, namespace: Mapping[str, Any], box: Sandbox) -> Any:
    fragments = find_fragments(text)
    if not fragments:
        return text
    if len(fragments) == 1 and fragments[0] == text:
        name = inner_text(text)
        if name in namespace:
            return namespace[name]
    rendered: dict[str, str] = {}
    for fragment in fragments:
        try:
            rendered[fragment] = box.evaluate_text(inner_text(fragment), namespace, label=fragment)
        except (UnsafeExpressionError, ExpressionLimitError):
            raise
        except TemplateError as exc:
            logger.warning("template fragment left as it is: %s", exc)
    if not rendered:
        return text
    return FRAGMENT_PATTERN.sub(lambda match: rendered.get(match[0], match[0]), text)
