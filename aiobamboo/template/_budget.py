"""One render's budget: time and size shared by every fragment of it.

A fragment is bounded by the sandbox on its own, but a template can hold many
fragments, and values can reference values: without a shared budget, a small
tree multiplies bounded pieces into an unbounded result, or a hundred bounded
fragments into an unbounded stall. The engine makes one budget per node (its
context variables and all its inputs, or all its conditions); :func:`render`
without a budget makes one for that call.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

from aiobamboo.exceptions import ExpressionLimitError

if TYPE_CHECKING:
    from ._sandbox import SandboxLimits

__all__ = ["RenderBudget", "SliceExpired"]

_TEXT_TYPES = (str, bytes, bytearray)
_CONTAINER_TYPES = (list, tuple, dict, set, frozenset)


class SliceExpired(Exception):
    """The render used up its time slice on the event loop.

    Nothing is wrong with the template: the caller redoes the (pure) render in
    a worker thread, with what is left of the budget. Raised only while
    :attr:`RenderBudget.use_slice` is set, so never by a plain :func:`render`.
    """


class RenderBudget:
    """Time and size left for one render, shared by all its fragments.

    - Time: :attr:`SandboxLimits.render_timeout` seconds of rendering in total
      (time spent elsewhere, for instance computing a lazy variable, does not
      count). While :attr:`use_slice` is set, the render also stops after
      :attr:`SandboxLimits.loop_slice` seconds of rendering with
      :class:`SliceExpired`.
    - Size: :attr:`SandboxLimits.max_render_size` characters in total, counting
      every string a render builds and every further reference to an object
      already passed through whole (``${x}`` used twice stores ``x`` twice).

    A budget is not thread-safe; a caller may move a render to a thread as long
    as only one render uses the budget at a time.
    """

    __slots__ = (
        "_seen",
        "_start",
        "deadline",
        "limits",
        "size_left",
        "slice_deadline",
        "slice_left",
        "time_left",
        "use_slice",
    )

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        if limits is None:
            from ._sandbox import SandboxLimits  # the sandbox imports this module

            limits = SandboxLimits()
        self.limits = limits
        self.time_left = self.limits.render_timeout
        self.size_left = self.limits.max_render_size
        self.slice_left = self.limits.loop_slice
        self.use_slice = False
        self.deadline = math.inf
        self.slice_deadline = math.inf
        self._start = 0.0
        # id -> object: keeps each object alive so ids cannot be reused.
        self._seen: dict[int, Any] = {}

    # -- one render call -------------------------------------------------

    def begin(self) -> None:
        """Start timing one render call (sets the absolute deadlines)."""
        self._start = now = time.monotonic()
        self.deadline = now + self.time_left
        self.slice_deadline = now + self.slice_left if self.use_slice else math.inf

    def end(self) -> None:
        """Stop timing; the elapsed time is taken from what is left."""
        elapsed = time.monotonic() - self._start
        self.time_left -= elapsed
        if self.use_slice:
            self.slice_left -= elapsed
        self.deadline = self.slice_deadline = math.inf

    def mark(self) -> tuple[int, int]:
        """The size state, to undo a render abandoned by :class:`SliceExpired`."""
        return self.size_left, len(self._seen)

    def restore(self, mark: tuple[int, int]) -> None:
        self.size_left, seen = mark
        for key in list(self._seen)[seen:]:
            del self._seen[key]

    def expired(self, now: float) -> str | None:
        """Why rendering must stop at ``now``, or None; raises :class:`SliceExpired`."""
        if now > self.deadline:
            return f"the render took longer than {self.limits.render_timeout} s in total"
        if now > self.slice_deadline:
            raise SliceExpired
        return None

    # -- size --------------------------------------------------------------

    def charge(self, size: int, what: str) -> None:
        """Count ``size`` characters built by the render of ``what`` (a text, shortened)."""
        if size > self.size_left:
            shown = what if len(what) <= 200 else f"{what[:200]}...({len(what)} characters)"
            raise ExpressionLimitError(
                f"{shown}: the render would produce more than "
                f"{self.limits.max_render_size} characters in total"
            )
        self.size_left -= size

    def reuse(self, value: Any, what: str) -> None:
        """Count ``value`` passed through whole: free the first time, charged after."""
        if not isinstance(value, _TEXT_TYPES + _CONTAINER_TYPES):
            return
        key = id(value)
        if key not in self._seen:
            self._seen[key] = value
            return
        self.charge(self._size(value, what), what)

    def _size(self, value: Any, what: str) -> int:
        """Characters and items in ``value``, counted up to just over what is left."""
        cap = self.size_left + 1
        total = 0
        stack = [value]
        visited = 0
        while stack and total < cap:
            item = stack.pop()
            visited += 1
            if not visited & 4095:
                reason = self.expired(time.monotonic())
                if reason is not None:
                    raise ExpressionLimitError(f"{what[:200]}: {reason}")
            if isinstance(item, _TEXT_TYPES):
                total += len(item) + 2
            elif isinstance(item, dict):
                total += 2
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, _CONTAINER_TYPES):
                total += 2
                stack.extend(item)
            else:
                total += 8
        return min(total, cap)
