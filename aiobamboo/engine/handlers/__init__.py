"""One module per node kind; :data:`HANDLERS` maps a kind to its execute coroutine."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from .._env import Outcome, Step
from .._spec import (
    ACTIVITY,
    CONDITIONAL_PARALLEL,
    CONVERGE,
    END,
    EXCLUSIVE,
    PARALLEL,
    START,
    SUBPROCESS,
    NodeKind,
)
from ._activity import execute_activity, resume_schedule
from ._events import execute_end, execute_start
from ._gateways import (
    execute_conditional_parallel,
    execute_converge,
    execute_exclusive,
    execute_parallel,
)
from ._subprocess import execute_subprocess

Handler = Callable[[Step], Awaitable[Outcome]]

#: Every kind has a handler (a test checks that no kind is left out).
HANDLERS: dict[NodeKind, Handler] = {
    START: execute_start,
    END: execute_end,
    ACTIVITY: execute_activity,
    SUBPROCESS: execute_subprocess,
    EXCLUSIVE: execute_exclusive,
    PARALLEL: execute_parallel,
    CONDITIONAL_PARALLEL: execute_conditional_parallel,
    CONVERGE: execute_converge,
}

__all__ = ["HANDLERS", "Handler", "resume_schedule"]
