"""Tools for testing runtimes, components and pipelines.

- :func:`check_runtime` -- the conformance checks a runtime passes to prove it
  keeps the contract the engine relies on, role by role (:data:`ROLES`).
- :class:`MemoryRuntime` -- a runtime kept in Python dicts, with fault hooks
  (:class:`Faults`): test a component or a pipeline against storage that fails,
  lands late, or lands and loses its answer::

      from aiobamboo import api
      from aiobamboo.testing import MemoryRuntime

      async def test_my_pipeline_survives_a_failed_commit():
          async with MemoryRuntime(components=my_library) as runtime:
              await api.run_pipeline(runtime, build_my_tree())
              runtime.faults.fail_commits(1)  # the next step's commit fails
              res = await api.wait_pipeline(runtime, pipeline_id, timeout=10)
              assert res.data == "FINISHED"

  :class:`MemoryStorage` holds its tables: open a second ``MemoryRuntime`` on
  ``runtime.storage`` to test what a restart does.
- :class:`ManualClock` -- a clock the test moves by hand
  (``settings=Settings(clock=clock)``; ``clock.advance(3600)``): timers fire
  without sleeping.
"""

from __future__ import annotations

from ._checks import CHECKS as CHECKS
from ._checks import ROLES as ROLES
from ._checks import check_runtime as check_runtime
from ._clock import ManualClock as ManualClock
from ._memory import Faults as Faults
from ._memory import MemoryStorage as MemoryStorage
from ._memory import MemoryStore as MemoryStore
from ._memory_runtime import MemoryRuntime as MemoryRuntime
from ._roles import ROLE_CHECKS as ROLE_CHECKS

__all__ = [
    "CHECKS",
    "ROLES",
    "ROLE_CHECKS",
    "Faults",
    "ManualClock",
    "MemoryRuntime",
    "MemoryStorage",
    "MemoryStore",
    "check_runtime",
]
