"""The coroutine scheduler. An :class:`~aiobamboo.host.Engine` hosts one :class:`Scheduler`."""

from __future__ import annotations

from ._env import STRATEGY_FIRST, STRATEGY_ONLY, Settings
from ._run import RunEvent
from ._scheduler import Scheduler, quiescence

__all__ = [
    "STRATEGY_FIRST",
    "STRATEGY_ONLY",
    "RunEvent",
    "Scheduler",
    "Settings",
    "quiescence",
]
