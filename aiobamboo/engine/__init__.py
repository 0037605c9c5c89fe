"""The coroutine scheduler. Runtimes host one :class:`Scheduler` each.

A runtime calls :func:`attach` when it opens and :func:`detach` when it closes;
the API finds the scheduler of a runtime with :func:`scheduler_of`.
"""

from __future__ import annotations

import weakref

from ..exceptions import InvalidOperationError
from ._env import STRATEGY_FIRST, STRATEGY_ONLY, Settings
from ._run import RunEvent
from ._scheduler import Scheduler, quiescence

__all__ = [
    "STRATEGY_FIRST",
    "STRATEGY_ONLY",
    "RunEvent",
    "Scheduler",
    "Settings",
    "attach",
    "detach",
    "quiescence",
    "scheduler_of",
]

_schedulers: weakref.WeakKeyDictionary[object, Scheduler] = weakref.WeakKeyDictionary()


def attach(runtime: object, scheduler: Scheduler) -> None:
    _schedulers[runtime] = scheduler


def detach(runtime: object) -> None:
    _schedulers.pop(runtime, None)


def scheduler_of(runtime: object) -> Scheduler:
    scheduler = _schedulers.get(runtime)
    if scheduler is None:
        raise InvalidOperationError(
            f"{runtime!r} is not open: use it as `async with runtime:` before calling the API"
        )
    return scheduler
