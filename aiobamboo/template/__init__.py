"""``${...}`` templates and gateway conditions: pure, synchronous, no I/O.

Public functions (the engine calls these):

- :func:`references` -- the bare names a value's fragments read;
- :func:`render` -- render the fragments of a value against a namespace;
- :func:`dependency_order` -- order variables after the ones they reference;
- :func:`evaluate_condition` -- evaluate a gateway condition.

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
- No module is ever importable (``MAKO_SANDBOX_IMPORT_MODULES`` has no
  counterpart), lambdas are refused, and methods that mutate values
  (``list.append``, ``dict.update``, ...) are refused.
- Conditions use normal precedence and do not truncate numbers; see
  :mod:`aiobamboo.template._condition` for every difference.
"""

from __future__ import annotations

from ._condition import escape_value, evaluate_condition
from ._deps import dependency_order
from ._render import references, render
from ._sandbox import DEFAULT_SANDBOX, SAFE_FUNCTION_NAMES, Sandbox, SandboxLimits
from ._tokenizer import FRAGMENT_PATTERN, find_fragments

__all__ = [
    "DEFAULT_SANDBOX",
    "FRAGMENT_PATTERN",
    "SAFE_FUNCTION_NAMES",
    "Sandbox",
    "SandboxLimits",
    "dependency_order",
    "escape_value",
    "evaluate_condition",
    "find_fragments",
    "references",
    "render",
]
