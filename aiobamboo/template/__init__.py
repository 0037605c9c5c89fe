"""``${...}`` templates and gateway conditions: pure, synchronous, no I/O.

Public functions (the engine calls these):

- :func:`references` -- the bare names a value's fragments read;
- :func:`render` -- render the fragments of a value against a namespace;
- :func:`render_mapping` -- render several values (a node's inputs) at once;
- :func:`dependency_order` -- order variables after the ones they reference;
- :func:`evaluate_condition` -- evaluate a gateway condition;
- :class:`RenderBudget` -- the time and size one whole render may use.

Fragments are found as in the original (``\\$\\{[^${}#]+\\}``) and evaluated by
:class:`Sandbox`, which is ``simpleeval`` configured with an allow-list of
functions and attributes and size, depth and time limits -- never ``eval``,
never Mako. What stays the same as the original:

- a whole-string ``${name}`` returns the namespace object itself (type kept),
  anything else renders to a string with ``str()`` of each value;
- a fragment that is not an expression (the shell's ``${LOG_FILE:-x}``),
  names something unknown (``${missing}``) or fails at run time (``${1/0}``)
  stays literally in the text, with a warning on the ``aiobamboo.template``
  logger;
- dicts (values only), lists and tuples are rendered recursively; other values
  pass through.

What differs, deliberately:

- A fragment the sandbox refuses (dunder access, ``getattr``, ``.format``,
  ``self.module...``, ``os.path``, lambda, ...) raises
  :class:`~aiobamboo.exceptions.UnsafeExpressionError`, and one that exceeds a
  limit (``'a'*10**9``, ``9**999999``, deep nesting) raises
  :class:`~aiobamboo.exceptions.ExpressionLimitError`, so the node fails with a
  clear message. The original silently left such fragments literal.
- Blanks around the expression are ignored: ``${ a }`` is ``${a}`` (the
  original's Mako leaves a leading blank literal, an indentation error).
- Mako filters (``${x | h}``, ``${x | trim}``) are not supported: ``|`` is
  Python's bitwise or, so such a fragment stays literal (unknown name ``h``).
- ``ENABLE_RENDER_OBJ_BY_MAKO_STRING`` is not supported: ``${l[0]}`` renders
  to a string.
- No module is importable. A :class:`Sandbox` made with ``modules=`` (the
  counterpart of ``MAKO_SANDBOX_IMPORT_MODULES``; ``datetime``, ``json``,
  ``math``, ``time``) exposes fixed tables of their safe members, never the
  modules. Lambdas are refused, and methods that mutate values
  (``list.append``, ``dict.update``, ...) are refused.
- Conditions use normal precedence and do not truncate numbers; see
  :mod:`aiobamboo.template._condition` for every difference. With
  ``rules=BAMBOO_RULES`` they are evaluated by the original's boolrule rules
  (left to right, floats truncated, its coercions), for migrated trees.
- A value substituted into a condition stays a value: the condition is parsed
  with each fragment as a placeholder bound to its value, never with the
  value's text spliced in, so a value holding quotes or operators cannot add
  to the condition (``"${x}"`` is one string; an unquoted ``${x}`` must read as
  one value, or the condition fails).
- Limits bound a whole render, not only a fragment: a :class:`RenderBudget`
  (one per render, or one per node in the engine) bounds the time of all
  fragments together and the characters built -- each rendered string
  (``max_rendered_length``) and all of them (``max_render_size``), checked
  before a string is built. ``[*x, *x, ...]`` is charged before it is built.
  With :attr:`RenderBudget.use_slice` set, a render stops with
  :class:`SliceExpired` after a short slice of time, so that the engine can
  redo it (renders are pure) in a worker thread instead of stalling the
  event loop.
"""

from __future__ import annotations

from ._budget import RenderBudget, SliceExpired
from ._condition import (
    BAMBOO_RULES,
    CONDITION_RULES,
    STANDARD_RULES,
    escape_value,
    evaluate_condition,
)
from ._deps import dependency_order
from ._modules import MODULE_NAMES, check_module_names
from ._render import references, render, render_mapping
from ._sandbox import DEFAULT_SANDBOX, SAFE_FUNCTION_NAMES, Sandbox, SandboxLimits
from ._tokenizer import FRAGMENT_PATTERN, find_fragments

__all__ = [
    "BAMBOO_RULES",
    "CONDITION_RULES",
    "DEFAULT_SANDBOX",
    "FRAGMENT_PATTERN",
    "MODULE_NAMES",
    "SAFE_FUNCTION_NAMES",
    "STANDARD_RULES",
    "RenderBudget",
    "Sandbox",
    "SandboxLimits",
    "SliceExpired",
    "check_module_names",
    "dependency_order",
    "escape_value",
    "evaluate_condition",
    "find_fragments",
    "references",
    "render",
    "render_mapping",
]
