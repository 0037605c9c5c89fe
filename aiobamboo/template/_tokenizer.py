"""Finding ``${...}`` fragments in strings and walking template values.

A fragment is what the original's ``TEMPLATE_PATTERN`` matches: ``${``, then
at least one character that is none of ``$ { } #``, then ``}``. So ``${{...}}``
(a dict literal), nested braces and ``#`` never form a fragment; such text is
simply not a template.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

__all__ = ["FRAGMENT_PATTERN", "find_fragments", "inner_text", "iter_strings", "whole_fragment"]

FRAGMENT_PATTERN = re.compile(r"\$\{[^${}#]+\}")


def find_fragments(text: str) -> list[str]:
    """Every distinct fragment of ``text``, in order of first appearance."""
    if "${" not in text:
        return []
    return list(dict.fromkeys(FRAGMENT_PATTERN.findall(text)))


def whole_fragment(text: str) -> bool:
    """Whether ``text`` is exactly one fragment and nothing else."""
    return FRAGMENT_PATTERN.fullmatch(text) is not None


def inner_text(fragment: str) -> str:
    """The expression inside a fragment, without ``${``, ``}`` and surrounding blanks."""
    return fragment[2:-1].strip()


def iter_strings(value: Any) -> Iterator[str]:
    """Yield every string in ``value``: itself, dict values, list and tuple items.

    Iterative, so deeply nested data cannot exhaust the interpreter stack.
    Dict keys are not templates (as in the original) and are skipped.
    """
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
        elif isinstance(item, list | tuple):
            stack.extend(reversed(item))
